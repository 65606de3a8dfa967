//! The builder's configuration: every option, its defaults and its validation (`Prepare`).
//!
//! Options are declared once with [`packer_config!`]; that gives the HCL2 ConfigSpec and the
//! decoding (unknown options, wrong types). [`Config::prepare`] then applies the defaults and
//! checks everything else, reporting every problem at once. See `docs/builders/qemu-rs.mdx`.
//!
//! The doc comment of each option is its entry in the option reference of that page (its tables
//! are generated from [`Config::option_docs`] and [`DOC_SECTIONS`]): write it for template
//! authors, with the `Default:`/`Type:`/`Internal:` paragraphs of [`packer_sdk::config::docs`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use packer_sdk::component::PrepareError;
use packer_sdk::config::{
    decode_raw_configs_with, describe, spec_with_common, ConfigErrors, ConfigValue, DecodeOptions, DocSection,
    Duration, FieldData, JsonValue, PackerCommon, RawConfig, Secret, Shape, Size,
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
    fn type_label() -> String {
        "`auto` | `kvm` | `tcg` | `none`".to_string()
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
    fn type_label() -> String {
        "`none` | `sha256` | `sha512` | bool".to_string()
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
        /// Installer ISO, or with `disk_image` the base disk image. Local path, `file://`, `http(s)://`. One
        /// of `iso_url`/`iso_urls` is required; not both. **Deviation:** go-getter's other sources (`s3::`,
        /// `gcs::`, git, hg, smb) are not supported. A download goes to `<cache file>.part` and gets its
        /// final name only once complete and verified, so the cache never holds a file a later build would
        /// wrongly trust; a download cut off is resumed by the next build (HTTP `Range`), or started over
        /// when the server cannot continue it.
        pub iso_url: String => "iso_url",
        /// Mirrors tried in order until one can be fetched (a checksum mismatch fails the build at once).
        ///
        /// Internal: after `prepare` it holds `iso_url` first, then the mirrors.
        ///
        /// Default: `[]`
        pub iso_urls: Vec<String> => "iso_urls",
        /// `<hex>` (algorithm from length: 32 md5, 40 sha1, 64 sha256, 128 sha512),
        /// `md5:`/`sha1:`/`sha256:`/`sha512:<hex>`, `file:<url-or-path>` (a `SHA256SUMS`- or BSD-style file;
        /// the entry for the file name of the URL being fetched is used; a file without one that holds a
        /// single bare digest, as Alpine's `<image>.sha512`, gives that digest, as in Packer) or `none`
        /// (warning). **Deviation:** a remote `file:` checksum is fetched when the build starts, not by
        /// `packer validate` (Packer fetches it at validation); a local one (`file:./SHA256SUMS`,
        /// `file:file:///…`) must exist at validation, as in Packer.
        ///
        /// Default: — (required)
        pub iso_checksum: String => "iso_checksum",
        /// Where a download is stored. A path with an extension is the file itself (every mirror downloads to
        /// it); a path without one is a directory (created when missing) that receives
        /// `<key>.<iso_target_extension>`, the key being a SHA-1 of the URL and the checksum. A path without
        /// an extension that is an existing file, or one with an extension that is an existing directory, is
        /// an error. Local files (paths, `file://`) are used in place and never copied, as in Packer.
        ///
        /// Default: the Packer cache directory (`PACKER_CACHE_DIR`, else `./packer_cache`)
        pub iso_target_path: Option<String> => "iso_target_path",
        /// Extension of the downloaded file (lower-cased; a leading `.` is dropped; no `/`). **Deviation:**
        /// Packer's default is `iso` with `disk_image` too; only the cached file's name differs.
        ///
        /// Default: `iso` (`img` with `disk_image`)
        pub iso_target_extension: Option<String> => "iso_target_extension",
        /// Do not download: QEMU reads the ISO/image straight from its URL through its curl block driver
        /// (Debian package `qemu-block-extra`; when it is missing the build says so). Every URL must be
        /// `http://` or `https://` (checked at validation). When the build starts each URL, in `iso_urls`
        /// order, is probed with HTTP `HEAD` (User-Agent `Packer`, proxies from the environment) and the **first**
        /// one that answers 2xx with `Accept-Ranges: bytes` is used, after `qemu-img info` has read it
        /// through the curl driver; the others are reported with the reason. **Deviation:** Packer uses the
        /// last such URL. `iso_checksum` is forced to `none` (a warning when another was given), as in
        /// Packer. With `disk_image` the image is converted from the URL into the output directory (or is the
        /// backing file with `use_backing_file`); otherwise the URL is attached as the CD.
        ///
        /// Default: `false`
        pub iso_skip_cache: Option<bool> => "iso_skip_cache",

        // ---- disks and output ----
        /// Must not exist unless `packer build -force` (checked at validation). Removed when the build fails. **Deviation:**
        /// a regular file at that path (or a file among its parents) is an error even with `-force` —
        /// Packer's `-force` would delete the file; qemu-rs never deletes a file it did not make.
        ///
        /// Default: `output-<build name>`
        pub output_directory: String => "output_directory",
        /// Disk file name; no extension is added. Must not contain `/`.
        ///
        /// Default: `packer-<build name>`
        pub vm_name: String => "vm_name",
        /// Format of the main disk and the additional disks. `raw` forces `skip_compaction = true` and
        /// `disk_compression = false` (a warning when it was set).
        ///
        /// Default: `qcow2`
        pub format: DiskFormat => "format",
        /// Size of the new disk, or the size a `disk_image` is grown to. A bare number means MiB (see
        /// [Values](#values)). `"0"` means the default.
        ///
        /// Default: `40960M`
        pub disk_size: Size => "disk_size",
        /// `iso_url` is a bootable disk image (cloud image), copied/converted into the output directory and
        /// booted from disk; no installer CD is attached. **New:** a qcow2 image with compressed clusters
        /// (how cloud images ship) is booted through a copy-on-read overlay that the final conversion
        /// flattens, when there is one (see [Performance defaults](#performance-defaults)).
        ///
        /// Default: `false`
        pub disk_image: bool => "disk_image",
        /// Needs `disk_image = true` and `format = "qcow2"`: the disk is an overlay over the downloaded image
        /// (artifact not self-contained). Forces `skip_compaction`.
        ///
        /// Default: `false`
        pub use_backing_file: bool => "use_backing_file",
        /// Do not grow the copied `disk_image` to `disk_size`. Needs `disk_image = true`.
        ///
        /// Default: `false`
        pub skip_resize_disk: bool => "skip_resize_disk",
        /// Bus of every hard disk (main and additional). `virtio`, `sata`, `ide`: `-drive …,if=<interface>`
        /// as in Packer. `virtio-scsi`: one `virtio-scsi-pci` controller and a `scsi-hd` per disk. **Deviation:**
        /// for `scsi`, QEMU 7.2 refuses Packer's `if=scsi` on the `pc`, `q35` and `virt` machines ("machine
        /// type does not support if=scsi"), so on those (and their versioned names) qemu-rs adds the
        /// controller QEMU used to create for `if=scsi`, `-device lsi53c895a`, with one `scsi-hd` per disk
        /// (guest driver `sym53c8xx`); other machines get `if=scsi`. **Deviation:** for `sd`, which needs a
        /// machine with an SD controller, qemu-rs gives each disk on `pc`, `q35` and `virt` its own
        /// `sdhci-pci` controller with an `sd-card` on it (guest driver `sdhci-pci`); other machines (e.g.
        /// `raspi3b`) get `if=sd`. SD cards must have a power-of-2 size: `disk_size` (unless `disk_image`
        /// with `skip_resize_disk`) and every `disk_additional_size` entry are checked at validation time.
        ///
        /// Default: `virtio`
        pub disk_interface: DiskInterface => "disk_interface",
        /// `cache=` of every disk. `unsafe` is the fastest for throw-away build VMs.
        ///
        /// Default: `writeback`
        pub disk_cache: DiskCache => "disk_cache",
        /// `discard=` of every disk; `unmap` lets the guest's TRIM free qcow2 clusters.
        ///
        /// Default: `ignore`
        pub disk_discard: DiskDiscard => "disk_discard",
        /// `detect-zeroes=` of every disk (passed only when not `off`).
        ///
        /// Default: `off`
        pub disk_detect_zeroes: DetectZeroes => "disk_detect_zeroes",
        /// Skip the final `qemu-img convert` of the disks (forced by `format = "raw"` and
        /// `use_backing_file`). With `disk_compression` the conversion still runs: a `use_backing_file`
        /// overlay is then flattened into a standalone compressed image, as in Packer.
        ///
        /// Default: `false`
        pub skip_compaction: bool => "skip_compaction",
        /// Compress the final qcow2 images (zlib, as `qemu-img convert -c`). Ignored (warning) with `raw`.
        /// **Deviation:** qemu-rs writes the compressed image itself: the compressed clusters of a
        /// `disk_image` base that the guest left unchanged are copied as they are instead of being
        /// decompressed and compressed again, and the rest is compressed on every core (zlib level 9, a
        /// little smaller than `qemu-img`'s level 6). The result is the same kind of image (qcow2 v3, 64 KiB
        /// clusters, zlib, standalone) and must pass `qemu-img check`; otherwise, for images it does not
        /// read (other cluster sizes, zstd, a raw base) and with `qemu_img_args.convert` set, `qemu-img convert
        /// -c` runs as in Packer (see [Performance defaults](#performance-defaults)).
        ///
        /// Default: `false`
        pub disk_compression: bool => "disk_compression",
        /// Extra blank disks `<vm_name>-1`, `<vm_name>-2`, … of these sizes (`qemu-img` size syntax: `"10G"`,
        /// `"512M"`; a bare number is bytes; `0` or an invalid size is an error at validation time), created
        /// with `qemu-img create` (and `qemu_img_args.create`) in `format`, attached after the main disk on
        /// `disk_interface` with the same `disk_cache`, `disk_discard` and `disk_detect_zeroes`, and part of
        /// the artifact (`diskPaths` and its files). **Deviation:** they get the same final conversion as the
        /// main disk (compaction unless `skip_compaction`, compression with `disk_compression`), so space the
        /// guest freed on them does not bloat the artifact; Packer never compacts or compresses them.
        ///
        /// Default: `[]`
        pub disk_additional_size: Option<Vec<String>> => "disk_additional_size",
        /// Extra flags put into every `qemu-img` call of that kind, for the main disk and the additional
        /// disks, at Packer's positions: `create -f <fmt> [-b <backing> -F <fmt>] <create…> <path> <size>`,
        /// `convert [-c] [-m 16 -W] <convert…> -O <fmt> <src> <dst>` (copying a `disk_image` and the final
        /// compaction; qemu-rs's own `-m`/`-W` come first, so a `-m` of yours wins; a non-empty `convert`
        /// also turns the plain file copy of a `disk_image` already in `format` into a `qemu-img convert`, as
        /// in Packer), `resize -f <fmt> <resize…> <path> <size>`.
        ///
        /// Type: block `{ convert, create, resize }` (lists of strings)
        ///
        /// Default: empty
        pub qemu_img_args: Option<QemuImgArgs> => "qemu_img_args",
        /// **New.** Writes `SHA256SUMS` / `SHA512SUMS` (coreutils format, one line per artifact file; check
        /// with `sha256sum -c SHA256SUMS` in the output directory). `true` = `sha256`, `false` = `none`.
        ///
        /// Default: `none`
        pub output_checksum: OutputChecksum => "output_checksum",

        // ---- machine ----
        /// **New.** Picks the default binary, machine (`virt`), CPU model (`max`) and firmware. `aarch64`
        /// boots UEFI (`efi_boot` is implied) unless the template brings its own firmware: `firmware`, or a
        /// `-bios`/`-pflash` in `qemuargs`. Templates from Packer's builder set `qemu_binary =
        /// "qemu-system-aarch64"` (and `machine_type`, `efi_*`) instead, which implies `arch = "aarch64"`.
        ///
        /// Default: `x86_64` (`aarch64` when `qemu_binary`'s file name contains `aarch64`)
        pub arch: Arch => "arch",
        /// A path, or a name looked up on `PATH` (e.g. `qemu-system-aarch64`, `qemu-kvm`). A file name
        /// containing `aarch64` implies `arch = "aarch64"`.
        ///
        /// Default: `qemu-system-x86_64` (`qemu-system-aarch64` with `arch = "aarch64"`)
        pub qemu_binary: String => "qemu_binary",
        /// **Deviation:** `auto` (also the empty string) proves at run time that KVM really runs a guest (a
        /// tiny probe firmware under KVM, so a KVM that opens but hangs is detected) and falls back to TCG
        /// with a warning; Packer only checks that `/dev/kvm` opens. `kvm` runs the same probe and fails the
        /// build, saying why, when KVM does not work. The probe runs in the background from the first step
        /// on, while the ISO/image, disk and seeds are prepared, and its verdict is remembered per host boot
        /// in `$XDG_CACHE_HOME/qemu-rs/accel` (else `~/.cache/qemu-rs/accel`; `QEMU_RS_ACCEL_CACHE_DIR`
        /// overrides), keyed by the boot id, kernel release, QEMU binary (path, size, mtime), the `/dev/kvm`
        /// node and the probe image, so a host pays for it once; any change re-probes. `none` runs TCG with
        /// `accel=tcg` (Packer leaves `accel=` out, which QEMU also runs as TCG). `hax`, `hvf`, `whpx` and
        /// `xen` are rejected (qemu-rs runs on Linux hosts only).
        ///
        /// Default: `auto`
        pub accelerator: Accelerator => "accelerator",
        /// `-machine type=…`; `q35` is recommended for modern guests, `virt` on aarch64.
        ///
        /// Default: `pc` (`q35` with `secure_boot`, `virt` with `arch = "aarch64"`)
        pub machine_type: String => "machine_type",
        /// **Deviation:** values 1–9 are rejected (Packer silently uses 512).
        ///
        /// Type: number (MiB)
        ///
        /// Default: `512`
        pub memory: u64 => "memory",
        /// vCPU count (`-smp <cpus>`). With `sockets`/`cores`/`threads`, Packer's rules apply (see
        /// `sockets`).
        ///
        /// Internal: after `prepare` it is the vCPU count QEMU gets.
        ///
        /// Default: `1` (the topology's product when `sockets`/`cores`/`threads` are set)
        pub cpus: u32 => "cpus",
        /// CPU topology, with `cores` and `threads`: `-smp <cpus>[,sockets=][,cores=][,threads=]`; `0` means
        /// unset. With any of them set, the topology allows `product` vCPUs, the product of the ones set
        /// (Packer's rules): an unset `cpus` becomes the product; a larger `cpus` is lowered to it (warning);
        /// a smaller `cpus` gives a warning and the other vCPUs stay offline. **Deviation:** in that last
        /// case qemu-rs adds `maxcpus=<product>`, so QEMU 7.2 accepts the topology; Packer passes it as it is
        /// and QEMU refuses to start. A product above 4096 is an error.
        ///
        /// Default: unset
        pub sockets: Option<u32> => "sockets",
        /// Cores per socket (`-smp …,cores=`); see `sockets`.
        ///
        /// Default: unset
        pub cores: Option<u32> => "cores",
        /// Threads per core (`-smp …,threads=`); see `sockets`.
        ///
        /// Default: unset
        pub threads: Option<u32> => "threads",
        /// `-cpu`; when unset, qemu-rs adds RDRAND to QEMU's default x86 CPU under TCG (see [Performance
        /// defaults](#performance-defaults)); `host` is recommended with KVM (RHEL 9's QEMU has no `qemu64`).
        /// On aarch64 qemu-rs sets `max` when it is unset, because the `virt` machine's default CPU is a
        /// 32-bit Cortex-A15 that cannot run 64-bit firmware; e.g. `cortex-a72` works too.
        ///
        /// Default: QEMU's default (`max` on aarch64)
        pub cpu_model: String => "cpu_model",
        /// Boot with UEFI: the code image read-only and a per-build copy of the variables as two pflash
        /// drives, and no `-boot` option. Implied by `efi_firmware_*` and `secure_boot`, and by `arch =
        /// "aarch64"` (or an aarch64 `qemu_binary`) unless `firmware` or a `-bios`/`-pflash` in `qemuargs` is
        /// given.
        ///
        /// Default: `false`
        pub efi_boot: bool => "efi_boot",
        /// UEFI code image (OVMF on x86_64, AAVMF on aarch64, e.g. `/usr/share/AAVMF/AAVMF_CODE.fd`). **Deviation:**
        /// empty = discovered at run time from QEMU's firmware descriptors (`/usr/share/qemu/firmware`)
        /// instead of Packer's fixed `/usr/share/OVMF/OVMF_CODE.fd`. Must be a readable file when set.
        ///
        /// Default: discovered
        pub efi_firmware_code: String => "efi_firmware_code",
        /// UEFI variables template, copied to `<output_directory>/efivars.fd`. Must be a readable file when
        /// set.
        ///
        /// Default: discovered
        pub efi_firmware_vars: String => "efi_firmware_vars",
        /// Leave `efivars.fd` out of the artifact's files (it stays in the output directory).
        ///
        /// Default: `false`
        pub efi_drop_efivars: bool => "efi_drop_efivars",
        /// **New.** UEFI Secure Boot with enrolled keys; needs a `q35` machine (the default then) and `arch =
        /// "x86_64"`.
        ///
        /// Default: `false`
        pub secure_boot: bool => "secure_boot",
        /// A firmware file for QEMU (e.g. SeaBIOS, `OVMF.fd`, or `AAVMF_CODE.fd` on aarch64), loaded with
        /// `-bios <file>`, or as a read-only pflash drive with `use_pflash`. Must be an existing file
        /// (checked at validation). For UEFI with a persistent variable store use `efi_boot`/`efi_firmware_*`
        /// instead. **Deviation:** with UEFI on (`efi_boot`, `efi_firmware_*`, `secure_boot`) the file is
        /// ignored with a warning and no `-bios` is passed, because QEMU boots from the UEFI pflash (and
        /// ignores `-bios` on x86, refuses both on `virt`). When set, `arch = "aarch64"` does not imply
        /// `efi_boot`: the firmware given is the one that boots.
        ///
        /// Default: unset
        pub firmware: Option<String> => "firmware",
        /// Load `firmware` as `-drive file=<firmware>,if=pflash,format=raw,readonly=on` instead of `-bios`
        /// (e.g. `OVMF_CODE.fd` alone: UEFI with variables kept in memory only). Without `firmware` it has no
        /// effect (warning). Together with UEFI (`efi_boot`, `efi_firmware_*`, `secure_boot`) it is an error,
        /// since both would be the first pflash drive.
        ///
        /// Default: `false`
        pub use_pflash: Option<bool> => "use_pflash",
        /// Give the guest an emulated TPM: qemu-rs starts a `swtpm` (Debian package `swtpm`; the build says
        /// to install it when it is missing) for each build, with its state in a temporary directory, wired
        /// to QEMU with `-chardev socket` / `-tpmdev emulator` / `-device <tpm_device_type>,tpmdev=tpm0`. The
        /// process is stopped and its state removed whatever way the build ends; the TPM state is not part of
        /// the artifact (as in Packer).
        ///
        /// Default: `false`
        pub vtpm: Option<bool> => "vtpm",
        /// With `vtpm`: emulate a TPM 1.2 instead of a TPM 2.0 (`swtpm` without `--tpm2`). A warning without
        /// `vtpm`.
        ///
        /// Default: `false`
        pub use_tpm1: Option<bool> => "use_tpm1",
        /// With `vtpm`: the TPM device model: `tpm-tis` (x86), `tpm-crb` (x86, TPM 2.0 only: an error with
        /// `use_tpm1`), `tpm-tis-device` (ARM `virt`) or `tpm-spapr` (ppc64 pseries). Other values are
        /// errors; a warning without `vtpm`.
        ///
        /// Default: `tpm-tis`
        pub tpm_device_type: Option<String> => "tpm_device_type",
        /// `-vga <type>`: one of `std`, `cirrus`, `vmware`, `qxl`, `virtio`, `none` (also `xenfb`, `tcx`,
        /// `cg3` for machines that have them). Other values are errors with a "did you mean" suggestion.
        ///
        /// Default: the machine's default card
        pub vga: Option<String> => "vga",
        /// NIC model (`-device <model>,netdev=user.0`). One of `virtio-net`, `virtio-net-pci`, `e1000`,
        /// `e1000e`, `rtl8139`, `ne2k_pci`, `pcnet`, `vmxnet3`, `i82551`, `i82557b`, `i82559er`, `usb-net`. **Deviation:**
        /// validated (Packer passes anything).
        ///
        /// Default: `virtio-net`
        pub net_device: String => "net_device",
        /// Bridged networking: `-netdev bridge,id=user.0,br=<bridge>` through `qemu-bridge-helper` (the
        /// bridge must be allowed in `/etc/qemu/bridge.conf`; it must exist, be a bridge and have an IPv4
        /// address, checked when the build starts). There is no SSH port forward. `{{ .HTTPIP }}` is the
        /// bridge's first IPv4 address and, unless `http_bind_address` is set, the HTTP server listens there. **Deviation:**
        /// the NIC gets a random MAC (`52:54:00:…`) per build, so parallel builds on one bridge do not clash.
        /// Unless `ssh_host` is set, the guest's address is found as Packer does it: the NIC's MAC read over
        /// QMP, looked up in the host's ARP table (`/proc/net/arp`, complete entries on that bridge). **Deviation:**
        /// the table is checked every second (Packer: every 10 s), QEMU exiting ends the wait at once, and
        /// when the guest never shows up within `ssh_timeout` the build fails with an error that says so
        /// (Packer halts without a message). **Deviation:** SSH then connects to the guest's address on
        /// `ssh_port` (Packer always uses port 22).
        ///
        /// Default: unset
        pub net_bridge: Option<String> => "net_bridge",
        /// Bus of the installer CD and the `cd_files`/`cd_content` CD (`-drive …,if=<interface>`;
        /// `virtio-scsi`: a `scsi-cd` on the `virtio-scsi-pci` controller). **Deviation:** `scsi` on
        /// `pc`/`q35`/`virt`, where QEMU 7.2 refuses `if=scsi`, puts a `scsi-cd` on the `lsi53c895a`
        /// controller (shared with `scsi` disks, after their SCSI ids).
        ///
        /// Default: unset (no `if=`: the machine's default)
        pub cdrom_interface: Option<CdromInterface> => "cdrom_interface",
        /// `[["-switch", "value"…], …]`; parts after the switch are concatenated; `["-no-reboot", ""]` for a
        /// switch without value. A switch given here replaces all default values of that switch (Packer's
        /// semantics, including putting the NIC `-device` back when no user `-device` names `net_device`).
        /// Each entry must start with `-`. Rendered at run time (see [Values](#values)). **Deviation:** the
        /// final command line is deterministic and logged (Packer's order is random).
        ///
        /// Default: `[]`
        pub qemuargs: Vec<Vec<String>> => "qemuargs",
        /// **New.** Appended verbatim at the end of the QEMU command line; the recommended way to add
        /// devices.
        ///
        /// Default: `[]`
        pub qemu_extra_args: Vec<String> => "qemu_extra_args",
        /// **Deviation:** Packer defaults to `false` (a GTK window), which fails on hosts without a display.
        /// `true` passes `-display none` (Packer passes no `-display`; QEMU's VNC server is there either way
        /// unless `disable_vnc`); `false` shows a window (`display`).
        ///
        /// Default: **`true`**
        pub headless: bool = true => "headless",
        /// `-display` value when `headless = false`. **Deviation:** `"none"` is passed to QEMU as `-display
        /// none` (Packer leaves `-display` out for it).
        ///
        /// Default: `gtk` when not headless
        pub display: String => "display",
        /// With `headless = false` and `display` unset: pass no `-display` at all and let QEMU pick its
        /// default display (instead of `gtk`), as in Packer. No effect when headless.
        ///
        /// Default: `false`
        pub use_default_display: Option<bool> => "use_default_display",
        /// Address of QEMU's VNC server.
        ///
        /// Default: `127.0.0.1`
        pub vnc_bind_address: String => "vnc_bind_address",
        /// Lowest VNC port; at least 5900 (QEMU numbers displays from 5900).
        ///
        /// Default: `5900`
        pub vnc_port_min: u16 => "vnc_port_min",
        /// Highest VNC port; not below `vnc_port_min`.
        ///
        /// Default: `6000`
        pub vnc_port_max: u16 => "vnc_port_max",
        /// Protect QEMU's VNC server with a password (`-vnc …,password=on`; the password is set over QMP with
        /// `change-vnc-password` right after QEMU starts, before anything is typed). The VNC address and the
        /// password are shown in the build output (the UI), as in Packer, so a person can watch; they are
        /// never written to qemu-rs's log. A boot command typed over VNC authenticates with it. A warning
        /// with `disable_vnc`.
        ///
        /// Default: `false`
        pub vnc_use_password: Option<bool> => "vnc_use_password",
        /// The VNC password when `vnc_use_password` is set; at most 8 characters (a VNC limit), checked at
        /// validation without echoing it. Ignored (warning) without `vnc_use_password`, as in Packer. **Deviation:**
        /// the build's "VNC for debugging" line shows only a generated password; one you set appears in no
        /// output or log (Packer prints it).
        ///
        /// Default: 8 random characters (Packer's alphabet)
        pub vnc_password: Option<Secret> => "vnc_password",
        /// Accepted with a warning: qemu-rs always talks to QEMU over QMP (boot keys, shutdown, VNC
        /// password).
        pub qmp_enable: Option<bool> => "qmp_enable",
        /// The QMP socket (removed at the end).
        ///
        /// Default: `<output_directory>/<vm_name>.monitor`
        pub qmp_socket_path: String => "qmp_socket_path",
        /// Deprecated no-op (warning), as in Packer.
        pub run_once: Option<bool> => "run_once",
        /// **New.** The guest's serial console is written there.
        ///
        /// Default: `<output_directory>/serial.log`
        pub serial_log: String => "serial_log",

        // ---- boot command ----
        /// Keystrokes typed after `boot_wait`, joined with no separator; Packer's grammar (`<enter>`,
        /// `<waitN>`, `<leftCtrlOn>`…, and qemu-rs's `<waitForSerial>` token); rendered at run time (see
        /// [Values](#values)). Parse errors (e.g. `<wait0>`) are errors, and so is text Packer would type
        /// literally because it looks like a mistyped key (e.g. `<entr>`).
        ///
        /// Default: `[]`
        pub boot_command: Vec<String> => "boot_command",
        /// `[["<keys>", "description"], …]`; exclusive with `boot_command`. **Deviation:** every step is
        /// validated before the build starts (Packer finds a bad step only when it gets there).
        ///
        /// Default: `[]`
        pub boot_steps: Vec<Vec<String>> => "boot_steps",
        /// Wait before typing the boot command. `0`/unset = 10s; negative (e.g. `"-1s"`) = no wait.
        ///
        /// Internal: after `prepare` it is never negative.
        ///
        /// Default: `10s`
        pub boot_wait: Duration => "boot_wait",
        /// Pause after every key event, as in Packer (also `PACKER_KEY_INTERVAL`): blind typing at that
        /// interval. **Deviation (default):** when neither is set, qemu-rs types with flow control (see [How
        /// typing works](#how-typing-works)): it sends one whole key press and waits until the guest has read
        /// it from its keyboard; on an x86 BIOS guest it then sends the next press as soon as the BIOS
        /// keyboard buffer shows that the boot loader keeps up (at most 4 keys waiting), elsewhere it pauses
        /// 100 ms + 0.5 ms per character already typed on the line (at most 600 ms), because line editors
        /// such as GRUB read keys more slowly as the line grows. Typing into GRUB runs as fast as GRUB reads
        /// (about 11 characters/s under TCG on a 300-character line, against Packer's 4).
        ///
        /// Default: unset (adaptive)
        pub boot_key_interval: Duration => "boot_key_interval",
        /// Accepted and ignored (warning), as in Packer's qemu builder.
        pub boot_keygroup_interval: Option<Duration> => "boot_keygroup_interval",
        /// **New.** `qmp` injects keys with QMP `input-send-event` (no VNC connection, no keymap issues);
        /// `vnc` types them over VNC as Packer does (authenticating with `vnc_password` when set).
        ///
        /// Default: `qmp`
        pub boot_command_transport: BootTransport => "boot_command_transport",
        /// No VNC server and no boot command typing (for images that need no boot command). **Deviation:**
        /// qemu-rs leaves `-vnc` out of the command line entirely; Packer still starts a VNC server. A
        /// `boot_command` is then an error, as in Packer; `boot_steps` are skipped with a warning.
        ///
        /// Default: `false`
        pub disable_vnc: Option<bool> => "disable_vnc",

        // ---- HTTP, floppy, CD ----
        /// Served to the guest at `http://{{ .HTTPIP }}:{{ .HTTPPort }}/`. Must be a directory. A request
        /// cannot leave it: `..` (also percent-encoded, also with encoded slashes) is refused with 403, an
        /// absolute path is taken inside the directory. Symbolic links you put in it are followed, as by
        /// Packer's server; directories are not listed.
        pub http_directory: String => "http_directory",
        /// In-memory files (`"/path" = "content"`); keys start with `/`. Exclusive with `http_directory`. **New:**
        /// keys and values may use `{{ .Name }}` and `{{ .SSHPublicKey }}`, rendered when the build runs
        /// (e.g. a preseed or kickstart file that installs the build's temporary key).
        ///
        /// Default: `{}`
        pub http_content: BTreeMap<String, String> => "http_content",
        /// Lowest HTTP port; `min = max` pins the port.
        ///
        /// Default: `8000`
        pub http_port_min: u16 => "http_port_min",
        /// Highest HTTP port; not below `http_port_min`.
        ///
        /// Default: `9000`
        pub http_port_max: u16 => "http_port_max",
        /// **Deviation:** Packer binds `0.0.0.0`. The guest still reaches it as 10.0.2.2 (user-mode
        /// networking). With `net_bridge` and no `http_bind_address`, the server listens on the bridge's
        /// address, which is `{{ .HTTPIP }}`.
        ///
        /// Default: **`127.0.0.1`** (the bridge's IPv4 address with `net_bridge`)
        pub http_bind_address: String => "http_bind_address",
        /// `tcp`/`tcp4` accepted with a warning (qemu-rs always serves over IPv4 TCP); **Deviation:** `tcp6`,
        /// `unix` and `unixpacket` are rejected, since the guest could not reach them.
        ///
        /// Default: `tcp`
        pub http_network_protocol: Option<String> => "http_network_protocol",
        /// Ignored (warning), as in Packer's qemu builder (it never passes it to the server).
        pub http_interface: Option<String> => "http_interface",
        /// Files put in the root of a 1.44 MB FAT12 floppy image (long file names) attached as the guest's
        /// first floppy drive (`-fda`). Globs (`*`, `?`, `[…]`) are allowed; a matched directory adds every
        /// file below it to the root (flat), as in Packer. Paths without glob characters must exist and globs
        /// must be valid patterns (checked at validation); paths are relative to the directory Packer runs
        /// in. The image is made with GNU mtools (Debian package `mtools`) in a temporary file removed when
        /// the build ends. Typical use: `Autounattend.xml`, kickstart/preseed files, drivers.
        ///
        /// Default: `[]`
        pub floppy_files: Option<Vec<String>> => "floppy_files",
        /// Directories (globs allowed) copied onto the floppy with their tree, under their own name (`a/b`
        /// becomes `/b/…`).
        ///
        /// Default: `[]`
        pub floppy_dirs: Option<Vec<String>> => "floppy_dirs",
        /// Inline files on the floppy (`"path" = "content"`, sub-directories created); they win over
        /// `floppy_files`/`floppy_dirs` files of the same name. Keys must be valid FAT names (checked at
        /// validation).
        ///
        /// Default: `{}`
        pub floppy_content: Option<BTreeMap<String, String>> => "floppy_content",
        /// Volume label of the floppy (e.g. `OEMDRV` for anaconda, `cidata` for cloud-init): at most 11 ASCII
        /// characters without those FAT forbids; its first 8 are also the OEM name, as Packer writes them
        /// (Packer fails on labels longer than 8).
        ///
        /// Default: `packer`
        pub floppy_label: Option<String> => "floppy_label",
        /// Files/directories (globs allowed) put on an extra CD (built with `xorriso`). Paths without glob
        /// characters must exist.
        ///
        /// Default: `[]`
        pub cd_files: Vec<String> => "cd_files",
        /// Inline files on the extra CD (relative paths, no `..`); they win over `cd_files`. **New:** keys
        /// and values may use `{{ .Name }}` and `{{ .SSHPublicKey }}`, rendered when the build runs: a
        /// NoCloud seed (`cd_label = "cidata"`) can hand the build's temporary key to cloud-init
        /// (`ssh_authorized_keys: ["{{ .SSHPublicKey }}"]`), so no key file has to be kept next to the
        /// template. Packer's builder renders them at validation, where the key does not exist yet.
        ///
        /// Default: `{}`
        pub cd_content: BTreeMap<String, String> => "cd_content",
        /// Volume id of the extra CD; use `cidata` for cloud-init NoCloud. At most 32 characters.
        ///
        /// Default: `packer`
        pub cd_label: String => "cd_label",

        // ---- shutdown ----
        /// Run over SSH after provisioning. **Deviation:** when empty, qemu-rs asks the guest to power off
        /// with ACPI (QMP `system_powerdown`) instead of killing QEMU; it is killed only after
        /// `shutdown_timeout`. Not allowed with `communicator = "none"`.
        pub shutdown_command: String => "shutdown_command",
        /// Wait for QEMU to exit after the shutdown command (with `communicator = "none"`: for the guest to
        /// power itself off).
        ///
        /// Default: `5m`
        pub shutdown_timeout: Duration => "shutdown_timeout",

        // ---- communicator ----
        /// `none`: the guest must power itself off. `winrm` is rejected, see [WinRM](#winrm).
        ///
        /// Type: `ssh` | `none`
        ///
        /// Default: `ssh`
        pub communicator: CommunicatorType => "communicator",
        /// Lowest host port of the SSH port forward (`hostfwd`; a random free port of the range is taken,
        /// without races between parallel builds). **Deviation:** the forward is bound on 127.0.0.1 (Packer
        /// binds every address); on every address only when `ssh_host` names another host.
        ///
        /// Default: `2222`
        pub host_port_min: u16 => "host_port_min",
        /// Highest host port of the SSH port forward; not below `host_port_min`.
        ///
        /// Default: `4444`
        pub host_port_max: u16 => "host_port_max",
        /// Deprecated alias of `host_port_min` (warning).
        pub ssh_host_port_min: Option<u16> => "ssh_host_port_min",
        /// Deprecated alias of `host_port_max` (warning).
        pub ssh_host_port_max: Option<u16> => "ssh_host_port_max",
        /// No random host port for SSH: as the code of Packer's builder does, QEMU forwards host port
        /// `ssh_port` to the guest's `ssh_port` (unless `qemuargs` replaces `-netdev`, e.g. with a tap or
        /// bridge of your own), and SSH connects to `ssh_host` (default `127.0.0.1`) on `ssh_port`. When that
        /// host port is taken the build fails and says so. No effect (warning) with `net_bridge` or
        /// `communicator = "none"`.
        ///
        /// Default: `false`
        pub skip_nat_mapping: Option<bool> => "skip_nat_mapping",
        /// Required with `ssh`.
        pub ssh_username: String => "ssh_username",
        /// Password and keyboard-interactive authentication. Never logged.
        pub ssh_password: Secret => "ssh_password",
        /// `~/` is expanded; the file must be a readable, unencrypted private key (OpenSSH or PEM
        /// PKCS#1/PKCS#8; RSA, Ed25519 or ECDSA), checked at validation (a passphrase-protected key is
        /// refused: no one can type the passphrase during a build — load it into an ssh-agent and use
        /// `ssh_agent_auth`, or use a key without a passphrase). Its public key is `{{ .SSHPublicKey }}`;
        /// without it a temporary key pair is generated (also when a password is used).
        pub ssh_private_key_file: String => "ssh_private_key_file",
        /// Total wait for SSH (for ISO installs this covers the whole install). A warning is given when a
        /// `boot_command` is set and this is left at the default.
        ///
        /// Default: `5m`
        pub ssh_timeout: Duration => "ssh_timeout",
        /// Deprecated alias (warning); wins over `ssh_timeout`.
        pub ssh_wait_timeout: Option<Duration> => "ssh_wait_timeout",
        /// Authentication failures tolerated.
        ///
        /// Default: `10`
        pub ssh_handshake_attempts: u32 => "ssh_handshake_attempts",
        /// The guest's SSH port: the target of the port forward (with `skip_nat_mapping` also the host port
        /// connected to). **Deviation:** with `net_bridge`, SSH connects to the discovered guest address on
        /// `ssh_port`; Packer always uses 22 there.
        ///
        /// Default: `22`
        pub ssh_port: u16 => "ssh_port",
        /// Host to connect to. With `net_bridge`, setting it skips the address discovery.
        ///
        /// Default: `127.0.0.1` (with `net_bridge`: the guest address found on the bridge)
        pub ssh_host: String => "ssh_host",
        /// Request a PTY for every command.
        ///
        /// Default: `false`
        pub ssh_pty: bool => "ssh_pty",
        /// Keep-alive requests; negative disables.
        ///
        /// Default: `5s`
        pub ssh_keep_alive_interval: Duration => "ssh_keep_alive_interval",
        /// Per-command timeout.
        ///
        /// Default: `0` (none)
        pub ssh_read_write_timeout: Duration => "ssh_read_write_timeout",
        /// Upload mechanism.
        ///
        /// Default: `scp`
        pub ssh_file_transfer_method: FileTransferMethod => "ssh_file_transfer_method",
        /// **Deviation:** really removes the temporary key from the guest's `authorized_keys` after
        /// provisioning (a no-op in Packer's qemu builder).
        ///
        /// Default: `false`
        pub ssh_clear_authorized_keys: bool => "ssh_clear_authorized_keys",
        /// Algorithm of the generated key pair. **Deviation:** `dsa` is rejected with the reason: DSA
        /// (`ssh-dss`) keys are refused by OpenSSH since 7.0 and by current dropbear, so a temporary DSA key
        /// could not log in to a current guest.
        ///
        /// Type: `rsa` | `ecdsa` | `ed25519`
        ///
        /// Default: `rsa`
        pub temporary_key_pair_type: KeyPairType => "temporary_key_pair_type",
        /// rsa 2048–16384; ecdsa 256, 384 or 521; ignored for ed25519.
        ///
        /// Default: rsa `4096`, ecdsa `521`
        pub temporary_key_pair_bits: u32 => "temporary_key_pair_bits",
        /// Ignored (warning): a cloud-builder leftover without effect in Packer's qemu builder.
        pub temporary_key_pair_name: Option<String> => "temporary_key_pair_name",
        /// Ignored (warning): a cloud-builder leftover without effect in Packer's qemu builder.
        pub ssh_keypair_name: Option<String> => "ssh_keypair_name",
        /// After the first successful SSH connection, disconnect, wait this long and connect again, as in
        /// Packer (for guests that restart sshd or reboot once after first boot). The tunnels are opened on
        /// the second connection. Negative values are errors.
        ///
        /// Default: `0`
        pub pause_before_connecting: Option<Duration> => "pause_before_connecting",
        /// Log in with the keys (and certificates) of the running `ssh-agent` at `SSH_AUTH_SOCK`, tried
        /// first; then the private key (with its certificate), then `ssh_password` (password, then
        /// keyboard-interactive), Packer's order. A warning at validation when `SSH_AUTH_SOCK` is not set
        /// (the build then fails to connect).
        ///
        /// Default: `false`
        pub ssh_agent_auth: Option<bool> => "ssh_agent_auth",
        /// OpenSSH user certificate (`*-cert.pub`, as `ssh-keygen -s` writes it) presented with
        /// `ssh_private_key_file`, which it needs; validation checks that it certifies that key (`~/` is
        /// expanded).
        pub ssh_certificate_file: Option<String> => "ssh_certificate_file",
        /// Do not forward the local `ssh-agent` to the guest. Like Packer, qemu-rs otherwise forwards the
        /// agent named by `SSH_AUTH_SOCK`, when there is one, on every command's session, so provisioning
        /// scripts can use its keys (e.g. to clone private repositories).
        ///
        /// Default: `false`
        pub ssh_disable_agent_forwarding: Option<bool> => "ssh_disable_agent_forwarding",
        /// Ciphers to offer, most preferred first, by their OpenSSH names: `chacha20-poly1305@openssh.com`,
        /// `aes128-gcm@openssh.com`, `aes256-gcm@openssh.com`, `aes128-ctr`, `aes192-ctr`, `aes256-ctr`,
        /// `aes128-cbc`, `aes192-cbc`, `aes256-cbc`, `3des-cbc`; for old or hardened guests. **Deviation:**
        /// names are checked at validation (Packer hands them to Go's SSH library unchecked, so a typo shows
        /// as a failed handshake): unknown names are errors listing the supported ones, and the `arcfour`
        /// ciphers are refused with the reason (RC4 is broken and no maintained Rust SSH library implements
        /// it).
        ///
        /// Default: the SSH library's defaults
        pub ssh_ciphers: Option<Vec<String>> => "ssh_ciphers",
        /// Key exchanges to offer, most preferred first, by their OpenSSH names: `mlkem768x25519-sha256`,
        /// `curve25519-sha256`, `curve25519-sha256@libssh.org`, `ecdh-sha2-nistp256`, `ecdh-sha2-nistp384`,
        /// `ecdh-sha2-nistp521`, `diffie-hellman-group-exchange-sha256`,
        /// `diffie-hellman-group-exchange-sha1`, `diffie-hellman-group18-sha512`,
        /// `diffie-hellman-group17-sha512`, `diffie-hellman-group16-sha512`, `diffie-hellman-group15-sha512`,
        /// `diffie-hellman-group14-sha256`, `diffie-hellman-group14-sha1`, `diffie-hellman-group1-sha1`. **Deviation:**
        /// checked at validation like `ssh_ciphers`; `sntrup761x25519-sha512` (and `@openssh.com`) is refused
        /// with the reason (the SSH library qemu-rs uses does not implement it).
        ///
        /// Default: the SSH library's defaults
        pub ssh_key_exchange_algorithms: Option<Vec<String>> => "ssh_key_exchange_algorithms",
        /// `"PORT:HOST:HOSTPORT"` local forwards over the SSH connection (like `ssh -L`; an IPv6 HOST in
        /// brackets): the build host listens on `127.0.0.1:PORT`, connections go to `HOST:HOSTPORT` as seen
        /// from the guest. **Deviation:** bound on `127.0.0.1`, never on every address (Packer binds
        /// `localhost`). Checked at validation.
        ///
        /// Default: `[]`
        pub ssh_local_tunnels: Option<Vec<String>> => "ssh_local_tunnels",
        /// `"PORT:HOST:HOSTPORT"` remote forwards (like `ssh -R`): the guest listens on its `127.0.0.1:PORT`,
        /// connections lead to `HOST:HOSTPORT` as seen from the build host (e.g. a package cache). Checked at
        /// validation.
        ///
        /// Default: `[]`
        pub ssh_remote_tunnels: Option<Vec<String>> => "ssh_remote_tunnels",
        /// Jump host: qemu-rs logs in to it and opens the guest's SSH connection through it (a `direct-tcpip`
        /// channel to `ssh_host:port`). One bastion login is shared by all connection attempts and kept while
        /// the guest connection lives (a new login is made only when it closes or fails). One of
        /// `ssh_bastion_password`, `ssh_bastion_private_key_file` (or an inherited `ssh_private_key_file`),
        /// `ssh_bastion_agent_auth` or `ssh_bastion_interactive` is required. Bastion credentials are tried
        /// in Packer's order: interactive, password, private key, agent.
        pub ssh_bastion_host: Option<String> => "ssh_bastion_host",
        /// Port of the jump host.
        ///
        /// Default: `22`
        pub ssh_bastion_port: Option<u16> => "ssh_bastion_port",
        /// User on the jump host. **Deviation:** Packer leaves it empty when unset.
        ///
        /// Default: `ssh_username`
        pub ssh_bastion_username: Option<String> => "ssh_bastion_username",
        /// Password for the jump host (password, then keyboard-interactive). Never logged.
        pub ssh_bastion_password: Option<Secret> => "ssh_bastion_password",
        /// Private key for the jump host (`~/` expanded; must be a readable, unencrypted key, checked at
        /// validation).
        ///
        /// Default: `ssh_private_key_file` (with its `ssh_certificate_file`)
        pub ssh_bastion_private_key_file: Option<String> => "ssh_bastion_private_key_file",
        /// OpenSSH user certificate for `ssh_bastion_private_key_file` (needs it; validation checks that it
        /// certifies that key).
        pub ssh_bastion_certificate_file: Option<String> => "ssh_bastion_certificate_file",
        /// Log in to the jump host with the keys of the `ssh-agent` at `SSH_AUTH_SOCK` (a warning at
        /// validation when it is not set).
        ///
        /// Default: `false`
        pub ssh_bastion_agent_auth: Option<bool> => "ssh_bastion_agent_auth",
        /// Answer the jump host's keyboard-interactive prompts at the terminal (`/dev/tty`).
        ///
        /// Default: `false`
        pub ssh_bastion_interactive: Option<bool> => "ssh_bastion_interactive",
        /// SOCKS5 proxy the SSH connection goes through. Not with `ssh_bastion_host` (an error).
        pub ssh_proxy_host: Option<String> => "ssh_proxy_host",
        /// Port of the SOCKS5 proxy.
        ///
        /// Default: `1080`
        pub ssh_proxy_port: Option<u16> => "ssh_proxy_port",
        /// SOCKS5 user name: username/password authentication is offered when it is set, as in Packer. With
        /// `ssh_proxy_password`, needs `ssh_proxy_host` (an error otherwise).
        pub ssh_proxy_username: Option<String> => "ssh_proxy_username",
        /// SOCKS5 password. Never logged.
        pub ssh_proxy_password: Option<Secret> => "ssh_proxy_password",
        /// Packer-internal plumbing (the communicator's key material), not for templates; ignored.
        ///
        /// Type: —
        pub ssh_public_key: Option<Vec<u8>> => "ssh_public_key",
        /// Packer-internal plumbing, not for templates; ignored.
        ///
        /// Type: —
        pub ssh_private_key: Option<Vec<u8>> => "ssh_private_key",
        /// Rejected: WinRM is not supported by qemu-rs; use `ssh_username` with an OpenSSH server in the
        /// guest.
        pub winrm_username: Option<String> => "winrm_username",
        /// Rejected: WinRM is not supported by qemu-rs; use `ssh_password`.
        pub winrm_password: Option<Secret> => "winrm_password",
        /// Rejected: WinRM is not supported by qemu-rs; use `ssh_host`.
        pub winrm_host: Option<String> => "winrm_host",
        /// Rejected: WinRM is not supported by qemu-rs; use `ssh_port`.
        pub winrm_port: Option<u16> => "winrm_port",
        /// Rejected: WinRM is not supported by qemu-rs; use `ssh_timeout`.
        pub winrm_timeout: Option<Duration> => "winrm_timeout",
        /// Rejected: WinRM is not supported by qemu-rs.
        pub winrm_use_ssl: Option<bool> => "winrm_use_ssl",
        /// Rejected: WinRM is not supported by qemu-rs.
        pub winrm_insecure: Option<bool> => "winrm_insecure",
        /// Rejected: WinRM is not supported by qemu-rs.
        pub winrm_use_ntlm: Option<bool> => "winrm_use_ntlm",
        /// Rejected: WinRM is not supported by qemu-rs.
        pub winrm_no_proxy: Option<bool> => "winrm_no_proxy",

        // ---- warm start ----
        /// **New.** Warm start: the first build saves the machine the moment SSH first answers,
        /// before any provisioner runs (QEMU's migration stream of RAM and devices, plus copies of
        /// the disks and UEFI variables taken while the machine is paused) as an entry of the
        /// warm-start cache `<PACKER_CACHE_DIR>/qemu-rs-warm`. A later build whose inputs up to that
        /// moment are the same restores it and goes on at provisioning: no boot wait, no boot
        /// command, no install, no boot. What the key covers, what it does not, and the security
        /// of the cache: see [Warm start](#warm-start). `packer build -force` builds cold and
        /// replaces the entry. Needs `communicator = "ssh"`; not with `net_bridge` or `vtpm` (errors
        /// at validation).
        ///
        /// Default: `false`
        pub warm_start: bool => "warm_start",
        /// **New.** The most the warm-start cache may hold: the allocated bytes of every entry (a
        /// bare number is MiB). After a build saves an entry, least recently used entries are
        /// removed until the cache fits; never the new one, and never one another build is
        /// restoring from.
        ///
        /// Default: `20G`
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

/// The tables of the option reference (`docs/builders/qemu-rs.mdx`), in page order: each
/// option of [`Config`] is in exactly one (`tests/tests/docs_options.rs` checks it). A new option
/// goes into the table where users will look for it; the rows come from the field's doc comment
/// (see [`packer_sdk::config::docs`]).
pub const DOC_SECTIONS: &[DocSection] = &[
    DocSection {
        name: "Source media",
        options: &["iso_url", "iso_urls", "iso_checksum", "iso_target_path", "iso_target_extension", "iso_skip_cache"],
    },
    DocSection {
        name: "Disks and output",
        options: &[
            "output_directory",
            "vm_name",
            "format",
            "disk_size",
            "disk_image",
            "use_backing_file",
            "skip_resize_disk",
            "disk_interface",
            "disk_cache",
            "disk_discard",
            "disk_detect_zeroes",
            "skip_compaction",
            "disk_compression",
            "disk_additional_size",
            "qemu_img_args",
            "output_checksum",
        ],
    },
    DocSection {
        name: "Machine",
        options: &[
            "arch",
            "qemu_binary",
            "accelerator",
            "machine_type",
            "memory",
            "cpus",
            "sockets",
            "cores",
            "threads",
            "cpu_model",
            "net_device",
            "net_bridge",
            "cdrom_interface",
            "qemuargs",
            "qemu_extra_args",
            "serial_log",
        ],
    },
    DocSection {
        name: "Firmware and TPM",
        options: &[
            "efi_boot",
            "efi_firmware_code",
            "efi_firmware_vars",
            "efi_drop_efivars",
            "secure_boot",
            "firmware",
            "use_pflash",
            "vtpm",
            "use_tpm1",
            "tpm_device_type",
        ],
    },
    DocSection {
        name: "Display, VNC and QMP",
        options: &[
            "headless",
            "display",
            "use_default_display",
            "vga",
            "vnc_bind_address",
            "vnc_port_min",
            "vnc_port_max",
            "vnc_use_password",
            "vnc_password",
            "qmp_enable",
            "qmp_socket_path",
            "run_once",
        ],
    },
    DocSection {
        name: "Boot command",
        options: &[
            "boot_command",
            "boot_steps",
            "boot_wait",
            "boot_key_interval",
            "boot_keygroup_interval",
            "boot_command_transport",
            "disable_vnc",
        ],
    },
    DocSection {
        name: "HTTP server",
        options: &[
            "http_directory",
            "http_content",
            "http_port_min",
            "http_port_max",
            "http_bind_address",
            "http_interface",
            "http_network_protocol",
        ],
    },
    DocSection {
        name: "Floppy and CD",
        options: &[
            "floppy_files",
            "floppy_dirs",
            "floppy_content",
            "floppy_label",
            "cd_files",
            "cd_content",
            "cd_label",
        ],
    },
    DocSection { name: "Shutdown", options: &["shutdown_command", "shutdown_timeout"] },
    DocSection {
        name: "Communicator (SSH)",
        options: &[
            "communicator",
            "host_port_min",
            "host_port_max",
            "ssh_host_port_min",
            "ssh_host_port_max",
            "skip_nat_mapping",
            "pause_before_connecting",
            "ssh_username",
            "ssh_password",
            "ssh_private_key_file",
            "ssh_certificate_file",
            "ssh_agent_auth",
            "ssh_disable_agent_forwarding",
            "ssh_timeout",
            "ssh_wait_timeout",
            "ssh_handshake_attempts",
            "ssh_port",
            "ssh_host",
            "ssh_pty",
            "ssh_keep_alive_interval",
            "ssh_read_write_timeout",
            "ssh_file_transfer_method",
            "ssh_ciphers",
            "ssh_key_exchange_algorithms",
            "ssh_local_tunnels",
            "ssh_remote_tunnels",
            "ssh_clear_authorized_keys",
            "temporary_key_pair_type",
            "temporary_key_pair_bits",
            "temporary_key_pair_name",
            "ssh_keypair_name",
            "ssh_public_key",
            "ssh_private_key",
        ],
    },
    DocSection {
        name: "Bastion (jump host) and SOCKS proxy",
        options: &[
            "ssh_bastion_host",
            "ssh_bastion_port",
            "ssh_bastion_username",
            "ssh_bastion_password",
            "ssh_bastion_private_key_file",
            "ssh_bastion_certificate_file",
            "ssh_bastion_agent_auth",
            "ssh_bastion_interactive",
            "ssh_proxy_host",
            "ssh_proxy_port",
            "ssh_proxy_username",
            "ssh_proxy_password",
        ],
    },
    DocSection { name: "Warm start", options: &["warm_start", "warm_start_cache_size"] },
    DocSection {
        name: "WinRM",
        options: &[
            "winrm_username",
            "winrm_password",
            "winrm_host",
            "winrm_port",
            "winrm_timeout",
            "winrm_use_ssl",
            "winrm_insecure",
            "winrm_use_ntlm",
            "winrm_no_proxy",
        ],
    },
];

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
