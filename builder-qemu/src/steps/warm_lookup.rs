//! Step: warm start — compute the key of the machine this build would have when SSH first answers,
//! and find a saved one in the warm-start cache (see [`crate::driver::warm_cache`]).
//!
//! Runs after the media are fetched and before anything that a restore replaces (the SSH key, the
//! disks, the UEFI variables). On a hit the later steps take the entry's files instead of making
//! new ones, QEMU starts waiting for the saved state, and no boot command is typed. A corrupt
//! entry is removed with a warning and the build goes on cold.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use packer_sdk::config::Secret;
use packer_sdk::step::{Step, StepContext, StepError};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::driver::accel::Accelerator;
use crate::driver::accel_cache::{file_identity as identity, qemu_identity};
use crate::driver::firmware;
use crate::driver::warm_cache::{now_secs, short_key as short, KeyMaterial, WarmCache, WarmError, LAYOUT_VERSION};
use crate::state::{BuildState, WarmRestore, WarmStart};

/// Looks up the warm-start cache; sets `warm` (and `accel_choice`, which the key needs).
pub struct LookUpWarmStart<'a> {
    config: &'a Config,
    force: bool,
}

impl<'a> LookUpWarmStart<'a> {
    /// The step for `config`; `force` is `packer build -force` (build cold, replace the entry).
    pub fn new(config: &'a Config, force: bool) -> Self {
        LookUpWarmStart { config, force }
    }
}

/// The warm-start cache: `<PACKER_CACHE_DIR>/qemu-rs-warm`.
pub fn cache() -> WarmCache {
    WarmCache::new(packer_sdk::download::default_cache_dir().join("qemu-rs-warm"))
}

/// The options that do not shape the machine up to the moment SSH first answers (output,
/// shutdown, ports chosen per build, connection tuning, typing speed), reset so they stay out of
/// the key. Every other option is part of it: an option forgotten here costs a cache miss, never a
/// stale machine.
fn machine_shaping(c: &Config) -> Config {
    let d = Config::default();
    Config {
        // an overlay names its backing file relative to the output directory
        output_directory: if c.use_backing_file { c.output_directory.clone() } else { d.output_directory.clone() },
        skip_compaction: d.skip_compaction,
        disk_compression: d.disk_compression,
        output_checksum: d.output_checksum,
        efi_drop_efivars: d.efi_drop_efivars,
        serial_log: d.serial_log.clone(),
        qmp_socket_path: d.qmp_socket_path.clone(),
        vnc_bind_address: d.vnc_bind_address.clone(),
        vnc_port_min: d.vnc_port_min,
        vnc_port_max: d.vnc_port_max,
        vnc_use_password: d.vnc_use_password,
        vnc_password: d.vnc_password.clone(),
        headless: d.headless,
        display: d.display.clone(),
        use_default_display: d.use_default_display,
        boot_key_interval: d.boot_key_interval,
        boot_keygroup_interval: d.boot_keygroup_interval,
        boot_command_transport: d.boot_command_transport,
        http_port_min: d.http_port_min,
        http_port_max: d.http_port_max,
        host_port_min: d.host_port_min,
        host_port_max: d.host_port_max,
        ssh_host_port_min: d.ssh_host_port_min,
        ssh_host_port_max: d.ssh_host_port_max,
        shutdown_command: d.shutdown_command.clone(),
        shutdown_timeout: d.shutdown_timeout,
        ssh_timeout: d.ssh_timeout,
        ssh_wait_timeout: d.ssh_wait_timeout,
        ssh_handshake_attempts: d.ssh_handshake_attempts,
        ssh_keep_alive_interval: d.ssh_keep_alive_interval,
        ssh_read_write_timeout: d.ssh_read_write_timeout,
        ssh_file_transfer_method: d.ssh_file_transfer_method,
        ssh_clear_authorized_keys: d.ssh_clear_authorized_keys,
        pause_before_connecting: d.pause_before_connecting,
        ssh_local_tunnels: d.ssh_local_tunnels.clone(),
        ssh_remote_tunnels: d.ssh_remote_tunnels.clone(),
        warm_start_cache_size: d.warm_start_cache_size,
        ..c.clone()
    }
}

fn secret_digest(s: &Secret) -> String {
    if s.is_empty() {
        return String::new();
    }
    hex::encode(Sha256::digest(s.expose().as_bytes()))
}

/// Expands a glob entry of `cd_files`/`floppy_*` (relative to the directory Packer runs in).
fn expand(entry: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = glob::glob(entry).map(|g| g.flatten().collect()).unwrap_or_default();
    if out.is_empty() {
        out.push(PathBuf::from(entry));
    }
    out.sort();
    out
}

/// Everything that shapes the machine up to the moment SSH first answers (see
/// `docs/builders/qemu-rs.mdx`, Warm start). Blocking: it reads the seed files.
pub fn key_material(c: &Config, accel: Accelerator, source: Option<&Path>) -> KeyMaterial {
    let mut m = KeyMaterial::default();
    m.add("plugin", format!("qemu-rs {} layout {LAYOUT_VERSION}", env!("CARGO_PKG_VERSION")));
    m.add("accelerator", accel.qemu_name());
    m.add("qemu_binary", qemu_identity(Path::new(&c.qemu_binary)));
    m.add("iso_checksum", &c.iso_checksum);
    // the file itself: a `file:` checksum or `none` says nothing about its content
    match source {
        Some(p) if p.exists() => m.add("source", identity(p)),
        Some(p) => m.add("source", p.display()),
        None => m.add("source", "none"),
    }
    m.add("config", format!("{:?}", machine_shaping(c)));
    m.add("ssh_password", secret_digest(&c.ssh_password));
    if !c.http_directory.is_empty() {
        m.add_tree("http_directory", Path::new(&c.http_directory));
    }
    for e in &c.cd_files {
        for p in expand(e) {
            m.add_tree("cd_files", &p);
        }
    }
    for e in c.floppy_files.iter().flatten() {
        for p in expand(e) {
            m.add_tree("floppy_files", &p);
        }
    }
    for e in c.floppy_dirs.iter().flatten() {
        for p in expand(e) {
            m.add_tree("floppy_dirs", &p);
        }
    }
    if !c.ssh_private_key_file.is_empty() {
        m.add_file("ssh_private_key_file", Path::new(&c.ssh_private_key_file));
    }
    if let Some(f) = c.firmware.as_deref().filter(|f| !f.is_empty()) {
        m.add_file("firmware", Path::new(f));
    }
    if c.efi_boot {
        let found = firmware::find(&firmware::descriptor_dirs(), c.arch.as_str(), &c.machine_type, c.secure_boot).ok();
        let code = match c.efi_firmware_code.as_str() {
            "" => found.as_ref().map(|f| f.code.clone()),
            p => Some(PathBuf::from(p)),
        };
        let vars = match c.efi_firmware_vars.as_str() {
            "" => found.as_ref().map(|f| f.vars_template.clone()),
            p => Some(PathBuf::from(p)),
        };
        for (name, p) in [("efi_firmware_code", code), ("efi_firmware_vars", vars)] {
            match p {
                Some(p) => m.add_file(name, &p),
                None => m.add(name, "not found"),
            }
        }
    }
    // files named in the QEMU arguments (a -kernel, an extra drive): by identity, they may be big
    let args = c.qemuargs.iter().flatten().chain(c.qemu_extra_args.iter());
    for arg in args {
        for token in arg.split([',', '=']) {
            let p = Path::new(token);
            if token.len() > 1 && p.is_file() {
                m.add("qemu_args_file", identity(p));
            }
        }
    }
    m
}

/// Runs blocking cache work (hashing, locks) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StepError::failed(format!("warm start: {e}")))
}

#[async_trait]
impl Step<BuildState> for LookUpWarmStart<'_> {
    fn name(&self) -> &'static str {
        "warm start lookup"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        if !c.warm_start {
            return Ok(());
        }
        // the accelerator is part of the key (a machine saved under TCG is not resumed under KVM)
        let choice = super::accel::take_verdict(c, ctx, state).await?;
        let accel = choice.0;
        state.accel_choice = Some(choice);
        let config = c.clone();
        let source = if c.iso_skip_cache == Some(true) { None } else { state.source_path.clone() };
        let material = blocking(move || key_material(&config, accel, source.as_deref())).await?;
        let key = material.key();
        let cache = cache();
        let mut warm = WarmStart { cache: cache.clone(), key: key.clone(), material, restore: None };
        if self.force {
            ctx.ui
                .say(&format!(
                    "Warm start: -force given: building cold; the saved machine {} will be replaced",
                    short(&key)
                ))
                .await;
            state.warm = Some(warm);
            return Ok(());
        }
        let (c2, k2) = (cache.clone(), key.clone());
        let found = blocking(move || {
            let lock = c2.lock(&k2, false)?;
            c2.open(&k2).map(|m| m.map(|m| (m, lock)))
        })
        .await?;
        match found {
            Ok(Some((meta, lock))) => {
                let age = now_secs().saturating_sub(meta.saved_at);
                ctx.ui
                    .say(&format!(
                        "Warm start: restoring the machine saved {} ago when SSH first answered (entry {})",
                        packer_sdk::config::Duration::from_secs(age as i64),
                        short(&key)
                    ))
                    .await;
                warm.restore = Some(WarmRestore { dir: cache.entry_dir(&key), meta, lock: Some(lock) });
            }
            Ok(None) => {
                ctx.ui
                    .say(&format!(
                        "Warm start: no saved machine for these inputs (entry {}): building cold; the machine is \
                         saved when SSH first answers",
                        short(&key)
                    ))
                    .await;
            }
            Err(WarmError::Corrupt(why)) => {
                ctx.ui
                    .error(&format!(
                        "Warning: warm start: the saved machine {} is damaged ({why}); it was discarded and the build \
                         goes on cold",
                        short(&key)
                    ))
                    .await;
                let (c2, k2) = (cache.clone(), key.clone());
                let removed = blocking(move || c2.discard(&k2)).await?;
                if let Err(e) = removed {
                    tracing::warn!("warm start: {e}");
                }
            }
            Err(e) => {
                ctx.ui.error(&format!("Warning: warm start: cannot use the cache ({e}); building cold")).await;
            }
        }
        state.warm = Some(warm);
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        // the entry's lock, if a failed build still holds it
        if let Some(r) = state.warm.as_mut().and_then(|w| w.restore.as_mut()) {
            r.lock = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_connection_options_stay_out_of_the_key_and_machine_options_in() {
        let base = Config { boot_command: vec!["<enter>".into()], ..Default::default() };
        let key = |c: &Config| key_material(c, Accelerator::Tcg, None).key();
        let k = key(&base);
        let same = Config {
            output_directory: "elsewhere".into(),
            shutdown_command: "poweroff".into(),
            disk_compression: true,
            host_port_min: 3000,
            ..base.clone()
        };
        assert_eq!(key(&same), k);
        for other in [
            Config { boot_command: vec!["<esc>".into()], ..base.clone() },
            Config { memory: 1024, ..base.clone() },
            Config { iso_checksum: "sha256:00".into(), ..base.clone() },
            Config { ssh_password: Secret::new("x"), ..base.clone() },
        ] {
            assert_ne!(key(&other), k, "{other:?}");
        }
        assert_ne!(key_material(&base, Accelerator::Kvm, None).key(), k);
    }

    #[test]
    fn a_new_source_file_is_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("installer.iso");
        std::fs::write(&iso, "one").unwrap();
        let c = Config { iso_checksum: "none".into(), ..Default::default() };
        let k1 = key_material(&c, Accelerator::Tcg, Some(&iso)).key();
        assert_eq!(key_material(&c, Accelerator::Tcg, Some(&iso)).key(), k1);
        // a new download of the same URL (`iso_checksum = "none"`): other size and time
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&iso, "other").unwrap();
        assert_ne!(key_material(&c, Accelerator::Tcg, Some(&iso)).key(), k1);
    }

    #[test]
    fn seed_files_are_in_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("user-data"), "a").unwrap();
        let c = Config { http_directory: dir.path().display().to_string(), ..Default::default() };
        let k1 = key_material(&c, Accelerator::Tcg, None).key();
        std::fs::write(dir.path().join("user-data"), "b").unwrap();
        assert_ne!(key_material(&c, Accelerator::Tcg, None).key(), k1);
    }
}
