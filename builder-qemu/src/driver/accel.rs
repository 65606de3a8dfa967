//! Choosing the accelerator: KVM only when it really works, TCG otherwise.
//!
//! On some hosts `/dev/kvm` exists and opens, SeaBIOS even runs, but a guest kernel hangs (nested
//! virtualisation without hardware support). Opening the device proves nothing, so qemu-rs boots
//! a tiny firmware image of its own (`kvm_probe.S`) under KVM: it enters protected mode, waits for a
//! PIT timer interrupt through the PIC and the local APIC, enables paging and long mode, and reports
//! through QEMU's `isa-debug-exit` device. Under TCG the same image finishes in about 0.1 s.

use std::path::Path;
use std::time::Duration;

use super::accel_cache::{self, ProbeKey, Verdict};
use super::process;

/// The probe firmware, built from `kvm_probe.S` (64 KiB, loaded with `-bios`).
pub const PROBE_IMAGE: &[u8] = include_bytes!("kvm_probe.bin");

/// How long the probe guest may take under KVM before KVM is declared unusable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// QEMU's exit status when the probe reports success (`(0x2a << 1) | 1`).
const EXIT_OK: i32 = 0x55;
/// QEMU's exit status when no timer interrupt arrived (`(0x11 << 1) | 1`).
const EXIT_NO_TIMER: i32 = 0x23;

/// An accelerator QEMU can run with on Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's portable software emulation.
    Tcg,
}

impl Accelerator {
    /// The value of QEMU's `-accel` option.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
        }
    }
}

/// Why KVM cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KvmUnusable(pub String);

/// Errors choosing an accelerator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccelError {
    /// `accelerator = "kvm"` was asked for, but KVM does not work here.
    #[error(
        "accelerator = \"kvm\" was requested, but KVM does not work on this host: {0}. \
         Use accelerator = \"auto\" (falls back to TCG) or \"tcg\""
    )]
    KvmRequested(KvmUnusable),
    /// A value the builder does not know (Prepare rejects these; kept for callers that skip it).
    #[error("unknown accelerator {0:?}: use \"auto\", \"kvm\" or \"tcg\"")]
    Unknown(String),
}

/// The accelerator to use for `requested` (`"auto"`, `"kvm"`, `"tcg"`; `"none"` means TCG as in
/// Packer), and a warning for the user when `auto` fell back to TCG. The KVM verdict is remembered
/// per host boot (see [`super::accel_cache`]) in [`accel_cache::default_dir`].
pub async fn choose(requested: &str, qemu: &Path) -> Result<(Accelerator, Option<String>), AccelError> {
    choose_in(requested, qemu, &accel_cache::default_dir()).await
}

/// [`choose`] with the probe cache in `cache_dir`.
pub async fn choose_in(
    requested: &str,
    qemu: &Path,
    cache_dir: &Path,
) -> Result<(Accelerator, Option<String>), AccelError> {
    let kvm = || async {
        let key = ProbeKey::current(qemu);
        let (verdict, how) = accel_cache::verdict_with(cache_dir, &key, || probe_kvm(qemu)).await;
        tracing::info!(?how, ok = verdict.is_ok(), "KVM verdict");
        (verdict, how)
    };
    match requested {
        "tcg" | "none" => Ok((Accelerator::Tcg, None)),
        "kvm" => match kvm().await {
            (Ok(()), _) => Ok((Accelerator::Kvm, None)),
            (Err(e), _) => Err(AccelError::KvmRequested(e)),
        },
        "" | "auto" => match kvm().await {
            (Ok(()), _) => Ok((Accelerator::Kvm, None)),
            (Err(e), how) => Ok((
                Accelerator::Tcg,
                Some(format!(
                    "KVM is not usable ({e}{}); using TCG software emulation, which is much slower. \
                     Set accelerator = \"tcg\" to skip this check.",
                    match how {
                        Verdict::Cached => "; verdict of an earlier probe since this host booted",
                        Verdict::Probed => "",
                    }
                )),
            )),
        },
        other => Err(AccelError::Unknown(other.to_string())),
    }
}

/// Checks that KVM works: `/dev/kvm` opens read-write and the probe guest finishes under KVM.
pub async fn probe_kvm(qemu: &Path) -> Result<(), KvmUnusable> {
    let dev = Path::new("/dev/kvm");
    if !dev.exists() {
        return Err(KvmUnusable(
            "/dev/kvm does not exist (no KVM module loaded, or no hardware virtualisation)".into(),
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        return Err(KvmUnusable(format!(
            "/dev/kvm cannot be opened for reading and writing ({e}); add the user to the `kvm` group"
        )));
    }
    run_probe(qemu, Accelerator::Kvm, PROBE_TIMEOUT).await
}

/// Boots the probe image under `accel` and waits up to `timeout` for its report.
pub async fn run_probe(qemu: &Path, accel: Accelerator, timeout: Duration) -> Result<(), KvmUnusable> {
    let image = tempfile::Builder::new()
        .prefix("qemu-rs-accel-probe-")
        .suffix(".bin")
        .tempfile()
        .map_err(|e| KvmUnusable(format!("cannot write the probe image to the temp directory: {e}")))?;
    let _janitor = packer_sdk::janitor::guard(image.path());
    std::fs::write(image.path(), PROBE_IMAGE)
        .map_err(|e| KvmUnusable(format!("cannot write the probe image to {}: {e}", image.path().display())))?;
    let mut cmd = process::command(qemu);
    cmd.args(["-accel", accel.qemu_name(), "-bios"])
        .arg(image.path())
        .args(["-nodefaults", "-display", "none", "-no-reboot", "-m", "16", "-machine", "pc"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| KvmUnusable(format!("cannot start {} for the accelerator probe: {e}", qemu.display())))?;
    let started = std::time::Instant::now();
    // dropping the future on timeout drops the child, which kills it (kill_on_drop)
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            return Err(KvmUnusable(format!(
                "a test guest did not finish within {} s under {} (the host exposes /dev/kvm but guest code hangs, \
                 as with nested virtualisation without hardware support)",
                timeout.as_secs(),
                accel.qemu_name().to_uppercase()
            )))
        }
        Ok(Err(e)) => return Err(KvmUnusable(format!("waiting for the accelerator probe failed: {e}"))),
        Ok(Ok(out)) => out,
    };
    tracing::debug!(accel = accel.qemu_name(), elapsed_ms = started.elapsed().as_millis() as u64, status = ?out.status, "accelerator probe");
    match out.status.code() {
        Some(EXIT_OK) => Ok(()),
        Some(EXIT_NO_TIMER) => Err(KvmUnusable("timer interrupts do not reach a guest under KVM".into())),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            Err(KvmUnusable(format!("QEMU failed to run a guest under KVM ({}: {last})", out.status)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn qemu() -> PathBuf {
        PathBuf::from("qemu-system-x86_64")
    }

    #[tokio::test]
    async fn probe_image_passes_under_tcg() {
        // proves the probe itself is right: the same image must succeed with software emulation
        run_probe(&qemu(), Accelerator::Tcg, Duration::from_secs(60)).await.expect("probe under TCG");
    }

    #[tokio::test]
    async fn explicit_tcg_needs_no_probe() {
        let (a, w) = choose("tcg", Path::new("/nonexistent/qemu")).await.unwrap();
        assert_eq!((a, w), (Accelerator::Tcg, None));
    }

    #[tokio::test]
    async fn auto_gives_a_working_accelerator_or_says_why_not() {
        let cache = tempfile::tempdir().unwrap();
        let (a, w) = choose_in("auto", &qemu(), cache.path()).await.unwrap();
        match a {
            Accelerator::Kvm => assert!(w.is_none()),
            Accelerator::Tcg => {
                let w = w.expect("a fallback to TCG must warn");
                assert!(w.contains("KVM is not usable"), "{w}");
            }
        }
    }

    /// A second build on the same host boot takes the verdict from the cache (the probe's QEMU
    /// does not run again and the warning says so); replacing the QEMU binary — a change of the
    /// cache key — makes the next build probe again.
    #[tokio::test]
    async fn second_choice_uses_the_cached_verdict_until_qemu_changes() {
        use std::os::unix::fs::PermissionsExt;
        let cache = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let (qemu, runs) = (bin.path().join("qemu-system-x86_64"), bin.path().join("runs"));
        // a "QEMU" whose probe guest never reports: every run is logged, then exits with an error
        let script = |tag: &str| {
            format!("#!/bin/sh\n# {tag}\necho run >> '{}'\necho 'no guest here' >&2\nexit 1\n", runs.display())
        };
        std::fs::write(&qemu, script("v1")).unwrap();
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        let runs_so_far = || std::fs::read_to_string(&runs).unwrap_or_default().lines().count();
        // with a usable /dev/kvm the probe starts QEMU; without one it stops before (nothing to count)
        let kvm_usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();

        let (a, first) = choose_in("auto", &qemu, cache.path()).await.unwrap();
        assert_eq!(a, Accelerator::Tcg);
        let first = first.expect("a fallback to TCG warns");
        assert!(!first.contains("earlier probe"), "{first}");
        if kvm_usable {
            assert!(first.contains("no guest here"), "{first}");
            assert_eq!(runs_so_far(), 1);
        }

        let (a, second) = choose_in("auto", &qemu, cache.path()).await.unwrap();
        assert_eq!(a, Accelerator::Tcg);
        let second = second.expect("a fallback to TCG warns");
        assert!(second.contains("verdict of an earlier probe since this host booted"), "{second}");
        if kvm_usable {
            assert_eq!(runs_so_far(), 1, "the second choice ran the probe again");
        }
        // accelerator = "kvm" reads the same verdict
        let e = choose_in("kvm", &qemu, cache.path()).await.unwrap_err();
        assert!(matches!(e, AccelError::KvmRequested(_)), "{e}");

        // an upgraded QEMU (other size and modification time): probed again
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&qemu, script("version 2")).unwrap();
        let (_, third) = choose_in("auto", &qemu, cache.path()).await.unwrap();
        let third = third.expect("a fallback to TCG warns");
        assert!(!third.contains("earlier probe"), "{third}");
        if kvm_usable {
            assert_eq!(runs_so_far(), 2, "the changed QEMU was not probed");
        }
    }

    #[tokio::test]
    async fn missing_qemu_binary_is_reported() {
        let e = run_probe(Path::new("/nonexistent/qemu-system-x86_64"), Accelerator::Tcg, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.0.contains("cannot start /nonexistent/qemu-system-x86_64"), "{e}");
    }

    #[test]
    fn probe_image_matches_source() {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/driver/kvm_probe.S");
        let obj = dir.path().join("p.o");
        let bin = dir.path().join("p.bin");
        let st = std::process::Command::new("as").args(["--32", "-o"]).arg(&obj).arg(&src).status();
        let st = st.expect("`as` (binutils) is needed to check the probe image");
        assert!(st.success());
        let st = std::process::Command::new("ld")
            .args(["-m", "elf_i386", "-Ttext", "0", "--oformat", "binary", "-o"])
            .arg(&bin)
            .arg(&obj)
            .status()
            .unwrap();
        assert!(st.success());
        assert!(std::fs::read(&bin).unwrap() == PROBE_IMAGE, "kvm_probe.bin is stale: rebuild it from kvm_probe.S");
    }
}
