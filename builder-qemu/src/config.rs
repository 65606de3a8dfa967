//! The builder's configuration: every option, its defaults and its validation (`Prepare`).
//!
//! Options are declared once with [`packer_config!`]; that gives the HCL2 ConfigSpec and the
//! decoding (unknown options, wrong types). [`Config::prepare`] then applies the defaults and
//! checks everything else, reporting every problem at once. See `docs/builders/qemu-rs.mdx`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use packer_sdk::component::PrepareError;
use packer_sdk::config::{
    decode_raw_configs_with, describe, spec_with_common, ConfigErrors, ConfigValue, DecodeOptions, Duration, FieldData,
    JsonValue, PackerCommon, RawConfig, Secret, Shape, Size,
};
use packer_sdk::hcl::{CtyType, ObjectSpec};
use packer_sdk::{config_enum, packer_config};

/// Variables usable in `boot_command` / `boot_steps` (`{{ .HTTPIP }}` …).
pub const BOOT_COMMAND_VARIABLES: &[&str] = &["HTTPIP", "HTTPPort", "Name", "SSHPublicKey"];
/// The options the builder renders itself at run time with its template data (`{{ .HTTPIP }}`…);
/// config decoding renders only their function calls (like the Go builder's `Exclude` list).
pub const TEMPLATE_OPTIONS: &[&str] =
    &["boot_command", "boot_steps", "qemuargs", "qemu_extra_args", "cd_content", "http_content"];
/// Variables usable in the keys and values of `cd_content` / `http_content` (a qemu-rs extension:
/// a NoCloud seed or a preseed file can carry the build's temporary key).
pub const CONTENT_VARIABLES: &[&str] = &["Name", "SSHPublicKey"];
/// Variables usable in `qemuargs` / `qemu_extra_args`.
pub const QEMU_ARGS_VARIABLES: &[&str] = &["HTTPIP", "HTTPPort", "HTTPDir", "OutputDir", "Name", "SSHHostPort"];
/// NIC models accepted by `net_device`.
pub const NET_DEVICES: &[&str] = &[
    "virtio-net",
    "virtio-net-pci",
    "e1000",
    "e1000e",
    "rtl8139",
    "ne2k_pci",
    "pcnet",
    "vmxnet3",
    "i82551",
    "i82557b",
    "i82559er",
    "usb-net",
];
/// Default size limit of the warm-start cache (`warm_start_cache_size`).
pub const DEFAULT_WARM_START_CACHE_SIZE: Size = Size::from_mib(20480);
/// Default disk size (Packer's `40960M`).
pub const DEFAULT_DISK_SIZE: Size = Size::from_mib(40960);

config_enum! {
    /// Output disk format (`format`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DiskFormat {
        /// qcow2 (default).
        #[default]
        Qcow2 => "qcow2",
        /// raw.
        Raw => "raw",
    }
}

config_enum! {
    /// Bus of the hard disks (`disk_interface`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DiskInterface {
        /// virtio-blk (default).
        #[default]
        Virtio => "virtio",
        /// virtio-scsi controller with scsi-hd disks.
        VirtioScsi => "virtio-scsi",
        /// AHCI (SATA).
        Sata => "sata",
        /// IDE.
        Ide => "ide",
        /// SCSI on an LSI 53C895A controller. Packer passes `if=scsi`, which QEMU 7.2 refuses on the
        /// `pc`, `q35` and `virt` machines ("machine type does not support if=scsi"); on those qemu-rs
        /// attaches the same controller QEMU used to create for `if=scsi` (`-device lsi53c895a`
        /// plus one `scsi-hd` per disk, guest driver `sym53c8xx`). Other machines get `if=scsi`.
        Scsi => "scsi",
        /// SD card. Packer passes `if=sd`, which only machines with an SD controller accept (e.g.
        /// `raspi3b`); on `pc`, `q35` and `virt` qemu-rs adds one `sdhci-pci` controller per disk
        /// with an `sd-card` on it (guest driver `sdhci-pci`). SD cards must have a power-of-2
        /// size: `prepare` checks `disk_size` and `disk_additional_size`.
        Sd => "sd",
    }
}

config_enum! {
    /// Host cache mode of the disks (`disk_cache`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DiskCache {
        /// writeback (default).
        #[default]
        Writeback => "writeback",
        /// writethrough.
        Writethrough => "writethrough",
        /// none (O_DIRECT).
        None => "none",
        /// unsafe (ignore flushes; fastest, fine for throw-away build VMs).
        Unsafe => "unsafe",
        /// directsync.
        Directsync => "directsync",
    }
}

config_enum! {
    /// Discard (TRIM) handling (`disk_discard`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DiskDiscard {
        /// Ignore discards (default).
        #[default]
        Ignore => "ignore",
        /// Pass discards to the image (frees qcow2 clusters).
        Unmap => "unmap",
    }
}

config_enum! {
    /// Zero-write detection (`disk_detect_zeroes`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum DetectZeroes {
        /// Off (default; `detect-zeroes` not passed).
        #[default]
        Off => "off",
        /// On.
        On => "on",
        /// Unmap (needs `disk_discard = "unmap"` to have an effect).
        Unmap => "unmap",
    }
}

config_enum! {
    /// Bus of the CD-ROM drives (`cdrom_interface`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CdromInterface {
        /// IDE.
        Ide => "ide",
        /// Legacy SCSI.
        Scsi => "scsi",
        /// virtio-blk.
        Virtio => "virtio",
        /// virtio-scsi with scsi-cd.
        VirtioScsi => "virtio-scsi",
    }
}

config_enum! {
    /// Guest architecture (`arch`, new in qemu-rs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum Arch {
        /// x86_64 (default).
        #[default]
        X86_64 => "x86_64",
        /// aarch64 (always UEFI, machine `virt`).
        Aarch64 => "aarch64",
    }
}

config_enum! {
    /// How `boot_command` keys reach the guest (`boot_command_transport`, new in qemu-rs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum BootTransport {
        /// QMP `input-send-event` (default; no VNC connection needed).
        #[default]
        Qmp => "qmp",
        /// VNC key events, as Packer does.
        Vnc => "vnc",
    }
}

config_enum! {
    /// Communicator type (`communicator`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum CommunicatorType {
        /// SSH (default).
        #[default]
        Ssh => "ssh",
        /// No communicator: the guest must power itself off.
        None => "none",
        /// WinRM (rejected by `prepare`: qemu-rs has no WinRM communicator, no Windows guest can be tested).
        Winrm => "winrm",
    }
}

config_enum! {
    /// SSH upload mechanism (`ssh_file_transfer_method`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum FileTransferMethod {
        /// scp (default; needs `scp` in the guest).
        #[default]
        Scp => "scp",
        /// The sftp subsystem.
        Sftp => "sftp",
    }
}

config_enum! {
    /// Algorithm of the temporary SSH key (`temporary_key_pair_type`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum KeyPairType {
        /// RSA (default, 4096 bits).
        #[default]
        Rsa => "rsa",
        /// ECDSA (521 bits by default).
        Ecdsa => "ecdsa",
        /// Ed25519.
        Ed25519 => "ed25519",
        /// DSA (obsolete; rejected by `prepare`).
        Dsa => "dsa",
    }
}

/// QEMU accelerator (`accelerator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accelerator {
    /// Probe at run time: KVM if it really works, else TCG with a warning (default).
    #[default]
    Auto,
    /// KVM.
    Kvm,
    /// TCG (software emulation).
    Tcg,
    /// No `accel=` at all.
    None,
}

impl Accelerator {
    /// The value as written in templates.
    pub fn as_str(&self) -> &'static str {
        match self {
            Accelerator::Auto => "auto",
            Accelerator::Kvm => "kvm",
            Accelerator::Tcg => "tcg",
            Accelerator::None => "none",
        }
    }
}

impl std::fmt::Display for Accelerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ConfigValue for Accelerator {
    fn shape() -> Shape {
        Shape::Attr(CtyType::String)
    }
    fn expected() -> String {
        "one of \"auto\", \"kvm\", \"tcg\", \"none\"".to_string()
    }
    fn decode(value: &JsonValue) -> Result<Self, String> {
        let s = match value {
            JsonValue::String(s) => s.trim().to_ascii_lowercase(),
            other => return Err(format!("expected {}, got {}", Self::expected(), describe(other))),
        };
        match s.as_str() {
            "" | "auto" => Ok(Accelerator::Auto),
            "kvm" => Ok(Accelerator::Kvm),
            "tcg" => Ok(Accelerator::Tcg),
            "none" => Ok(Accelerator::None),
            "hax" | "hvf" | "whpx" | "xen" => Err(format!(
                "the {s:?} accelerator is not supported: qemu-rs runs on Linux hosts only; use \"auto\", \"kvm\" or \"tcg\""
            )),
            _ => Err(packer_sdk::config::unknown_value_message(&s, &["auto", "kvm", "tcg", "none"])),
        }
    }
}

/// `output_checksum` (new in qemu-rs): write `SHA256SUMS` or `SHA512SUMS` (GNU coreutils format,
/// one line per artifact file) in the output directory. Accepts an algorithm name, or a bool
/// (`true` = sha256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputChecksum {
    /// No checksum file (default).
    #[default]
    None,
    /// SHA-256 (`<vm_name>.sha256`).
    Sha256,
    /// SHA-512 (`<vm_name>.sha512`).
    Sha512,
}

impl OutputChecksum {
    /// The algorithm name (`"none"`, `"sha256"`, `"sha512"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            OutputChecksum::None => "none",
            OutputChecksum::Sha256 => "sha256",
            OutputChecksum::Sha512 => "sha512",
        }
    }
}

impl ConfigValue for OutputChecksum {
    fn shape() -> Shape {
        Shape::Attr(CtyType::String)
    }
    fn expected() -> String {
        "one of \"none\", \"sha256\", \"sha512\", or a bool (true = sha256)".to_string()
    }
    fn decode(value: &JsonValue) -> Result<Self, String> {
        let s = match value {
            JsonValue::Bool(true) => return Ok(OutputChecksum::Sha256),
            JsonValue::Bool(false) => return Ok(OutputChecksum::None),
            JsonValue::String(s) => s.trim().to_ascii_lowercase(),
            other => return Err(format!("expected {}, got {}", Self::expected(), describe(other))),
        };
        match s.as_str() {
            "" | "none" | "false" => Ok(OutputChecksum::None),
            "sha256" | "true" => Ok(OutputChecksum::Sha256),
            "sha512" => Ok(OutputChecksum::Sha512),
            _ => Err(packer_sdk::config::unknown_value_message(&s, &["none", "sha256", "sha512"])),
        }
    }
}

packer_config! {
    /// `qemu_img_args`: extra flags for the `qemu-img` calls of the build, inserted where Packer's
    /// qemu builder inserts them (`create -f F [-b B -F F] <create> PATH SIZE`,
    /// `convert [-c] [-m 16 -W] <convert> -O F SRC DST`, `resize -f F <resize> PATH SIZE`). They apply
    /// to the main disk and to every `disk_additional_size` disk. A non-empty `convert` also turns
    /// the plain file copy of a `disk_image` whose format already matches `format` into a
    /// `qemu-img convert`, as in Packer.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct QemuImgArgs {
        /// Extra `qemu-img convert` flags.
        pub convert: Vec<String> => "convert",
        /// Extra `qemu-img create` flags.
        pub create: Vec<String> => "create",
        /// Extra `qemu-img resize` flags.
        pub resize: Vec<String> => "resize",
    }
}

packer_config! {
    /// The qemu-rs builder's configuration. After [`Config::prepare`] every default is applied
    /// (durations, ports, paths, names…), so build steps can use the values as they are.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct Config {
        // ---- source media ----
        /// Installer ISO or (with `disk_image`) base disk image: local path, `file://`, `http(s)://`.
        pub iso_url: String => "iso_url",
        /// Mirrors tried in order. After `prepare` it holds `iso_url` first, then the mirrors.
        pub iso_urls: Vec<String> => "iso_urls",
        /// `<hex>`, `md5|sha1|sha256|sha512:<hex>`, `file:<url-or-path>` or `none`.
        pub iso_checksum: String => "iso_checksum",
        /// Where a downloaded ISO/image is stored (default: the Packer cache directory). A path
        /// with an extension is the file itself (every mirror downloads to it); a path without one
        /// is a directory (created when missing) that receives `<hash>.<iso_target_extension>`.
        /// Local files (paths, `file://`) are used in place and never copied, as in Packer.
        pub iso_target_path: Option<String> => "iso_target_path",
        /// Extension of the downloaded file in the cache (lower-cased; default `iso`, or `img` with
        /// `disk_image`). Must not contain `/`; a leading `.` is dropped.
        pub iso_target_extension: Option<String> => "iso_target_extension",
        /// Do not download: QEMU reads `iso_url` over HTTP(S) itself (QEMU's curl block driver,
        /// Debian package `qemu-block-extra`). Every URL must be `http://` or `https://`. At run
        /// time each URL is probed with HTTP `HEAD` (User-Agent `Packer`, proxies from the
        /// environment) and must answer 2xx with `Accept-Ranges: bytes`; the first that does is
        /// used (Packer uses the last one; qemu-rs keeps the mirror order of `iso_urls`), and it is
        /// checked with `qemu-img info` through the curl driver. `iso_checksum` is forced to
        /// `none` (with a warning), as in Packer. With `disk_image` the image is converted from the
        /// URL into the output directory (or used as the backing file with `use_backing_file`).
        pub iso_skip_cache: Option<bool> => "iso_skip_cache",

        // ---- disks and output ----
        /// Artifact directory (default `output-<build name>`); must not exist unless `-force`.
        pub output_directory: String => "output_directory",
        /// Disk file name, no extension added (default `packer-<build name>`).
        pub vm_name: String => "vm_name",
        /// `qcow2` (default) or `raw`.
        pub format: DiskFormat => "format",
        /// Main disk size (default 40960M; a bare number is MiB).
        pub disk_size: Size => "disk_size",
        /// `iso_url` is a bootable disk image (cloud image), not an installer.
        pub disk_image: bool => "disk_image",
        /// With `disk_image` and qcow2: overlay on the downloaded image instead of a copy.
        pub use_backing_file: bool => "use_backing_file",
        /// With `disk_image`: do not grow the image to `disk_size`.
        pub skip_resize_disk: bool => "skip_resize_disk",
        /// Disk bus (default `virtio`).
        pub disk_interface: DiskInterface => "disk_interface",
        /// Disk cache mode (default `writeback`).
        pub disk_cache: DiskCache => "disk_cache",
        /// Discard mode (default `ignore`).
        pub disk_discard: DiskDiscard => "disk_discard",
        /// Zero detection (default `off`).
        pub disk_detect_zeroes: DetectZeroes => "disk_detect_zeroes",
        /// Skip the final compaction (forced for raw and backing files).
        pub skip_compaction: bool => "skip_compaction",
        /// Compress the final qcow2 image (forced off for raw).
        pub disk_compression: bool => "disk_compression",
        /// Extra blank disks, one per entry, in qemu-img size syntax (`"10G"`, `"512M"`; a bare
        /// number is bytes, as for qemu-img). They are `<output_directory>/<vm_name>-1`,
        /// `<vm_name>-2`…, created with `qemu-img create` (with `qemu_img_args.create`) in
        /// `format`, attached after the main disk on `disk_interface` with the same `disk_cache`,
        /// `disk_discard` and `disk_detect_zeroes`, and part of the artifact (`diskPaths`, files).
        /// Deviation: Packer never compacts them; qemu-rs gives them the same final conversion as
        /// the main disk (compaction unless `skip_compaction`, compression with
        /// `disk_compression`), so space the guest freed does not bloat the artifact.
        pub disk_additional_size: Option<Vec<String>> => "disk_additional_size",
        /// Extra flags for `qemu-img create`, `convert` and `resize` (see [`QemuImgArgs`]).
        pub qemu_img_args: Option<QemuImgArgs> => "qemu_img_args",
        /// New: write a checksum file of the disk (`sha256`, `sha512`, or `true` = sha256).
        pub output_checksum: OutputChecksum => "output_checksum",

        // ---- machine ----
        /// Guest architecture: `x86_64` (default) or `aarch64`.
        pub arch: Arch => "arch",
        /// QEMU binary (default `qemu-system-x86_64` / `qemu-system-aarch64`).
        pub qemu_binary: String => "qemu_binary",
        /// `auto` (default: KVM if it works, else TCG), `kvm`, `tcg` or `none`.
        pub accelerator: Accelerator => "accelerator",
        /// Machine type (default `pc`, `q35` with `secure_boot`, `virt` on aarch64).
        pub machine_type: String => "machine_type",
        /// RAM in MiB (default 512; values below 10 are rejected).
        pub memory: u64 => "memory",
        /// vCPUs (default 1, or the product of the topology below). After `prepare` it is the
        /// vCPU count QEMU gets (`-smp <cpus>`).
        pub cpus: u32 => "cpus",
        /// CPU sockets (`-smp …,sockets=`). With any of `sockets`, `cores`, `threads` set, the
        /// topology allows `product` vCPUs, the product of the ones set (Packer's rule): `cpus`
        /// unset becomes that product; a larger `cpus` is lowered to it (warning). A smaller
        /// `cpus` gets a warning, and qemu-rs adds `maxcpus=<product>` so QEMU 7.2 accepts the
        /// topology (QEMU refuses a topology that does not multiply to the vCPU count; Packer
        /// passes it as is and QEMU fails).
        pub sockets: Option<u32> => "sockets",
        /// Cores per socket (`-smp …,cores=`); see `sockets`.
        pub cores: Option<u32> => "cores",
        /// Threads per core (`-smp …,threads=`); see `sockets`.
        pub threads: Option<u32> => "threads",
        /// `-cpu` model (empty = QEMU's default, `max` on aarch64; `host` recommended with KVM).
        pub cpu_model: String => "cpu_model",
        /// Boot with UEFI (implied by `efi_firmware_*`, `secure_boot` and `arch = "aarch64"`).
        pub efi_boot: bool => "efi_boot",
        /// UEFI code image (empty = discovered at run time from QEMU's firmware descriptors).
        pub efi_firmware_code: String => "efi_firmware_code",
        /// UEFI variables template (empty = discovered at run time).
        pub efi_firmware_vars: String => "efi_firmware_vars",
        /// Leave `efivars.fd` out of the artifact's files.
        pub efi_drop_efivars: bool => "efi_drop_efivars",
        /// New: UEFI Secure Boot (enrolled OVMF, machine q35).
        pub secure_boot: bool => "secure_boot",
        /// A firmware file for QEMU (`-bios <file>`; with `use_pflash`, a read-only pflash drive),
        /// e.g. SeaBIOS, `OVMF.fd`, or `AAVMF_CODE.fd` on aarch64. Must be an existing file. For UEFI
        /// with a persistent variable store use `efi_boot`/`efi_firmware_*` instead. With UEFI on
        /// (`efi_boot`, `efi_firmware_*`, `secure_boot`) the file is ignored with a warning: QEMU
        /// boots from the UEFI pflash and ignores `-bios` on x86 (and refuses both on `virt`), so
        /// qemu-rs does not pass it. When set, `arch = "aarch64"` (or an aarch64 `qemu_binary`) does
        /// not imply `efi_boot`: the firmware given is the one that boots.
        pub firmware: Option<String> => "firmware",
        /// Load `firmware` as `-drive file=<firmware>,if=pflash,format=raw,readonly=on` instead of
        /// `-bios` (e.g. `OVMF_CODE.fd` alone: UEFI with variables kept in memory only). Without
        /// `firmware` it does nothing (warning); together with UEFI (`efi_boot`…) it is an error,
        /// as QEMU would refuse two firmware flash images in unit 0.
        pub use_pflash: Option<bool> => "use_pflash",
        /// Emulated TPM: a `swtpm` (Debian package `swtpm`) is started for the build with its state
        /// in a temp directory, wired to QEMU with `-chardev socket` + `-tpmdev emulator` +
        /// `-device <tpm_device_type>,tpmdev=tpm0`, and stopped (its state removed) when the build
        /// ends, whatever the outcome. The TPM state is not part of the artifact.
        pub vtpm: Option<bool> => "vtpm",
        /// With `vtpm`: emulate a TPM 1.2 instead of a TPM 2.0 (`swtpm` without `--tpm2`).
        pub use_tpm1: Option<bool> => "use_tpm1",
        /// With `vtpm`: the TPM device model, `tpm-tis` (default, x86), `tpm-crb` (x86, TPM 2.0
        /// only), `tpm-tis-device` (ARM `virt`) or `tpm-spapr` (ppc64 pseries).
        pub tpm_device_type: Option<String> => "tpm_device_type",
        /// Emulated graphics card (`-vga <type>`): one of QEMU's `std`, `cirrus`, `vmware`, `qxl`,
        /// `virtio`, `none` (also `xenfb`, `tcx`, `cg3` for machines that have them). Unset: the
        /// machine's default card.
        pub vga: Option<String> => "vga",
        /// NIC model (default `virtio-net`).
        pub net_device: String => "net_device",
        /// Attach the NIC to this host bridge (`-netdev bridge,id=user.0,br=<bridge>`, through
        /// QEMU's `qemu-bridge-helper`: `/etc/qemu/bridge.conf` must say `allow <bridge>`). No SSH
        /// port forward; `{{ .HTTPIP }}` is the bridge's first IPv4 address and the HTTP server
        /// listens there (unless `http_bind_address` is set); the NIC gets a random MAC
        /// (52:54:00:…) so parallel builds on one bridge do not clash. Unless `ssh_host` is set,
        /// the guest's address is found as Packer does — the NIC's MAC read over QMP, looked up in
        /// the host's ARP table (`/proc/net/arp`) on that bridge — checked every second for up to
        /// `ssh_timeout`; SSH then connects to it on `ssh_port` (Packer always uses 22).
        pub net_bridge: Option<String> => "net_bridge",
        /// CD-ROM bus (unset = QEMU's default, `virtio-scsi` on aarch64).
        pub cdrom_interface: Option<CdromInterface> => "cdrom_interface",
        /// Raw QEMU switches `[["-switch", "value"…], …]` replacing the defaults of the same switch.
        pub qemuargs: Vec<Vec<String>> => "qemuargs",
        /// New: arguments appended verbatim to the QEMU command line.
        pub qemu_extra_args: Vec<String> => "qemu_extra_args",
        /// No display window (default **true** in qemu-rs).
        pub headless: bool = true => "headless",
        /// `-display` value when not headless.
        pub display: String => "display",
        /// With `headless = false` and no `display`: pass no `-display` at all and let QEMU pick
        /// its default display (instead of `gtk`), as in Packer. No effect when headless.
        pub use_default_display: Option<bool> => "use_default_display",
        /// VNC listen address (default `127.0.0.1`).
        pub vnc_bind_address: String => "vnc_bind_address",
        /// Lowest VNC port (default 5900, at least 5900).
        pub vnc_port_min: u16 => "vnc_port_min",
        /// Highest VNC port (default 6000).
        pub vnc_port_max: u16 => "vnc_port_max",
        /// Protect QEMU's VNC server with a password (`-vnc …,password=on`; the password is set
        /// over QMP with `change-vnc-password` right after QEMU starts). The VNC address and the
        /// password are shown in the build output, as Packer does; the boot command typed over VNC
        /// authenticates with it (VNC Authentication).
        pub vnc_use_password: Option<bool> => "vnc_use_password",
        /// With `vnc_use_password`: the password, at most 8 characters (VNC uses 8). Unset: 8
        /// random characters from Packer's alphabet. Ignored (with a warning) without
        /// `vnc_use_password`, as in Packer.
        pub vnc_password: Option<Secret> => "vnc_password",
        /// Accepted with a warning: qemu-rs always uses QMP.
        pub qmp_enable: Option<bool> => "qmp_enable",
        /// QMP socket (default `<output_directory>/<vm_name>.monitor`).
        pub qmp_socket_path: String => "qmp_socket_path",
        /// Deprecated no-op (warning).
        pub run_once: Option<bool> => "run_once",
        /// New: file receiving the guest's serial console (default `<output_directory>/serial.log`).
        pub serial_log: String => "serial_log",

        // ---- boot command ----
        /// Keystrokes typed after `boot_wait` (joined with no separator).
        pub boot_command: Vec<String> => "boot_command",
        /// `[[keys, description?], …]`, exclusive with `boot_command`.
        pub boot_steps: Vec<Vec<String>> => "boot_steps",
        /// Wait before typing (default 10s; negative = no wait; after `prepare` never negative).
        pub boot_wait: Duration => "boot_wait",
        /// Pause after each key event (default `PACKER_KEY_INTERVAL` or 100ms).
        pub boot_key_interval: Duration => "boot_key_interval",
        /// Ignored (warning), as in Packer's QEMU builder.
        pub boot_keygroup_interval: Option<Duration> => "boot_keygroup_interval",
        /// New: `qmp` (default) or `vnc`.
        pub boot_command_transport: BootTransport => "boot_command_transport",
        /// No VNC server at all (qemu-rs leaves `-vnc` out of the command line; Packer still starts
        /// one) and no boot command typing: `boot_command` is then an error (as in Packer) and
        /// `boot_steps` are skipped with a warning.
        pub disable_vnc: Option<bool> => "disable_vnc",

        // ---- HTTP, floppy, CD ----
        /// Directory served over HTTP to the guest.
        pub http_directory: String => "http_directory",
        /// In-memory files served over HTTP (`/path` → content).
        pub http_content: BTreeMap<String, String> => "http_content",
        /// Lowest HTTP port (default 8000).
        pub http_port_min: u16 => "http_port_min",
        /// Highest HTTP port (default 9000).
        pub http_port_max: u16 => "http_port_max",
        /// HTTP listen address (default `127.0.0.1`; the guest reaches it as 10.0.2.2).
        pub http_bind_address: String => "http_bind_address",
        /// Ignored unless `tcp`/`tcp4` (warning); others rejected.
        pub http_network_protocol: Option<String> => "http_network_protocol",
        /// Ignored (warning), as in Packer's QEMU builder.
        pub http_interface: Option<String> => "http_interface",
        /// Files put at the root of a 1.44 MB FAT12 floppy attached as the first floppy drive
        /// (`-fda`). Globs (`*`, `?`, `[…]`) are allowed; a directory adds every file below it to
        /// the root (flat). Made with mtools (Debian package `mtools`) in a temp file removed when
        /// the build ends. Paths are relative to the directory Packer runs in.
        pub floppy_files: Option<Vec<String>> => "floppy_files",
        /// Directories (globs allowed) copied onto the floppy with their tree, under their own name.
        pub floppy_dirs: Option<Vec<String>> => "floppy_dirs",
        /// Inline files on the floppy (`path` → content, sub-directories created); they win over
        /// `floppy_files`/`floppy_dirs` files of the same name.
        pub floppy_content: Option<BTreeMap<String, String>> => "floppy_content",
        /// Volume label of the floppy (default `packer`), at most 11 characters; its first 8 are
        /// also the OEM name, as Packer writes them (Packer fails on labels longer than 8).
        pub floppy_label: Option<String> => "floppy_label",
        /// Files/directories (globs allowed) put on an extra CD.
        pub cd_files: Vec<String> => "cd_files",
        /// Inline files on the extra CD (`path` → content).
        pub cd_content: BTreeMap<String, String> => "cd_content",
        /// Volume label of the extra CD (default `packer`; `cidata` for cloud-init).
        pub cd_label: String => "cd_label",

        // ---- shutdown ----
        /// Command that powers the guest off (empty = ACPI power-down via QMP).
        pub shutdown_command: String => "shutdown_command",
        /// Wait for QEMU to exit after shutdown (default 5m).
        pub shutdown_timeout: Duration => "shutdown_timeout",

        // ---- communicator ----
        /// `ssh` (default) or `none` (`winrm` is rejected).
        pub communicator: CommunicatorType => "communicator",
        /// Lowest host port of the SSH forward (default 2222).
        pub host_port_min: u16 => "host_port_min",
        /// Highest host port of the SSH forward (default 4444).
        pub host_port_max: u16 => "host_port_max",
        /// Deprecated alias of `host_port_min` (warning).
        pub ssh_host_port_min: Option<u16> => "ssh_host_port_min",
        /// Deprecated alias of `host_port_max` (warning).
        pub ssh_host_port_max: Option<u16> => "ssh_host_port_max",
        /// No random host port for SSH: as Packer's builder does, QEMU forwards host port
        /// `ssh_port` to the guest's `ssh_port` (unless `qemuargs` replaces `-netdev`, e.g. with a
        /// tap or bridge of your own) and SSH connects to `ssh_host` (default `127.0.0.1`) on
        /// `ssh_port`. No effect with `net_bridge` or `communicator = "none"`.
        pub skip_nat_mapping: Option<bool> => "skip_nat_mapping",
        /// SSH user (required with `communicator = "ssh"`).
        pub ssh_username: String => "ssh_username",
        /// SSH password.
        pub ssh_password: Secret => "ssh_password",
        /// Private key file (`~` expanded; must be readable).
        pub ssh_private_key_file: String => "ssh_private_key_file",
        /// Total wait for SSH (default 5m).
        pub ssh_timeout: Duration => "ssh_timeout",
        /// Deprecated alias of `ssh_timeout` (warning; wins when set).
        pub ssh_wait_timeout: Option<Duration> => "ssh_wait_timeout",
        /// Tolerated authentication failures (default 10; 0 = unlimited).
        pub ssh_handshake_attempts: u32 => "ssh_handshake_attempts",
        /// Guest SSH port (default 22).
        pub ssh_port: u16 => "ssh_port",
        /// Host to connect to (default `127.0.0.1`).
        pub ssh_host: String => "ssh_host",
        /// Request a PTY for commands.
        pub ssh_pty: bool => "ssh_pty",
        /// Keep-alive interval (default 5s; negative disables).
        pub ssh_keep_alive_interval: Duration => "ssh_keep_alive_interval",
        /// Per-command timeout (default 0 = none).
        pub ssh_read_write_timeout: Duration => "ssh_read_write_timeout",
        /// `scp` (default) or `sftp`.
        pub ssh_file_transfer_method: FileTransferMethod => "ssh_file_transfer_method",
        /// Remove the temporary key from the guest's authorized_keys after provisioning.
        pub ssh_clear_authorized_keys: bool => "ssh_clear_authorized_keys",
        /// `rsa` (default), `ecdsa` or `ed25519` (`dsa` is rejected: no current sshd accepts DSA keys).
        pub temporary_key_pair_type: KeyPairType => "temporary_key_pair_type",
        /// Key size (default rsa 4096, ecdsa 521; ignored for ed25519).
        pub temporary_key_pair_bits: u32 => "temporary_key_pair_bits",
        /// Ignored (warning): cloud-builder leftover.
        pub temporary_key_pair_name: Option<String> => "temporary_key_pair_name",
        /// Ignored (warning): cloud-builder leftover.
        pub ssh_keypair_name: Option<String> => "ssh_keypair_name",
        /// After the first successful SSH connection: disconnect, wait this long, connect again.
        pub pause_before_connecting: Option<Duration> => "pause_before_connecting",
        /// Log in with the keys of the SSH agent at `SSH_AUTH_SOCK` (tried first).
        pub ssh_agent_auth: Option<bool> => "ssh_agent_auth",
        /// OpenSSH user certificate for `ssh_private_key_file` (checked at prepare).
        pub ssh_certificate_file: Option<String> => "ssh_certificate_file",
        /// Do not forward the SSH agent (forwarded by default when `SSH_AUTH_SOCK` is set).
        pub ssh_disable_agent_forwarding: Option<bool> => "ssh_disable_agent_forwarding",
        /// Ciphers to offer, most preferred first (unknown names are rejected at prepare).
        pub ssh_ciphers: Option<Vec<String>> => "ssh_ciphers",
        /// Key exchange algorithms to offer (unknown names are rejected at prepare).
        pub ssh_key_exchange_algorithms: Option<Vec<String>> => "ssh_key_exchange_algorithms",
        /// `PORT:HOST:HOSTPORT`: listen on 127.0.0.1:PORT here, connect to HOST:HOSTPORT from the guest.
        pub ssh_local_tunnels: Option<Vec<String>> => "ssh_local_tunnels",
        /// `PORT:HOST:HOSTPORT`: the guest listens on its 127.0.0.1:PORT, connections reach HOST:HOSTPORT from here.
        pub ssh_remote_tunnels: Option<Vec<String>> => "ssh_remote_tunnels",
        /// Jump host: SSH to the guest runs through a `direct-tcpip` channel of a login here.
        pub ssh_bastion_host: Option<String> => "ssh_bastion_host",
        /// Bastion SSH port (default 22).
        pub ssh_bastion_port: Option<u16> => "ssh_bastion_port",
        /// Bastion user (default: `ssh_username`; Packer leaves it empty).
        pub ssh_bastion_username: Option<String> => "ssh_bastion_username",
        /// Bastion password (password, then keyboard-interactive).
        pub ssh_bastion_password: Option<Secret> => "ssh_bastion_password",
        /// Bastion private key (default: `ssh_private_key_file` and its certificate).
        pub ssh_bastion_private_key_file: Option<String> => "ssh_bastion_private_key_file",
        /// OpenSSH user certificate for `ssh_bastion_private_key_file`.
        pub ssh_bastion_certificate_file: Option<String> => "ssh_bastion_certificate_file",
        /// Log in to the bastion with the SSH agent's keys.
        pub ssh_bastion_agent_auth: Option<bool> => "ssh_bastion_agent_auth",
        /// Answer the bastion's keyboard-interactive prompts on the terminal (`/dev/tty`).
        pub ssh_bastion_interactive: Option<bool> => "ssh_bastion_interactive",
        /// SOCKS5 proxy the SSH connection goes through (exclusive with `ssh_bastion_host`).
        pub ssh_proxy_host: Option<String> => "ssh_proxy_host",
        /// SOCKS5 proxy port (default 1080).
        pub ssh_proxy_port: Option<u16> => "ssh_proxy_port",
        /// SOCKS5 user (username/password authentication offered when set).
        pub ssh_proxy_username: Option<String> => "ssh_proxy_username",
        /// SOCKS5 password.
        pub ssh_proxy_password: Option<Secret> => "ssh_proxy_password",
        /// Internal (Packer plumbing), ignored.
        pub ssh_public_key: Option<Vec<u8>> => "ssh_public_key",
        /// Internal (Packer plumbing), ignored.
        pub ssh_private_key: Option<Vec<u8>> => "ssh_private_key",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_username: Option<String> => "winrm_username",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_password: Option<Secret> => "winrm_password",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_host: Option<String> => "winrm_host",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_port: Option<u16> => "winrm_port",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_timeout: Option<Duration> => "winrm_timeout",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_use_ssl: Option<bool> => "winrm_use_ssl",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_insecure: Option<bool> => "winrm_insecure",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_use_ntlm: Option<bool> => "winrm_use_ntlm",
        /// Rejected: qemu-rs has no WinRM communicator.
        pub winrm_no_proxy: Option<bool> => "winrm_no_proxy",

        // ---- warm start ----
        /// New: warm start. The first build saves the machine the moment SSH first answers, before
        /// any provisioner runs (QEMU's migration stream of RAM and devices, and a copy of the
        /// disks and UEFI variables taken while the machine is paused), into an entry of the
        /// warm-start cache `<PACKER_CACHE_DIR>/qemu-rs-warm`. A later build whose inputs up to that
        /// moment are the same (source media, disk and machine options, firmware, the boot command
        /// as written, HTTP/floppy/CD seed contents, SSH settings, the QEMU binary, the
        /// accelerator, this plugin's version) restores that machine and goes on at provisioning:
        /// no boot command, no install, no boot. Anything else changed misses the cache and makes a
        /// new entry. `packer build -force` builds cold and replaces the entry. Needs
        /// `communicator = "ssh"`; not with `net_bridge` or `vtpm`. The cache holds guest RAM and
        /// the build's temporary private key: files are 0600 in 0700 directories.
        pub warm_start: bool => "warm_start",
        /// New: the most the warm-start cache may hold (allocated bytes of every entry; default
        /// `20G`; a bare number is MiB). After saving an entry, least recently used entries are
        /// removed until the cache fits, never one another build is restoring from.
        pub warm_start_cache_size: Size => "warm_start_cache_size",
    }
}

/// The outcome of a successful [`Config::prepare`].
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedConfig {
    /// The options, with every default applied.
    pub config: Config,
    /// The `packer_*` options (build name, `-force`, `-debug`…).
    pub common: PackerCommon,
    /// Warnings for the user (deprecated or ignored options, risky choices).
    pub warnings: Vec<String>,
}

/// The HCL2 ConfigSpec of the builder: every option plus the `packer_*` common attributes.
pub fn config_spec() -> ObjectSpec {
    spec_with_common(Config::config_spec())
}

/// Where `prepare` looks at the outside world (environment, files); tests substitute it.
pub(crate) struct Env<'a> {
    /// Reads an environment variable.
    pub var: &'a dyn Fn(&str) -> Option<String>,
}

impl Config {
    /// Decodes the raw configs of `Prepare`, applies defaults and validates everything,
    /// returning every problem at once (with the warnings found so far).
    pub fn prepare(raws: &[RawConfig]) -> Result<PreparedConfig, PrepareError> {
        Self::prepare_with(raws, &Env { var: &|k| std::env::var(k).ok() })
    }

    pub(crate) fn prepare_with(raws: &[RawConfig], env: &Env<'_>) -> Result<PreparedConfig, PrepareError> {
        let options = DecodeOptions {
            exclude: TEMPLATE_OPTIONS,
            data: FieldData::Unavailable(
                "template data such as {{ .HTTPIP }} or {{ .Name }} is only available in boot_command, boot_steps, \
                 qemuargs, and ({{ .Name }}, {{ .SSHPublicKey }}) cd_content and http_content (Packer would insert \
                 \"<no value>\" here)"
                    .to_string(),
            ),
        };
        let (decoded, decode_errors) = decode_raw_configs_with::<Config>(raws, &options);
        let mut config = decoded.config;
        let common = decoded.common;
        let mut validation = ConfigErrors::new();
        let mut warnings = decoded.warnings;
        // Validation runs even when decoding failed, so every problem is reported at once; an
        // option that failed to decode has its default, and what validation says about it is
        // dropped (the decode error already names it).
        validate::run(&mut config, &common, env, &mut validation, &mut warnings);
        let mut errors = decode_errors.clone();
        for e in validation.0 {
            match &e.option {
                Some(option) if decode_errors.mentions(option) => {}
                _ => errors.0.push(e),
            }
        }
        if errors.is_empty() {
            Ok(PreparedConfig { config, common, warnings })
        } else {
            Err(PrepareError { errors, warnings })
        }
    }

    /// Path of the main disk: `<output_directory>/<vm_name>`.
    pub fn disk_path(&self) -> PathBuf {
        Path::new(&self.output_directory).join(&self.vm_name)
    }

    /// The `boot_command`/`boot_steps` as `(keys, description)` steps, in order (one step for
    /// `boot_command`; empty `boot_steps` entries skipped).
    pub fn boot_steps(&self) -> Vec<(String, Option<String>)> {
        if !self.boot_command.is_empty() {
            return vec![(self.boot_command.concat(), None)];
        }
        self.boot_steps
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| (s[0].clone(), s.get(1).filter(|d| !d.is_empty()).cloned()))
            .collect()
    }
}

mod validate;

#[cfg(test)]
mod bad_configs;
#[cfg(test)]
mod tests;
