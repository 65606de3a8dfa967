//! Defaults and validation of [`Config`] (the second half of `Prepare`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use packer_sdk::bootcommand;
use packer_sdk::communicator::ssh::{algorithms, keys, Tunnel, TunnelDirection};
use packer_sdk::config::template::Template;
use packer_sdk::config::{ConfigErrors, Duration, PackerCommon};

use crate::driver::qemu_img::parse_size as parse_qemu_img_size;

use super::{
    Arch, CommunicatorType, Config, DiskFormat, DiskInterface, Env, KeyPairType, BOOT_COMMAND_VARIABLES,
    CONTENT_VARIABLES, DEFAULT_DISK_SIZE, NET_DEVICES, QEMU_ARGS_VARIABLES,
};

/// Applies defaults to `c` and records every problem in `errors` and every warning in `warnings`.
pub(super) fn run(
    c: &mut Config,
    common: &PackerCommon,
    env: &Env<'_>,
    errors: &mut ConfigErrors,
    warnings: &mut Vec<String>,
) {
    unsupported(c, errors, warnings);
    deprecated(c, errors, warnings);
    source_media(c, errors, warnings);
    disks_and_output(c, common, errors, warnings);
    machine(c, errors, warnings);
    boot(c, env, errors, warnings);
    http_and_cd(c, errors);
    devices::run(c, errors, warnings);
    communicator(c, env, errors, warnings);
    qemu_args(c, errors);
    warm_start(c, errors);
}

mod devices;

/// Why WinRM options are rejected, and what to use instead.
const WINRM_UNSUPPORTED: &str = "qemu-rs has no WinRM communicator, because no Windows guest can be run to test one \
     on the machines qemu-rs is developed on; use communicator = \"ssh\" (Windows ships an OpenSSH server) or \
     \"none\"";

/// WinRM options are rejected (qemu-rs has no WinRM communicator); options that have no effect
/// with this builder are accepted with a warning, as Packer's builder accepts them.
fn unsupported(c: &Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    let set_str = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let set_true = |v: &Option<bool>| *v == Some(true);
    let winrm: Vec<(&str, bool)> = vec![
        ("winrm_username", set_str(&c.winrm_username)),
        ("winrm_password", c.winrm_password.as_ref().is_some_and(|p| !p.is_empty())),
        ("winrm_host", set_str(&c.winrm_host)),
        ("winrm_port", c.winrm_port.is_some_and(|p| p != 0)),
        ("winrm_timeout", c.winrm_timeout.is_some_and(|d| !d.is_zero())),
        ("winrm_use_ssl", set_true(&c.winrm_use_ssl)),
        ("winrm_insecure", set_true(&c.winrm_insecure)),
        ("winrm_use_ntlm", set_true(&c.winrm_use_ntlm)),
        ("winrm_no_proxy", set_true(&c.winrm_no_proxy)),
    ];
    for (option, set) in winrm {
        if set {
            errors.push(option, format!("{option} is not supported: {WINRM_UNSUPPORTED}"));
        }
    }
    for (option, set) in [
        ("temporary_key_pair_name", set_str(&c.temporary_key_pair_name)),
        ("ssh_keypair_name", set_str(&c.ssh_keypair_name)),
        ("http_interface", set_str(&c.http_interface)),
    ] {
        if set {
            warnings.push(format!("{option} has no effect with the qemu-rs builder and is ignored; remove it"));
        }
    }
    if let Some(proto) = c.http_network_protocol.as_deref().filter(|p| !p.is_empty()) {
        match proto {
            "tcp" | "tcp4" => warnings
                .push("http_network_protocol is ignored: qemu-rs always serves HTTP over TCP/IPv4; remove it".into()),
            other => errors.push(
                "http_network_protocol",
                format!(
                    "{other:?} is not supported: the guest reaches the HTTP server over IPv4 TCP; remove the option"
                ),
            ),
        }
    }
}

fn deprecated(c: &mut Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    if c.run_once.is_some() {
        warnings.push("run_once is deprecated and has no effect; remove it".into());
    }
    if c.boot_keygroup_interval.is_some() {
        warnings.push(
            "boot_keygroup_interval has no effect with the qemu-rs builder (as with Packer's qemu builder); use \
             boot_key_interval instead"
                .into(),
        );
    }
    if c.qmp_enable.is_some() {
        warnings.push(
            "qmp_enable is not needed: qemu-rs always talks to QEMU over QMP (socket at qmp_socket_path); remove it"
                .into(),
        );
    }
    if let Some(t) = c.ssh_wait_timeout {
        warnings.push("ssh_wait_timeout is deprecated; use ssh_timeout instead (ssh_wait_timeout wins for now)".into());
        if t.is_negative() {
            errors.push("ssh_wait_timeout", "must not be negative; use ssh_timeout instead, e.g. \"20m\"");
        } else {
            c.ssh_timeout = t;
        }
    }
    if let Some(p) = c.ssh_host_port_min {
        warnings.push("ssh_host_port_min is deprecated; use host_port_min instead".into());
        if c.host_port_min == 0 {
            c.host_port_min = p;
        }
    }
    if let Some(p) = c.ssh_host_port_max {
        warnings.push("ssh_host_port_max is deprecated; use host_port_max instead".into());
        if c.host_port_max == 0 {
            c.host_port_max = p;
        }
    }
}

/// Checks the `iso_checksum` grammar (a `file:` source is fetched by the download step).
pub(super) fn check_checksum(sum: &str) -> Result<(), String> {
    let fix = "write \"sha256:<hex>\" (or md5/sha1/sha512), a bare hex digest, \"file:<url-or-path>\" or \"none\"";
    if sum.is_empty() {
        return Err(format!("a checksum must be specified; {fix}"));
    }
    if sum.eq_ignore_ascii_case("none") {
        return Ok(());
    }
    if let Some(src) = sum.strip_prefix("file:") {
        return if src.trim().is_empty() {
            Err(format!("\"file:\" needs a URL or path after it; {fix}"))
        } else {
            Ok(())
        };
    }
    if sum.to_ascii_lowercase().ends_with(".iso") {
        return Err(format!("{sum:?} looks like an ISO file name, not a checksum; {fix}"));
    }
    let (algo, hex) = match sum.split_once(':') {
        Some((a, h)) => (Some(a.to_ascii_lowercase()), h),
        None => (None, sum),
    };
    if !hex.chars().all(|ch| ch.is_ascii_hexdigit()) || hex.is_empty() {
        return Err(format!("{sum:?} is not a hexadecimal digest; {fix}"));
    }
    let want = match algo.as_deref() {
        None => match hex.len() {
            32 | 40 | 64 | 128 => return Ok(()),
            n => {
                return Err(format!(
                "a bare digest of {n} hex digits matches no algorithm (md5 32, sha1 40, sha256 64, sha512 128); {fix}"
            ))
            }
        },
        Some("md5") => 32,
        Some("sha1") => 40,
        Some("sha256") => 64,
        Some("sha512") => 128,
        Some(other) => return Err(format!("unknown checksum algorithm {other:?}; use md5, sha1, sha256 or sha512")),
    };
    if hex.len() != want {
        return Err(format!("a {} digest has {want} hex digits, this one has {}", algo.unwrap_or_default(), hex.len()));
    }
    Ok(())
}

fn source_media(c: &mut Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    match (c.iso_url.is_empty(), c.iso_urls.is_empty()) {
        (true, true) => errors.push(
            "iso_url",
            "one of iso_url or iso_urls must be set to the installer ISO or (with disk_image = true) the base disk image",
        ),
        (false, false) => errors.push("iso_url", "iso_url and iso_urls cannot both be set; keep only one of them"),
        (false, true) => c.iso_urls = vec![c.iso_url.clone()],
        (true, false) => c.iso_url = c.iso_urls[0].clone(),
    }
    if c.iso_urls.iter().any(|u| u.trim().is_empty()) {
        errors.push("iso_urls", "contains an empty URL; remove it");
    }
    if c.iso_skip_cache == Some(true) {
        for u in c.iso_urls.iter().filter(|u| !u.trim().is_empty()) {
            let lower = u.to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                errors.push(
                    "iso_skip_cache",
                    format!(
                        "{u:?} is not an http:// or https:// URL: with iso_skip_cache QEMU reads the media over \
                         HTTP itself; remove iso_skip_cache to use a local file"
                    ),
                );
            }
        }
        let given = c.iso_checksum.trim();
        if !given.is_empty() && !given.eq_ignore_ascii_case("none") {
            warnings.push(
                "iso_checksum is not verified with iso_skip_cache = true (QEMU reads the media over HTTP, \
                 nothing is downloaded to check); it is treated as \"none\""
                    .into(),
            );
        }
        c.iso_checksum = "none".to_string();
    }
    if let Some(ext) = c.iso_target_extension.as_mut() {
        let e = ext.trim().trim_start_matches('.').to_ascii_lowercase();
        if e.contains('/') || e.contains('\\') {
            errors.push(
                "iso_target_extension",
                format!("{ext:?} must be a file extension such as \"iso\" or \"qcow2\", without '/'"),
            );
        }
        *ext = e;
    }
    if let Some(target) = c.iso_target_path.as_deref().filter(|t| !t.trim().is_empty()) {
        let p = Path::new(target);
        if let Some(file) = file_ancestor(p) {
            errors.push(
                "iso_target_path",
                format!("{target:?} is below {file:?}, which is a file, not a directory; fix the path"),
            );
        } else if p.extension().is_none() && p.is_file() {
            errors.push(
                "iso_target_path",
                format!(
                    "{target:?} has no extension, so it names a directory for the download, but it is a file; \
                     give a file path with an extension (e.g. \"cache/debian.iso\") or a directory"
                ),
            );
        } else if p.extension().is_some() && p.is_dir() {
            errors.push(
                "iso_target_path",
                format!(
                    "{target:?} has an extension, so it names the downloaded file, but it is a directory; \
                     remove the extension to download into it, or name a file"
                ),
            );
        }
    }
    match check_checksum(c.iso_checksum.trim()) {
        Ok(()) if c.iso_checksum.trim().eq_ignore_ascii_case("none") => warnings.push(
            "A checksum of 'none' was specified. Since ISO/image files are so big, a checksum is highly recommended."
                .into(),
        ),
        Ok(()) => {
            c.iso_checksum = c.iso_checksum.trim().to_string();
            local_checksum_file(&c.iso_checksum, errors);
        }
        Err(e) => errors.push("iso_checksum", e),
    }
}

/// A `file:` checksum naming a local file (a path or a `file://` URL) must exist: Packer fetches
/// the checksum file at Prepare too, so a missing one fails `packer validate` there as well.
fn local_checksum_file(sum: &str, errors: &mut ConfigErrors) {
    let Some(src) = sum.strip_prefix("file:") else { return };
    let path = match src.strip_prefix("file://") {
        Some(p) => p,
        None if src.contains("://") => return,
        None => src,
    };
    // a percent-encoded file:// path is decoded by the download; leave it to the build
    if path.contains('%') || Path::new(path).is_file() {
        return;
    }
    let what = if Path::new(path).is_dir() { "is a directory" } else { "does not exist" };
    errors.push(
        "iso_checksum",
        format!(
            "the checksum file {path:?} {what}; fix the path (relative paths start in the directory packer runs \
             in), or give the digest itself (\"sha256:<hex>\")"
        ),
    );
}

fn disks_and_output(c: &mut Config, common: &PackerCommon, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    let build_name = if common.build_name.is_empty() { "qemu-rs".to_string() } else { common.build_name.clone() };
    if c.vm_name.is_empty() {
        c.vm_name = format!("packer-{build_name}");
    } else if c.vm_name.contains('/') || c.vm_name == "." || c.vm_name == ".." {
        errors.push("vm_name", format!("{:?} must be a plain file name, without '/'", c.vm_name));
    }
    if c.output_directory.is_empty() {
        c.output_directory = format!("output-{build_name}");
    }
    let out = Path::new(&c.output_directory);
    if out.is_file() {
        errors.push(
            "output_directory",
            format!(
                "{:?} is a file, not a directory (not even -force replaces it); remove the file or choose another \
                 output_directory",
                c.output_directory
            ),
        );
    } else if let Some(file) = file_ancestor(out) {
        errors.push(
            "output_directory",
            format!(
                "{:?} is below {file:?}, which is a file, not a directory; choose another output_directory",
                c.output_directory
            ),
        );
    } else if out.exists() && !common.force {
        errors.push(
            "output_directory",
            format!(
                "{:?} already exists; remove it, choose another output_directory, or run packer build with -force",
                c.output_directory
            ),
        );
    }
    if c.disk_size.is_zero() {
        c.disk_size = DEFAULT_DISK_SIZE;
    }
    if c.format == DiskFormat::Raw {
        if c.disk_compression {
            warnings.push("disk_compression has no effect with format = \"raw\" and is ignored".into());
        }
        c.skip_compaction = true;
        c.disk_compression = false;
    }
    if c.use_backing_file {
        if !c.disk_image || c.format != DiskFormat::Qcow2 {
            errors.push(
                "use_backing_file",
                "use_backing_file needs disk_image = true and format = \"qcow2\"; set both or remove use_backing_file",
            );
        }
        c.skip_compaction = true;
    }
    if c.skip_resize_disk && !c.disk_image {
        errors.push(
            "skip_resize_disk",
            "skip_resize_disk only makes sense with disk_image = true; remove it or set disk_image",
        );
    }
    additional_disks(c, errors);
    for (option, path) in [("qmp_socket_path", &c.qmp_socket_path), ("serial_log", &c.serial_log)] {
        if let Some(file) = file_ancestor(Path::new(path)) {
            errors.push(option, format!("{path:?} is below {file:?}, which is a file, not a directory; fix the path"));
        }
    }
    if c.qmp_socket_path.is_empty() {
        c.qmp_socket_path = path_in(&c.output_directory, &format!("{}.monitor", c.vm_name));
    }
    if c.serial_log.is_empty() {
        c.serial_log = path_in(&c.output_directory, "serial.log");
    }
}

/// `disk_additional_size`: qemu-img sizes; SD cards need power-of-2 sizes.
fn additional_disks(c: &Config, errors: &mut ConfigErrors) {
    let mut sizes = Vec::new();
    for (i, s) in c.disk_additional_size.iter().flatten().enumerate() {
        match parse_qemu_img_size(s) {
            Ok(0) => errors.push(
                format!("disk_additional_size[{i}]"),
                format!("{s:?} is an empty disk; give a size such as \"10G\" or remove the entry"),
            ),
            Ok(b) => sizes.push((format!("disk_additional_size[{i}]"), s.clone(), b)),
            Err(e) => errors.push(format!("disk_additional_size[{i}]"), e),
        }
    }
    if c.disk_interface == DiskInterface::Sd {
        if !(c.disk_image && c.skip_resize_disk) {
            sizes.insert(0, ("disk_size".to_string(), c.disk_size.to_string(), c.disk_size.bytes()));
        }
        for (option, text, bytes) in sizes {
            if !bytes.is_power_of_two() {
                errors.push(
                    option,
                    format!(
                        "{text} is not a power of 2, which QEMU requires of SD cards (disk_interface = \"sd\"); \
                         use e.g. \"{}M\"",
                        bytes.next_power_of_two().div_ceil(1 << 20)
                    ),
                );
            }
        }
    }
}

/// The first proper ancestor of `p` that is an existing non-directory (so `p` can never be
/// created), if any.
fn file_ancestor(p: &Path) -> Option<&Path> {
    p.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()).find(|a| a.exists() && !a.is_dir())
}

fn path_in(dir: &str, file: &str) -> String {
    Path::new(dir).join(file).to_string_lossy().into_owned()
}

fn machine(c: &mut Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    // A template written for Packer's builder names the aarch64 binary without `arch`.
    if c.arch == Arch::X86_64
        && Path::new(&c.qemu_binary).file_name().is_some_and(|n| n.to_string_lossy().contains("aarch64"))
    {
        c.arch = Arch::Aarch64;
    }
    if c.qemu_binary.is_empty() {
        c.qemu_binary = match c.arch {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
        .to_string();
    }
    if c.secure_boot {
        if c.arch != Arch::X86_64 {
            errors.push("secure_boot", "secure_boot is only supported with arch = \"x86_64\" for now; remove it");
        }
        if !c.machine_type.is_empty() && !c.machine_type.starts_with("q35") && !c.machine_type.contains("-q35") {
            errors.push(
                "machine_type",
                format!(
                    "secure_boot needs a q35 machine, not {:?}; remove machine_type or set it to \"q35\"",
                    c.machine_type
                ),
            );
        }
    }
    if c.machine_type.is_empty() {
        c.machine_type = match (c.arch, c.secure_boot) {
            (Arch::Aarch64, _) => "virt",
            (Arch::X86_64, true) => "q35",
            (Arch::X86_64, false) => "pc",
        }
        .to_string();
    }
    let firmware = c.firmware.as_deref().filter(|f| !f.trim().is_empty()).map(str::to_string);
    let explicit_efi =
        c.efi_boot || !c.efi_firmware_code.is_empty() || !c.efi_firmware_vars.is_empty() || c.secure_boot;
    // aarch64 boots UEFI unless the template brings its own firmware (`firmware`, or a `-bios`/
    // `-pflash` of its own in qemuargs, which would clash with the UEFI pflash drives).
    let own_firmware =
        firmware.is_some() || c.qemuargs.iter().any(|a| a.first().is_some_and(|s| s == "-bios" || s == "-pflash"));
    if explicit_efi || (c.arch == Arch::Aarch64 && !own_firmware) {
        c.efi_boot = true;
    }
    firmware_options(c, firmware, explicit_efi, errors, warnings);
    // QEMU's default CPU of `virt` is a 32-bit Cortex-A15, which cannot run 64-bit firmware or
    // kernels: aarch64 builds get `max` (all features under TCG, the host CPU under KVM).
    if c.arch == Arch::Aarch64 && c.cpu_model.is_empty() {
        c.cpu_model = "max".to_string();
    }
    smp(c, errors, warnings);
    if let Some(vga) = c.vga.as_mut() {
        let v = vga.trim().to_string();
        if !v.is_empty() && !VGA_TYPES.contains(&v.as_str()) {
            errors.push("vga", packer_sdk::config::unknown_value_message(&v, VGA_TYPES));
        }
        *vga = v;
    }
    for (option, path) in [("efi_firmware_code", &c.efi_firmware_code), ("efi_firmware_vars", &c.efi_firmware_vars)] {
        if !path.is_empty() && !Path::new(path).is_file() {
            errors.push(option, format!("{path:?} is not a readable file; install the UEFI firmware (e.g. the ovmf package) or fix the path"));
        }
    }
    if c.efi_drop_efivars && !c.efi_boot {
        warnings.push("efi_drop_efivars has no effect without UEFI boot (efi_boot)".into());
    }
    match c.memory {
        0 => c.memory = 512,
        m if m < 10 => errors.push("memory", format!("{m} MiB is too little memory; memory is in MiB, e.g. 1024")),
        _ => {}
    }
    if c.net_device.is_empty() {
        c.net_device = "virtio-net".to_string();
    } else if !NET_DEVICES.contains(&c.net_device.as_str()) {
        errors.push("net_device", packer_sdk::config::unknown_value_message(&c.net_device, NET_DEVICES));
    }
    if c.vnc_bind_address.is_empty() {
        c.vnc_bind_address = "127.0.0.1".to_string();
    }
    if c.vnc_port_min == 0 {
        c.vnc_port_min = 5900;
    }
    if c.vnc_port_max == 0 {
        c.vnc_port_max = 6000;
    }
    if c.vnc_port_min < 5900 {
        errors.push(
            "vnc_port_min",
            format!("{} is below 5900 (QEMU numbers VNC displays from port 5900); use 5900 or more", c.vnc_port_min),
        );
    }
    port_range("vnc_port_min", "vnc_port_max", c.vnc_port_min, c.vnc_port_max, errors);
}

/// QEMU's `-vga` types (`qemu-system-x86_64 -vga help`, plus the SPARC/Xen ones).
const VGA_TYPES: &[&str] = &["std", "cirrus", "vmware", "qxl", "virtio", "none", "xenfb", "tcx", "cg3"];

/// `firmware` and `use_pflash`, and how they meet UEFI.
fn firmware_options(
    c: &mut Config,
    firmware: Option<String>,
    explicit_efi: bool,
    errors: &mut ConfigErrors,
    warnings: &mut Vec<String>,
) {
    let pflash = c.use_pflash == Some(true);
    let Some(fw) = firmware else {
        c.firmware = None;
        if pflash {
            warnings.push("use_pflash has no effect without firmware; set firmware to the image to load".into());
        }
        return;
    };
    if !Path::new(&fw).is_file() {
        errors.push(
            "firmware",
            format!("{fw:?} is not a readable file; install the firmware (e.g. the ovmf or seabios package) or fix the path"),
        );
    }
    if explicit_efi {
        if pflash {
            errors.push(
                "use_pflash",
                "firmware with use_pflash = true cannot be combined with UEFI boot (efi_boot, efi_firmware_code, \
                 efi_firmware_vars or secure_boot): both would be the first pflash drive; for UEFI with a variable \
                 store keep the efi_* options and remove firmware, else remove the efi_* options",
            );
        } else {
            warnings.push(format!(
                "firmware {fw:?} is ignored: with UEFI boot (efi_boot, efi_firmware_*, secure_boot) QEMU boots the \
                 UEFI code from pflash; remove firmware, or remove the efi_* options to boot it with -bios"
            ));
            c.firmware = None;
            return;
        }
    }
    c.firmware = Some(fw);
}

/// Packer's SMP rules: the topology's product bounds `cpus` (see the `sockets` docs).
fn smp(c: &mut Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    for v in [&mut c.sockets, &mut c.cores, &mut c.threads] {
        if *v == Some(0) {
            *v = None; // 0 is Packer's "unset"
        }
    }
    let given: Vec<u32> = [c.sockets, c.cores, c.threads].into_iter().flatten().collect();
    if given.is_empty() {
        if c.cpus == 0 {
            c.cpus = 1;
        }
        return;
    }
    let product = given.iter().try_fold(1u32, |acc, n| acc.checked_mul(*n));
    let Some(product) = product.filter(|p| *p <= 4096) else {
        errors.push(
            "sockets",
            "sockets × cores × threads is larger than any QEMU machine allows (4096 vCPUs); lower them",
        );
        return;
    };
    if c.cpus == 0 {
        c.cpus = product;
    } else if c.cpus > product {
        warnings.push(format!(
            "cpus = {} is more than the topology (sockets × cores × threads) allows: using {product} vCPUs",
            c.cpus
        ));
        c.cpus = product;
    } else if c.cpus < product {
        warnings.push(format!(
            "cpus = {} is lower than the topology (sockets × cores × threads = {product}): the other vCPUs stay \
             offline (QEMU's maxcpus={product}), which can hurt performance",
            c.cpus
        ));
    }
}

fn port_range(min_name: &str, max_name: &str, min: u16, max: u16, errors: &mut ConfigErrors) {
    if min > max {
        errors.push(
            min_name,
            format!("{min_name} ({min}) must not be greater than {max_name} ({max}); swap or fix them"),
        );
    }
}

/// Renders a boot command template with example values so the key grammar can be checked.
fn render_example(t: &Template, vm_name: &str) -> Option<String> {
    let data = BTreeMap::from([
        ("HTTPIP", "10.0.2.2".to_string()),
        ("HTTPPort", "8000".to_string()),
        ("Name", vm_name.to_string()),
        ("SSHPublicKey", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample packer\n".to_string()),
    ]);
    t.render(&data).ok()
}

/// Checks one boot command: its template variables, then its key grammar. Packer's own parse
/// errors and qemu-rs lint findings (an unknown `<token>` that Packer would type literally,
/// almost always a typo) are all errors; the message says how to type a literal `<`.
fn check_boot_command(
    option: &str,
    command: &str,
    vm_name: &str,
    errors: &mut ConfigErrors,
    warnings: &mut Vec<String>,
) {
    let template = match Template::parse(command) {
        Ok(t) => t,
        Err(e) => {
            errors.push(option, format!("{e}"));
            return;
        }
    };
    if let Err(e) = template.check_variables(BOOT_COMMAND_VARIABLES) {
        errors.push(option, e.to_string());
        return;
    }
    let Some(rendered) = render_example(&template, vm_name) else { return };
    let _ = warnings;
    // qemu-rs's <waitForSerial "text" TIMEOUT> tokens, then Packer's grammar around them
    for problem in bootcommand::wait_for::errors(&rendered) {
        errors.push(option, problem.to_string());
    }
    for problem in bootcommand::validate(&bootcommand::wait_for::mask(&rendered)) {
        errors.push(option, problem.to_string());
    }
}

fn boot(c: &mut Config, env: &Env<'_>, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    if !c.boot_command.is_empty() && !c.boot_steps.is_empty() {
        errors.push("boot_steps", "boot_command and boot_steps cannot both be set; keep only one of them");
    }
    if !c.boot_command.is_empty() {
        let joined = c.boot_command.concat();
        check_boot_command("boot_command", &joined, &c.vm_name, errors, warnings);
    }
    for (i, step) in c.boot_steps.iter().enumerate() {
        let option = format!("boot_steps[{i}]");
        match step.len() {
            0 => {}
            1 | 2 => check_boot_command(&option, &step[0], &c.vm_name, errors, warnings),
            n => errors.push(
                option,
                format!("has {n} elements; write each step as [\"<keys>\"] or [\"<keys>\", \"description\"]"),
            ),
        }
    }
    // Packer: unset or zero → 10s; negative → no wait.
    if c.boot_wait.is_zero() {
        c.boot_wait = Duration::from_secs(10);
    } else if c.boot_wait.is_negative() {
        c.boot_wait = Duration::ZERO;
    }
    if c.boot_key_interval.is_zero() {
        c.boot_key_interval = match (env.var)("PACKER_KEY_INTERVAL").filter(|v| !v.trim().is_empty()) {
            Some(v) => match Duration::parse(&v) {
                Ok(d) if !d.is_negative() => d,
                Ok(_) | Err(_) => {
                    errors.push_general(format!(
                        "the environment variable PACKER_KEY_INTERVAL={v:?} is not a valid duration (e.g. \"100ms\"); \
                         fix or unset it, or set boot_key_interval"
                    ));
                    Duration::from_millis(100)
                }
            },
            None => Duration::from_millis(100),
        };
    } else if c.boot_key_interval.is_negative() {
        errors.push("boot_key_interval", "must not be negative; use e.g. \"100ms\"");
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn http_and_cd(c: &mut Config, errors: &mut ConfigErrors) {
    if !c.http_directory.is_empty() && !c.http_content.is_empty() {
        errors.push("http_content", "http_directory and http_content cannot both be set; keep only one of them");
    }
    if !c.http_directory.is_empty() && !Path::new(&c.http_directory).is_dir() {
        errors.push("http_directory", format!("{:?} is not a directory; create it or fix the path", c.http_directory));
    }
    for key in c.http_content.keys() {
        if !key.starts_with('/') {
            errors.push("http_content", format!("key {key:?} must start with '/', e.g. \"/{key}\""));
        }
    }
    if c.http_port_min == 0 {
        c.http_port_min = 8000;
    }
    if c.http_port_max == 0 {
        c.http_port_max = 9000;
    }
    port_range("http_port_min", "http_port_max", c.http_port_min, c.http_port_max, errors);
    // with net_bridge an unset address stays empty: the HTTP server then listens on the bridge's IP
    if c.http_bind_address.is_empty() && !devices::bridged(c) {
        c.http_bind_address = "127.0.0.1".to_string();
    }
    for f in &c.cd_files {
        if !has_glob(f) && !Path::new(f).exists() {
            errors.push("cd_files", format!("{f:?} does not exist; fix the path or remove it"));
        }
    }
    for key in c.cd_content.keys() {
        if key.is_empty() || key.split('/').any(|p| p == "..") {
            errors.push("cd_content", format!("key {key:?} must be a relative file path on the CD, without \"..\""));
        }
    }
    check_content_templates("http_content", &c.http_content, errors);
    check_content_templates("cd_content", &c.cd_content, errors);
    if c.cd_label.is_empty() {
        c.cd_label = "packer".to_string();
    } else if c.cd_label.len() > 32 {
        errors.push("cd_label", format!("{:?} is longer than the 32 characters an ISO volume id allows", c.cd_label));
    }
}

/// The keys and values of `cd_content`/`http_content` are rendered when the build runs, with
/// [`CONTENT_VARIABLES`]: a malformed template or another variable is an error now.
fn check_content_templates(option: &str, content: &BTreeMap<String, String>, errors: &mut ConfigErrors) {
    for (key, value) in content {
        for (what, text) in [("key", key), ("value", value)] {
            let problem = match Template::parse(text) {
                Ok(t) => t.check_variables(CONTENT_VARIABLES).err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(p) = problem {
                errors.push(option, format!("the {what} of {key:?}: {p}"));
            }
        }
    }
}

fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(rest)).unwrap_or_else(|| PathBuf::from(p)),
        None => PathBuf::from(p),
    }
}

/// Reads a key or certificate file named by `option` (`~` expanded); records an error and
/// returns `None` when it cannot be read. On success the option holds the expanded path.
/// The largest SSH key or certificate file read at validate time (real ones are a few KiB).
const MAX_SSH_FILE_BYTES: u64 = 1 << 20;

fn read_ssh_file(option: &str, path: &mut String, errors: &mut ConfigErrors) -> Option<String> {
    let expanded = expand_home(path);
    // Keys and certificates are a few KiB: anything else (a device like /dev/zero, a FIFO that
    // would block `packer validate`, a huge file) is refused before it is read
    match std::fs::metadata(&expanded) {
        Ok(m) if !m.is_file() => {
            errors.push(option, format!("{expanded:?} is not a regular file; point it at the key or certificate file"));
            return None;
        }
        Ok(m) if m.len() > MAX_SSH_FILE_BYTES => {
            errors.push(
                option,
                format!(
                    "{expanded:?} is {} bytes, too large for a key or certificate (at most {MAX_SSH_FILE_BYTES}); \
                     check the path",
                    m.len()
                ),
            );
            return None;
        }
        _ => {}
    }
    match std::fs::read_to_string(&expanded) {
        Ok(text) if text.trim().is_empty() => {
            errors.push(option, format!("{expanded:?} is empty; point it at the file to use"));
            None
        }
        Ok(text) => {
            *path = expanded.to_string_lossy().into_owned();
            Some(text)
        }
        Err(e) => {
            errors.push(option, format!("cannot read {expanded:?} ({e}); fix the path or the file's permissions"));
            None
        }
    }
}

/// Checks a private key option and its certificate option (the certificate needs the key and
/// must certify it), as Packer does at Prepare.
fn check_key_and_certificate(
    (key_option, key_path): (&str, &mut String),
    (cert_option, cert_path): (&str, &mut String),
    errors: &mut ConfigErrors,
) {
    if key_path.is_empty() {
        if !cert_path.is_empty() {
            errors.push(cert_option, format!("{key_option} must be specified if {cert_option} is specified"));
        }
        return;
    }
    let Some(key) = read_ssh_file(key_option, key_path, errors) else { return };
    if let Err(e) = keys::check_private_key(&key) {
        errors.push(key_option, format!("{key_path:?} is not a usable private key: {e}"));
        return;
    }
    if cert_path.is_empty() {
        return;
    }
    let Some(cert) = read_ssh_file(cert_option, cert_path, errors) else { return };
    if let Err(e) = keys::check_certificate(&key, &cert) {
        errors.push(cert_option, format!("{cert_path:?}: {e}"));
    }
}

fn communicator(c: &mut Config, env: &Env<'_>, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    if c.host_port_min == 0 {
        c.host_port_min = 2222;
    }
    if c.host_port_max == 0 {
        c.host_port_max = 4444;
    }
    port_range("host_port_min", "host_port_max", c.host_port_min, c.host_port_max, errors);
    if c.shutdown_timeout.is_zero() {
        c.shutdown_timeout = Duration::from_secs(300);
    } else if c.shutdown_timeout.is_negative() {
        errors.push("shutdown_timeout", "must not be negative; use e.g. \"5m\"");
    }
    match c.communicator {
        CommunicatorType::Winrm => {
            errors.push("communicator", format!("\"winrm\" is not supported: {WINRM_UNSUPPORTED}"));
            return;
        }
        CommunicatorType::None => {
            if !c.shutdown_command.is_empty() {
                errors.push(
                    "shutdown_command",
                    "needs a communicator to run; with communicator = \"none\" the guest must power itself off — \
                     remove shutdown_command or use communicator = \"ssh\"",
                );
            }
            return;
        }
        CommunicatorType::Ssh => {}
    }
    if c.ssh_username.is_empty() {
        errors.push("ssh_username", "must be set when communicator is \"ssh\" (the user provisioners log in as)");
    }
    let mut cert = c.ssh_certificate_file.clone().unwrap_or_default();
    check_key_and_certificate(
        ("ssh_private_key_file", &mut c.ssh_private_key_file),
        ("ssh_certificate_file", &mut cert),
        errors,
    );
    c.ssh_certificate_file = Some(cert).filter(|p| !p.is_empty());
    if c.ssh_timeout.is_zero() {
        c.ssh_timeout = Duration::from_secs(300);
        if !c.boot_command.is_empty() || !c.boot_steps.is_empty() {
            warnings.push(
                "ssh_timeout is the default 5m although a boot_command is set: an OS install usually takes longer; \
                 set ssh_timeout (e.g. \"30m\")"
                    .into(),
            );
        }
    } else if c.ssh_timeout.is_negative() {
        errors.push("ssh_timeout", "must not be negative; use e.g. \"20m\"");
    }
    if c.ssh_handshake_attempts == 0 {
        c.ssh_handshake_attempts = 10;
    }
    if c.ssh_port == 0 {
        c.ssh_port = 22;
    }
    // with net_bridge an unset ssh_host stays empty: the guest's address is discovered at run time
    if c.ssh_host.is_empty() && !devices::bridged(c) {
        c.ssh_host = "127.0.0.1".to_string();
    }
    if c.ssh_keep_alive_interval.is_zero() {
        c.ssh_keep_alive_interval = Duration::from_secs(5);
    }
    if c.ssh_read_write_timeout.is_negative() {
        errors.push("ssh_read_write_timeout", "must not be negative; use 0 to disable it");
    }
    if c.pause_before_connecting.is_some_and(|d| d.is_negative()) {
        errors.push("pause_before_connecting", "must not be negative; use e.g. \"1m\", or remove it");
    }
    let agent_missing = (env.var)("SSH_AUTH_SOCK").is_none_or(|s| s.is_empty());
    for option in ["ssh_agent_auth", "ssh_bastion_agent_auth"] {
        let set = if option == "ssh_agent_auth" { c.ssh_agent_auth } else { c.ssh_bastion_agent_auth };
        // Packer connects to the agent only when the build connects, so validate passes without one
        if set == Some(true) && agent_missing {
            warnings.push(format!(
                "{option} is set but SSH_AUTH_SOCK is not: the build will fail to connect unless an ssh-agent runs \
                 (eval \"$(ssh-agent)\"; ssh-add KEY)"
            ));
        }
    }
    if let Some(ciphers) = c.ssh_ciphers.as_ref().filter(|l| !l.is_empty()) {
        if let Err(errs) = algorithms::ciphers(ciphers) {
            for e in errs {
                errors.push("ssh_ciphers", e.to_string());
            }
        }
    }
    if let Some(kex) = c.ssh_key_exchange_algorithms.as_ref().filter(|l| !l.is_empty()) {
        if let Err(errs) = algorithms::kex_algorithms(kex) {
            for e in errs {
                errors.push("ssh_key_exchange_algorithms", e.to_string());
            }
        }
    }
    for (option, list, direction) in [
        ("ssh_local_tunnels", &c.ssh_local_tunnels, TunnelDirection::Local),
        ("ssh_remote_tunnels", &c.ssh_remote_tunnels, TunnelDirection::Remote),
    ] {
        for (i, spec) in list.iter().flatten().enumerate() {
            if let Err(e) = Tunnel::parse(spec, direction) {
                errors.push(format!("{option}[{i}]"), e);
            }
        }
    }
    bastion_and_proxy(c, errors);
    match c.temporary_key_pair_type {
        KeyPairType::Dsa => errors.push(
            "temporary_key_pair_type",
            "\"dsa\" is not supported by qemu-rs: DSA (ssh-dss) keys are refused by OpenSSH since 7.0 and by \
             current dropbear, so a temporary DSA key could not log in to a current guest; use \"ed25519\", \
             \"ecdsa\" or \"rsa\"",
        ),
        KeyPairType::Rsa => match c.temporary_key_pair_bits {
            0 => c.temporary_key_pair_bits = 4096,
            b if !(2048..=16384).contains(&b) => errors.push(
                "temporary_key_pair_bits",
                format!("{b} bits is not a valid RSA key size; use 2048 to 16384, e.g. 4096"),
            ),
            _ => {}
        },
        KeyPairType::Ecdsa => match c.temporary_key_pair_bits {
            0 => c.temporary_key_pair_bits = 521,
            256 | 384 | 521 => {}
            b => errors
                .push("temporary_key_pair_bits", format!("{b} bits is not an ECDSA curve size; use 256, 384 or 521")),
        },
        KeyPairType::Ed25519 => {}
    }
}

/// `ssh_bastion_*` and `ssh_proxy_*`: defaults and checks as Packer's (the bastion's key defaults
/// to `ssh_private_key_file` and its certificate; its user, which Packer leaves empty, to
/// `ssh_username`).
fn bastion_and_proxy(c: &mut Config, errors: &mut ConfigErrors) {
    let set_str = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let bastion = set_str(&c.ssh_bastion_host);
    let proxy = set_str(&c.ssh_proxy_host);
    if bastion && proxy {
        errors.push("ssh_proxy_host", "please specify either ssh_bastion_host or ssh_proxy_host, not both");
    }
    let mut key = c.ssh_bastion_private_key_file.clone().unwrap_or_default();
    let mut cert = c.ssh_bastion_certificate_file.clone().unwrap_or_default();
    let mut inherited = false;
    if bastion {
        if c.ssh_bastion_port.is_none_or(|p| p == 0) {
            c.ssh_bastion_port = Some(22);
        }
        if !set_str(&c.ssh_bastion_username) {
            c.ssh_bastion_username = Some(c.ssh_username.clone());
        }
        if key.is_empty() && !c.ssh_private_key_file.is_empty() {
            // already checked under its own name
            c.ssh_bastion_private_key_file = Some(c.ssh_private_key_file.clone());
            c.ssh_bastion_certificate_file = c.ssh_certificate_file.clone();
            inherited = true;
        }
        let password = c.ssh_bastion_password.as_ref().is_some_and(|p| !p.is_empty());
        let interactive = c.ssh_bastion_interactive == Some(true);
        if !password && key.is_empty() && !inherited && c.ssh_bastion_agent_auth != Some(true) && !interactive {
            errors.push(
                "ssh_bastion_host",
                "ssh_bastion_password, ssh_bastion_private_key_file, ssh_bastion_agent_auth or \
                 ssh_bastion_interactive must be specified to log in to the bastion",
            );
        }
    }
    if !inherited && (bastion || !cert.is_empty()) {
        check_key_and_certificate(
            ("ssh_bastion_private_key_file", &mut key),
            ("ssh_bastion_certificate_file", &mut cert),
            errors,
        );
        c.ssh_bastion_private_key_file = Some(key).filter(|p| !p.is_empty());
        c.ssh_bastion_certificate_file = Some(cert).filter(|p| !p.is_empty());
    }
    if proxy && c.ssh_proxy_port.is_none_or(|p| p == 0) {
        c.ssh_proxy_port = Some(1080);
    }
    if !proxy && (set_str(&c.ssh_proxy_username) || c.ssh_proxy_password.as_ref().is_some_and(|p| !p.is_empty())) {
        errors.push(
            "ssh_proxy_username",
            "ssh_proxy_username/ssh_proxy_password need ssh_proxy_host; set it or remove them",
        );
    }
}

fn qemu_args(c: &Config, errors: &mut ConfigErrors) {
    let check_template = |option: &str, value: &str, errors: &mut ConfigErrors| match Template::parse(value) {
        Ok(t) => {
            if let Err(e) = t.check_variables(QEMU_ARGS_VARIABLES) {
                errors.push(option, e.to_string());
            }
        }
        Err(e) => errors.push(option, e.to_string()),
    };
    for (i, arg) in c.qemuargs.iter().enumerate() {
        let option = format!("qemuargs[{i}]");
        match arg.first() {
            None => {
                errors.push(&option, "is empty; write each entry as [\"-switch\", \"value\"] or [\"-switch\", \"\"]")
            }
            Some(s) if !s.starts_with('-') => errors.push(
                &option,
                format!("the first element {s:?} must be a QEMU switch starting with '-', e.g. [\"-m\", \"1G\"]"),
            ),
            // e.g. `"qemuargs": "-m 1G"`, which weak decoding turns into [["-m 1G"]]
            Some(s) if s.contains(char::is_whitespace) => errors.push(
                &option,
                format!(
                    "the switch {s:?} contains a space: QEMU gets it as one argument; write the switch and its \
                     value as separate elements, e.g. [\"-m\", \"1G\"]"
                ),
            ),
            Some(_) => {}
        }
        for v in arg {
            check_template(&option, v, errors);
        }
    }
    for (i, v) in c.qemu_extra_args.iter().enumerate() {
        check_template(&format!("qemu_extra_args[{i}]"), v, errors);
    }
}

/// `warm_start` saves the machine when SSH first answers and restores it with QEMU's user network:
/// it needs the SSH communicator and does not take a bridge or an emulated TPM (swtpm state).
fn warm_start(c: &mut Config, errors: &mut ConfigErrors) {
    if c.warm_start_cache_size.bytes() == 0 {
        c.warm_start_cache_size = crate::config::DEFAULT_WARM_START_CACHE_SIZE;
    }
    if !c.warm_start {
        return;
    }
    if c.communicator != CommunicatorType::Ssh {
        errors.push(
            "warm_start",
            "needs communicator = \"ssh\": the machine is saved the moment SSH first answers; remove warm_start or use ssh",
        );
    }
    if c.net_bridge.as_deref().is_some_and(|b| !b.is_empty()) {
        errors.push(
            "warm_start",
            "cannot be used with net_bridge (a restored guest keeps the bridge address of the saved one); remove one of them",
        );
    }
    if c.vtpm == Some(true) {
        errors.push("warm_start", "cannot be used with vtpm (the TPM state is not saved); remove one of them");
    }
}
