//! The final `qemu-img convert` of the disks: compaction (only allocated, non-zero clusters are
//! copied) and, with `disk_compression`, zlib compression.
//!
//! `qemu-img convert [-c] -m 16 -W <qemu_img_args.convert> -O <format> <disk> <disk>.convert`,
//! then the result is renamed over the original. Skipped when `skip_compaction` is set without
//! `disk_compression` (which `prepare` forces for `format = "raw"`, and for `use_backing_file`
//! unless compression is asked for — then the overlay is flattened into a standalone compressed
//! image, as Packer does).
//!
//! Deviation: Packer converts the main disk only; qemu-rs converts the `disk_additional_size`
//! disks too, the same way, so blocks the guest freed on them do not bloat the artifact (they
//! are blank qcow2 files when the build starts, so this costs little).
//!
//! `-m 16 -W` (16 parallel coroutines, out-of-order writes into the fresh target) is a qemu-rs
//! addition; Packer converts with qemu-img's defaults (8 coroutines, in-order writes).
//!
//! Deviation: with `disk_compression` (qcow2, no `qemu_img_args.convert`) qemu-rs writes the
//! compressed image itself ([`crate::driver::qcow2`]): the compressed clusters of a cloud image's
//! base that the guest left unchanged are copied as they are instead of decompressed and
//! compressed again, the rest is compressed on every core; the result must pass `qemu-img check`,
//! else (and for images that module does not read) `qemu-img convert -c` runs as before.
//!
//! The disk is never touched while QEMU may still hold it: the step fails if the QEMU recorded in
//! the state has not exited. QEMU's image lock error (`Failed to get "write" lock`) is retried
//! with back-off like Packer does, in case another process briefly holds the image.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::{Config, DiskFormat};
use crate::driver::qcow2::{self, Qcow2Error};
use crate::driver::qemu_img::{ConvertOptions, QemuImg, QemuImgError};
use crate::state::BuildState;

/// Parallel coroutines of the final convert (`-m`; qemu-img allows 1–16).
pub const COROUTINES: u8 = 16;

/// How many times the convert is attempted when the image is locked.
pub const LOCK_ATTEMPTS: u32 = 10;

/// The first back-off after a lock error; it doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The suffix of the temporary converted image.
pub const CONVERT_SUFFIX: &str = ".convert";

/// The final conversion step.
#[derive(Debug, Clone)]
pub struct ConvertDisk {
    skip: bool,
    format: DiskFormat,
    compress: bool,
    qemu_img: QemuImg,
    first_backoff: Duration,
}

impl ConvertDisk {
    /// The step for `config` (`skip_compaction`, `disk_compression`, `format`,
    /// `qemu_img_args`), with the `qemu-img` found on `PATH`.
    pub fn new(config: &Config) -> Self {
        ConvertDisk {
            skip: config.skip_compaction && !config.disk_compression,
            format: config.format,
            // raw has no compression; prepare already turns it off, this keeps the step honest.
            compress: config.disk_compression && config.format == DiskFormat::Qcow2,
            qemu_img: crate::steps::disk::qemu_img_for(config),
            first_backoff: FIRST_BACKOFF,
        }
    }

    /// Uses another `qemu-img`.
    pub fn qemu_img(mut self, qemu_img: QemuImg) -> Self {
        self.qemu_img = qemu_img;
        self
    }

    /// Whether the step does nothing for this configuration.
    pub fn skipped(&self) -> bool {
        self.skip
    }

    /// The options passed to `qemu-img convert`.
    pub fn options(&self) -> ConvertOptions {
        ConvertOptions {
            format: self.format.as_str().to_string(),
            compress: self.compress,
            coroutines: COROUTINES,
            out_of_order: true,
        }
    }

    /// Whether qemu-rs writes the compressed image itself ([`crate::driver::qcow2`]): with
    /// `disk_compression` into qcow2, unless `qemu_img_args.convert` asks for `qemu-img`'s own
    /// options.
    pub fn converts_itself(&self) -> bool {
        self.compress && self.format == DiskFormat::Qcow2 && self.qemu_img.extra_args().convert.is_empty()
    }

    /// Writes the compressed `disk` into `tmp` with [`crate::driver::qcow2`] and checks it with
    /// `qemu-img check`. `Ok(false)`: not done here (an image that module does not read, or a
    /// result that failed the check), `qemu-img` is to convert it.
    async fn convert_here(&self, ctx: &StepContext, disk: &Path, tmp: &Path) -> Result<bool, StepError> {
        if !self.converts_itself() {
            return Ok(false);
        }
        // qemu-img honours QEMU's image locks, this module does not: an image another process
        // still writes goes to qemu-img, which waits for it (see `convert`).
        if let Err(e) = self.qemu_img.info(disk).await {
            tracing::info!("qemu-img converts the disk: `qemu-img info` failed: {e}");
            return Ok(false);
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (src, dst, flag) = (disk.to_path_buf(), tmp.to_path_buf(), cancel.clone());
        let started = std::time::Instant::now();
        let mut job = tokio::task::spawn_blocking(move || {
            // whatever keeps it from reading the chain leaves the image to qemu-img
            let chain = qcow2::open(&src)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            qcow2::compress(&chain, &dst, threads, &flag)
        });
        let joined = tokio::select! {
            r = &mut job => r,
            _ = ctx.cancel.cancelled() => {
                cancel.store(true, Ordering::Relaxed);
                let _ = job.await;
                let _ = std::fs::remove_file(tmp);
                return Err(StepError::Cancelled);
            }
        };
        let result = joined.map_err(|e| StepError::failed(format!("the disk conversion stopped: {e}")))?;
        let stats = match result {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(tmp);
                return match e {
                    Qcow2Error::Unsupported(why) => {
                        tracing::info!("{why}; qemu-img converts the disk");
                        Ok(false)
                    }
                    Qcow2Error::Cancelled => Err(StepError::Cancelled),
                    Qcow2Error::Io { path, source } if is_no_space(&source) => Err(StepError::failed(format!(
                        "converting the disk {} failed: {path}: {source}; {}",
                        disk.display(),
                        no_space_hint(disk)
                    ))),
                    e => Err(StepError::failed(format!(
                        "converting the disk {} failed: {e}; check the disk image and free space in the output \
                         directory, or set skip_compaction = true and disk_compression = false to keep the disk as \
                         QEMU left it",
                        disk.display()
                    ))),
                };
            }
        };
        // Insurance against a bug here: an image qemu-img does not find consistent is not used.
        if let Err(e) = self.qemu_img.check(tmp).await {
            let _ = std::fs::remove_file(tmp);
            tracing::warn!("the compressed image qemu-rs wrote failed `qemu-img check` (a bug, please report it): {e}");
            ctx.ui
                .message("qemu-rs's own compressed image failed `qemu-img check` (a bug, please report it); qemu-img converts the disk instead")
                .await;
            return Ok(false);
        }
        let mib = |clusters: u64| clusters as f64 * qcow2::CLUSTER_SIZE as f64 / (1024.0 * 1024.0);
        let mut parts = Vec::new();
        if stats.reused > 0 {
            parts.push(format!("{:.0} MiB copied compressed from the base image", mib(stats.reused)));
        }
        parts.push(format!("{:.0} MiB compressed", mib(stats.compressed)));
        if stats.raw > 0 {
            parts.push(format!("{:.0} MiB stored as is (incompressible)", mib(stats.raw)));
        }
        let line = format!("Compressed in {:.1} s: {}", started.elapsed().as_secs_f64(), parts.join(", "));
        tracing::info!("{}: {line}", disk.display());
        ctx.ui.message(&line).await;
        Ok(true)
    }

    /// Converts `disk` into `disk.convert`, retrying while the image is locked.
    async fn convert(&self, ctx: &StepContext, disk: &Path, tmp: &Path) -> Result<(), StepError> {
        let opts = self.options();
        let mut backoff = self.first_backoff;
        let mut attempt = 1;
        loop {
            match self.qemu_img.convert(disk, tmp, &opts).await {
                Ok(()) => return Ok(()),
                Err(e) if is_lock_error(&e) && attempt < LOCK_ATTEMPTS => {
                    let _ = std::fs::remove_file(tmp);
                    tracing::warn!("disk image locked (attempt {attempt}/{LOCK_ATTEMPTS}): {e}");
                    ctx.ui
                        .message(&format!(
                            "The disk image is locked by another process; retrying in {backoff:?} \
                             (attempt {attempt} of {LOCK_ATTEMPTS})"
                        ))
                        .await;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                Err(e) => {
                    let _ = std::fs::remove_file(tmp);
                    let hint = if is_lock_error(&e) {
                        "another process still holds the disk image open (a QEMU left running?); stop it and \
                         build again"
                            .to_string()
                    } else if is_no_space_error(&e) {
                        no_space_hint(disk)
                    } else {
                        "check free space in the output directory, or set skip_compaction = true to keep the \
                         disk as QEMU left it"
                            .to_string()
                    };
                    return Err(StepError::failed(format!(
                        "converting the disk {} failed: {e}; {hint}",
                        disk.display()
                    )));
                }
            }
        }
    }
}

/// Whether `e` is QEMU's image lock error (`Failed to get "write" lock` / `Failed to get shared
/// "write" lock`).
pub fn is_lock_error(e: &QemuImgError) -> bool {
    matches!(e, QemuImgError::Failed { stderr, .. } if stderr.contains("\"write\" lock"))
}

/// Whether an I/O error is a full file system (`ENOSPC`) or quota (`EDQUOT`).
fn is_no_space(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(e.raw_os_error(), Some(n) if n == Errno::ENOSPC as i32 || n == Errno::EDQUOT as i32)
}

/// Whether `e` says the target file system is full (`ENOSPC`, or `EDQUOT` for a quota).
pub fn is_no_space_error(e: &QemuImgError) -> bool {
    matches!(e, QemuImgError::Failed { stderr, .. }
        if stderr.contains("No space left on device") || stderr.contains("Disk quota exceeded"))
}

/// What to do when the output directory's file system is full: how much is free there and how
/// much the image being converted holds.
fn no_space_hint(disk: &Path) -> String {
    let dir = disk.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let free = nix::sys::statvfs::statvfs(dir)
        .map(|s| mib(s.blocks_available() * s.fragment_size()))
        .unwrap_or_else(|_| "unknown".into());
    let used = allocated(disk).map(mib).unwrap_or_else(|| "unknown".into());
    format!(
        "the file system of the output directory {} is full ({free} free; the disk being converted holds {used}, \
         and its compacted copy is written beside it): free space there, choose an output_directory on a larger \
         file system, or set skip_compaction = true to keep the disk as QEMU left it",
        dir.display()
    )
}

/// `<disk>.convert`.
pub fn convert_path(disk: &Path) -> PathBuf {
    let mut s = disk.as_os_str().to_os_string();
    s.push(CONVERT_SUFFIX);
    PathBuf::from(s)
}

/// Bytes the file really occupies on disk (sparse files count their allocated blocks only).
fn allocated(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.blocks() * 512)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[async_trait]
impl Step<BuildState> for ConvertDisk {
    fn name(&self) -> &'static str {
        "convert disk"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        if self.skip {
            tracing::info!("skip_compaction set: the disk is kept as QEMU left it");
            return Ok(());
        }
        if let Some(qemu) = &state.qemu {
            if qemu.exit_status().is_none() {
                return Err(StepError::failed(format!(
                    "refusing to convert the disk while QEMU (pid {}) still runs and holds it; this is a bug in \
                     qemu-rs (the shutdown step must stop QEMU first), please report it",
                    qemu.pid()
                )));
            }
        }
        if state.disk_paths.is_empty() {
            return Err(StepError::failed(
                "no disk to convert is recorded in the build state (a bug in qemu-rs; please report it)",
            ));
        }
        for (i, disk) in state.disk_paths.clone().iter().enumerate() {
            let tmp = convert_path(disk);
            let before = allocated(disk);
            let what =
                if i == 0 { "the disk image".to_string() } else { format!("the additional disk {}", disk.display()) };
            ctx.ui
                .say(&if self.compress {
                    format!("Compacting and compressing {what}...")
                } else {
                    format!("Compacting {what}...")
                })
                .await;
            if !self.convert_here(ctx, disk, &tmp).await? {
                self.convert(ctx, disk, &tmp).await?;
            }
            std::fs::rename(&tmp, disk).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                StepError::failed(format!(
                    "cannot replace {} with its converted copy: {e}; check the output directory's permissions",
                    disk.display()
                ))
            })?;
            if let (Some(b), Some(a)) = (before, allocated(disk)) {
                let name = disk.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                ctx.ui.message(&format!("{name}: {} before, {} after conversion", mib(b), mib(a))).await;
            }
        }
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        // A cancelled convert leaves its partial output behind.
        for disk in &state.disk_paths {
            let tmp = convert_path(disk);
            match std::fs::remove_file(&tmp) {
                Ok(()) => tracing::info!("removed the partial {}", tmp.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove {}: {e}", tmp.display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::qemu::QemuProcess;
    use crate::steps::shutdown::test_ui::Recorder;
    use packer_sdk::CancellationToken;
    use std::io::{Seek, SeekFrom, Write};
    use std::sync::Arc;

    fn ctx() -> StepContext {
        StepContext { ui: Arc::new(Recorder::default()), cancel: CancellationToken::new() }
    }

    fn config(format: DiskFormat, skip_compaction: bool, disk_compression: bool) -> Config {
        Config { format, skip_compaction, disk_compression, ..Config::default() }
    }

    /// A "dirty" 64 MiB qcow2: 8 MiB of (compressible) data at 16 MiB, and every other cluster
    /// allocated but zero (a raw image converted with `-S 0`, i.e. without zero detection), like
    /// a disk whose guest wrote and deleted files.
    async fn written_qcow2(dir: &Path) -> PathBuf {
        let raw = dir.join("src.raw");
        let mut f = std::fs::File::create(&raw).unwrap();
        f.set_len(64 << 20).unwrap();
        f.seek(SeekFrom::Start(16 << 20)).unwrap();
        let block: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
        f.write_all(&block).unwrap();
        drop(f);
        let disk = dir.join("disk");
        // -S 0: no sparse detection, every cluster becomes allocated (the "dirty" disk).
        let out = tokio::process::Command::new("qemu-img")
            .args(["convert", "-S", "0", "-O", "qcow2"])
            .arg(&raw)
            .arg(&disk)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::remove_file(&raw).unwrap();
        disk
    }

    /// Reads a guest-visible byte range of an image (through qemu-img convert to raw).
    async fn guest_bytes(img: &Path, dir: &Path) -> Vec<u8> {
        let raw = dir.join("check.raw");
        let opts = ConvertOptions { format: "raw".into(), ..ConvertOptions::default() };
        QemuImg::default().convert(img, &raw, &opts).await.unwrap();
        let b = std::fs::read(&raw).unwrap();
        std::fs::remove_file(&raw).unwrap();
        b
    }

    #[tokio::test]
    async fn compacts_in_place_keeping_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let disk = written_qcow2(dir.path()).await;
        let before_bytes = guest_bytes(&disk, dir.path()).await;
        let before = allocated(&disk).unwrap();
        let mut state = BuildState { disk_paths: vec![disk.clone()], ..BuildState::default() };
        let step = ConvertDisk::new(&config(DiskFormat::Qcow2, false, false));
        step.run(&ctx(), &mut state).await.unwrap();
        step.cleanup(&ctx(), &mut state, &Ok(())).await;
        let after = allocated(&disk).unwrap();
        assert!(after < before / 2, "not compacted: {before} -> {after} bytes");
        assert!(!convert_path(&disk).exists());
        assert_eq!(guest_bytes(&disk, dir.path()).await, before_bytes, "content changed");
        let info = QemuImg::default().info(&disk).await.unwrap();
        assert_eq!((info.format.as_str(), info.virtual_size), ("qcow2", 64 << 20));
    }

    #[tokio::test]
    async fn compression_makes_it_smaller_still() {
        let dir = tempfile::tempdir().unwrap();
        let disk = written_qcow2(dir.path()).await;
        let plain = dir.path().join("plain");
        std::fs::copy(&disk, &plain).unwrap();
        let before_bytes = guest_bytes(&disk, dir.path()).await;
        let mut s1 = BuildState { disk_paths: vec![plain.clone()], ..BuildState::default() };
        ConvertDisk::new(&config(DiskFormat::Qcow2, false, false)).run(&ctx(), &mut s1).await.unwrap();
        let mut s2 = BuildState { disk_paths: vec![disk.clone()], ..BuildState::default() };
        // skip_compaction does not skip when compression is asked for
        let step = ConvertDisk::new(&config(DiskFormat::Qcow2, true, true));
        assert!(!step.skipped() && step.options().compress);
        step.run(&ctx(), &mut s2).await.unwrap();
        let (p, c) = (allocated(&plain).unwrap(), allocated(&disk).unwrap());
        assert!(c < p, "compressed {c} not smaller than compacted {p}");
        assert_eq!(guest_bytes(&disk, dir.path()).await, before_bytes, "content changed");
    }

    #[tokio::test]
    async fn skipped_and_raw_never_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let disk = written_qcow2(dir.path()).await;
        let bytes = std::fs::read(&disk).unwrap();
        let step = ConvertDisk::new(&config(DiskFormat::Qcow2, true, false));
        assert!(step.skipped());
        let mut state = BuildState { disk_paths: vec![disk.clone()], ..BuildState::default() };
        step.run(&ctx(), &mut state).await.unwrap();
        assert_eq!(std::fs::read(&disk).unwrap(), bytes, "a skipped convert touched the disk");
        let raw = ConvertDisk::new(&config(DiskFormat::Raw, false, true));
        assert!(!raw.options().compress);
        assert_eq!(raw.options().format, "raw");
    }

    #[tokio::test]
    async fn refuses_while_qemu_runs() {
        let dir = tempfile::tempdir().unwrap();
        let disk = written_qcow2(dir.path()).await;
        let (sock, serial) = (dir.path().join("q.sock"), dir.path().join("serial.log"));
        let mut argv: Vec<String> = ["-accel", "tcg", "-nodefaults", "-display", "none", "-m", "32", "-S"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(["-drive".into(), format!("file={},if=virtio,format=qcow2", disk.display())]);
        argv.extend(["-qmp".into(), format!("unix:{},server=on,wait=off", sock.display())]);
        let qemu = QemuProcess::launch("qemu-system-x86_64", &argv, &sock, &serial).await.unwrap();
        let mut state = BuildState { disk_paths: vec![disk.clone()], qemu: Some(qemu), ..BuildState::default() };
        let step = ConvertDisk::new(&config(DiskFormat::Qcow2, false, false));
        let err = step.run(&ctx(), &mut state).await.unwrap_err();
        assert!(err.to_string().contains("still runs"), "{err}");
        assert!(!convert_path(&disk).exists());
        // Even bypassing the check, qemu-img sees QEMU's lock: that is the error the retry handles.
        let e = QemuImg::default().convert(&disk, &convert_path(&disk), &step.options()).await.unwrap_err();
        assert!(is_lock_error(&e), "{e}");
        state.qemu.as_ref().unwrap().kill().await;
        step.run(&ctx(), &mut state).await.unwrap();
    }

    /// The lock error is retried until the holder lets go.
    #[tokio::test]
    async fn retries_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let disk = written_qcow2(dir.path()).await;
        let (sock, serial) = (dir.path().join("q.sock"), dir.path().join("serial.log"));
        let mut argv: Vec<String> = ["-accel", "tcg", "-nodefaults", "-display", "none", "-m", "32", "-S"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(["-drive".into(), format!("file={},if=virtio,format=qcow2", disk.display())]);
        argv.extend(["-qmp".into(), format!("unix:{},server=on,wait=off", sock.display())]);
        // QEMU holds the image but is not in the state (like a QEMU the build does not own).
        let holder = QemuProcess::launch("qemu-system-x86_64", &argv, &sock, &serial).await.unwrap();
        let mut state = BuildState { disk_paths: vec![disk.clone()], ..BuildState::default() };
        // with compression: qemu-rs's own conversion leaves a locked image to qemu-img's retries
        let mut step = ConvertDisk::new(&config(DiskFormat::Qcow2, false, true));
        assert!(step.converts_itself());
        step.first_backoff = Duration::from_millis(100);
        let ui = Arc::new(Recorder::default());
        let ctx = StepContext { ui: ui.clone(), cancel: CancellationToken::new() };
        let release = async {
            // Let go of the image only once the step has met the lock and said it retries.
            // (bounded, so a step failing another way cannot hang the test)
            for _ in 0..3000 {
                if ui.lines().iter().any(|l| l.contains("locked by another process")) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            holder.kill().await;
        };
        let (r, ()) = tokio::join!(step.run(&ctx, &mut state), release);
        r.unwrap();
        assert_eq!(QemuImg::default().info(&disk).await.unwrap().format, "qcow2");
    }

    /// Additional disks get the same conversion, with the user's `qemu_img_args.convert`.
    #[tokio::test]
    async fn additional_disks_are_converted_with_the_user_flags() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("vm");
        std::fs::rename(written_qcow2(dir.path()).await, &main).unwrap();
        let extra = dir.path().join("vm-1");
        std::fs::rename(written_qcow2(dir.path()).await, &extra).unwrap();
        let (bytes_main, bytes_extra) = (guest_bytes(&main, dir.path()).await, guest_bytes(&extra, dir.path()).await);
        let before = allocated(&extra).unwrap();
        let mut c = config(DiskFormat::Qcow2, false, false);
        c.qemu_img_args = Some(crate::config::QemuImgArgs {
            convert: vec!["-o".into(), "cluster_size=16384".into()],
            ..Default::default()
        });
        let mut state = BuildState { disk_paths: vec![main.clone(), extra.clone()], ..BuildState::default() };
        let ui = Arc::new(Recorder::default());
        let ctx = StepContext { ui: ui.clone(), cancel: CancellationToken::new() };
        ConvertDisk::new(&c).run(&ctx, &mut state).await.unwrap();
        assert!(allocated(&extra).unwrap() < before / 2, "the additional disk was not compacted");
        for (disk, bytes) in [(&main, bytes_main), (&extra, bytes_extra)] {
            assert_eq!(guest_bytes(disk, dir.path()).await, bytes, "content of {} changed", disk.display());
            let out = tokio::process::Command::new("qemu-img").args(["info", "--output=json"]).arg(disk).output();
            let info: serde_json::Value = serde_json::from_slice(&out.await.unwrap().stdout).unwrap();
            assert_eq!(info["cluster-size"], 16384, "qemu_img_args.convert did not reach {}", disk.display());
        }
        assert!(ui.lines().iter().any(|l| l.contains("Compacting the additional disk")), "{:?}", ui.lines());
    }

    #[tokio::test]
    async fn cleanup_removes_a_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk");
        std::fs::write(&disk, b"d").unwrap();
        std::fs::write(convert_path(&disk), b"partial").unwrap();
        let mut state = BuildState { disk_paths: vec![disk.clone()], ..BuildState::default() };
        ConvertDisk::new(&Config::default()).cleanup(&ctx(), &mut state, &Err(StepError::Cancelled)).await;
        assert!(!convert_path(&disk).exists());
        assert!(disk.exists());
        assert_eq!(convert_path(Path::new("/o/vm")), Path::new("/o/vm.convert"));
    }
}
