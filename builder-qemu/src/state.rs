//! The typed state the build steps hand to each other.

use std::path::PathBuf;
use std::sync::Arc;

use packer_sdk::communicator::ssh::ReconnectingSsh;
use packer_sdk::http_server::HttpServer;

use crate::driver::accel::Accelerator;
use crate::driver::argv::{BridgeNet, EfiFiles};
use crate::driver::qemu::QemuProcess;
use crate::driver::swtpm::Swtpm;
use crate::driver::warm_cache::{EntryMeta, KeyLock, KeyMaterial, WarmCache};

/// The SSH key the build logs in with.
#[derive(Clone)]
pub struct SshKey {
    /// The private key (OpenSSH or PEM). Never logged.
    pub private_key: String,
    /// The `authorized_keys` line (`{{ .SSHPublicKey }}`).
    pub public_key_line: String,
    /// Whether qemu-rs generated it for this build (`temporary_key_pair_type`).
    pub temporary: bool,
}

impl std::fmt::Debug for SshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKey")
            .field("public_key_line", &self.public_key_line)
            .field("temporary", &self.temporary)
            .finish_non_exhaustive()
    }
}

/// The accelerator choice running in the background (see [`crate::steps::accel`]).
pub struct AccelProbe(
    pub tokio::task::JoinHandle<Result<(Accelerator, Option<String>), crate::driver::accel::AccelError>>,
);

/// Warm start (`warm_start`): the key of this build's machine and, on a hit, the entry restored.
pub struct WarmStart {
    /// The cache.
    pub cache: WarmCache,
    /// The entry's key.
    pub key: String,
    /// What the key was made of (kept in a new entry).
    pub material: KeyMaterial,
    /// The entry to restore from (a hit): no boot command, nothing to save.
    pub restore: Option<WarmRestore>,
}

/// The entry a build restores from.
pub struct WarmRestore {
    /// The entry's directory.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: EntryMeta,
    /// The shared lock on the entry, held until QEMU has read the state (so no build removes it).
    pub lock: Option<KeyLock>,
}

/// Everything the steps produced so far. Each step fills its part and its cleanup undoes it.
#[derive(Default)]
pub struct BuildState {
    /// The accelerator QEMU runs with.
    pub accel: Option<Accelerator>,
    /// The accelerator choice, once taken before the launch (warm start needs it for its key).
    pub accel_choice: Option<(Accelerator, Option<String>)>,
    /// Warm start, when `warm_start` is on.
    pub warm: Option<WarmStart>,
    /// The accelerator choice while it runs in the background.
    pub accel_probe: Option<AccelProbe>,
    /// The fetched (and verified) installer ISO or base disk image.
    pub source_path: Option<PathBuf>,
    /// Whether this build created the output directory (so cleanup may remove it).
    pub output_dir_created: bool,
    /// Has the janitor remove the output directory should the plugin be killed mid-build (none
    /// with `-on-error=abort`, which keeps it).
    pub output_dir_guard: Option<packer_sdk::janitor::Guard>,
    /// The QMP socket QEMU listens on (a random name in the temp directory when the configured
    /// path is too long for a unix socket), removed by the launch step's cleanup.
    pub qmp_socket: Option<packer_sdk::janitor::Guard>,
    /// The swtpm of the emulated TPM (`vtpm`).
    pub vtpm: Option<Swtpm>,
    /// The `floppy_*` image (a temp file).
    pub floppy_path: Option<crate::steps::TempImage>,
    /// The `cd_files`/`cd_content` ISO (a temp file).
    pub cd_path: Option<crate::steps::TempImage>,
    /// Hard disks, main disk first.
    pub disk_paths: Vec<PathBuf>,
    /// The main disk is an overlay on a base image with compressed clusters, to be opened with
    /// `copy-on-read=on` (see `steps::disk`).
    pub main_disk_copy_on_read: bool,
    /// The seed HTTP server (held for the whole build).
    pub http: Option<HttpServer>,
    /// The host bridge and the NIC's MAC (`net_bridge`).
    pub bridge: Option<BridgeNet>,
    /// `{{ .HTTPIP }}` as the guest sees it.
    pub http_ip: String,
    /// `{{ .HTTPPort }}` (0 when no HTTP server runs).
    pub http_port: u16,
    /// The SSH key, when the communicator is ssh.
    pub ssh_key: Option<SshKey>,
    /// EFI firmware files, when booting with EFI.
    pub efi: Option<EfiFiles>,
    /// The running QEMU.
    pub qemu: Option<QemuProcess>,
    /// The VNC port QEMU listens on.
    pub vnc_port: Option<u16>,
    /// The VNC password (`vnc_use_password`). Never logged.
    pub vnc_password: Option<packer_sdk::config::Secret>,
    /// The guest's address on the bridge (`net_bridge`), found after boot.
    pub guest_address: Option<std::net::IpAddr>,
    /// The host port forwarded to the guest's SSH port.
    pub ssh_host_port: Option<u16>,
    /// The connected communicator (it connects again after a reboot).
    pub comm: Option<Arc<ReconnectingSsh>>,
    /// The generated data published to provisioners.
    pub generated_data: serde_json::Map<String, serde_json::Value>,
    /// Output files, once the disk is final.
    pub artifact_files: Vec<PathBuf>,
    /// QEMU's `-D` log file, for typing with feedback (removed by the launch step's cleanup).
    pub trace_log: Option<packer_sdk::janitor::Guard>,
}

impl BuildState {
    /// The `authorized_keys` line of the build's SSH key (`{{ .SSHPublicKey }}`); empty without one.
    pub fn ssh_public_key_line(&self) -> String {
        self.ssh_key.as_ref().map(|k| k.public_key_line.clone()).unwrap_or_default()
    }

    /// The entry this build restores from (a warm-start hit).
    pub fn warm_restore(&self) -> Option<&WarmRestore> {
        self.warm.as_ref().and_then(|w| w.restore.as_ref())
    }
}
