//! The one place that assembles QEMU's command line.
//!
//! Deterministic: the same config and inputs always give the same argv, switches in a fixed
//! order (Packer's builder iterates a Go map, so its order changes between runs). `qemuargs` keep
//! Packer's override semantics — a switch the user names replaces all default values of that
//! switch; a user `-device` list without the NIC gets the NIC added back — and `qemu_extra_args`
//! are appended verbatim at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use packer_sdk::config::template::Template;

use super::accel::Accelerator;
use crate::config::{Arch, CdromInterface, Config, DiskInterface};

/// The SSH port forward: host `bind:host_port` → guest `guest_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    /// Host address to bind (127.0.0.1 by default).
    pub bind: String,
    /// Host port; 0 lets QEMU's user network pick a free one (read back with `info usernet`).
    pub host_port: u16,
    /// Guest port (`ssh_port`).
    pub guest_port: u16,
}

/// EFI firmware files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfiFiles {
    /// Read-only code (OVMF_CODE).
    pub code: PathBuf,
    /// The build's own copy of the variable store.
    pub vars: PathBuf,
}

/// The swtpm a vTPM is wired to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VtpmWiring {
    /// swtpm's control socket (`--ctrl type=unixio,path=`).
    pub socket: PathBuf,
    /// The TPM device model (`tpm_device_type`).
    pub device: String,
}

/// The host bridge the NIC is attached to (`net_bridge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNet {
    /// The bridge interface.
    pub bridge: String,
    /// The NIC's MAC address (random per build, so parallel builds on one bridge do not clash).
    pub mac: String,
}

/// What the build steps decided before launching QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchInputs {
    /// The accelerator chosen by the probe.
    pub accel: Accelerator,
    /// Hard disks, main disk first.
    pub disks: Vec<PathBuf>,
    /// Open the main disk with `copy-on-read=on` (an overlay on a compressed base image).
    pub copy_on_read: bool,
    /// The installer ISO (`None` with `disk_image`).
    pub install_iso: Option<PathBuf>,
    /// The `cd_files`/`cd_content` ISO.
    pub cd_iso: Option<PathBuf>,
    /// QMP socket path.
    pub qmp_socket: PathBuf,
    /// VNC: bind address and the range of display numbers QEMU may take (`to=`).
    pub vnc: Option<(String, u16, u16)>,
    /// The communicator's port forward (`None` with `communicator = "none"` or a bridge).
    pub ssh_forward: Option<PortForward>,
    /// The bridge the NIC is attached to instead of QEMU's user network.
    pub bridge: Option<BridgeNet>,
    /// Whether VNC asks for a password (`password=on`; the password itself is set over QMP).
    pub vnc_password: bool,
    /// The floppy image (`-fda`).
    pub floppy: Option<PathBuf>,
    /// The emulated TPM.
    pub vtpm: Option<VtpmWiring>,
    /// Where the serial console is written.
    pub serial_log: PathBuf,
    /// QEMU's log file (`-D`), where the trace events of typing with feedback are written (see
    /// [`crate::driver::key_trace`]); `None` for no `-D`.
    pub trace_log: Option<PathBuf>,
    /// EFI firmware, when booting with EFI.
    pub efi: Option<EfiFiles>,
    /// Warm start: QEMU waits for a saved machine state (`-incoming defer`; the state is then
    /// read with QMP `migrate-incoming`) instead of booting.
    pub incoming: bool,
    /// Values of `{{ .HTTPIP }}`, `{{ .HTTPPort }}`, `{{ .HTTPDir }}`, `{{ .OutputDir }}`, `{{ .Name }}`,
    /// `{{ .SSHHostPort }}` for `qemuargs` and `qemu_extra_args`.
    pub template_vars: BTreeMap<String, String>,
}

/// A problem assembling the command line (bad templates in `qemuargs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {message}")]
pub struct ArgvError {
    /// The option.
    pub option: &'static str,
    /// What is wrong.
    pub message: String,
}

struct Switches(Vec<(String, Vec<String>)>);

impl Switches {
    fn add(&mut self, switch: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(s, _)| s == switch) {
            Some((_, v)) => v.push(value),
            None => self.0.push((switch.to_string(), vec![value])),
        }
    }
}

fn render(option: &'static str, s: &str, vars: &BTreeMap<String, String>) -> Result<String, ArgvError> {
    let t = Template::parse(s).map_err(|e| ArgvError { option, message: format!("{s:?}: {e}") })?;
    let data: BTreeMap<&str, String> = vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    t.render(&data).map_err(|e| ArgvError { option, message: format!("{s:?}: {e}") })
}

/// Builds QEMU's argv (without the binary itself).
pub fn build(config: &Config, inputs: &LaunchInputs) -> Result<Vec<String>, ArgvError> {
    let mut d = Switches(Vec::new());
    d.add("-name", config.vm_name.clone());
    d.add("-machine", format!("type={},accel={}", config.machine_type, inputs.accel.qemu_name()));
    if inputs.efi.is_none() {
        d.add("-boot", if config.disk_image { "c" } else { "once=d" });
    }
    d.add("-m", format!("{}M", config.memory));
    d.add("-smp", smp_value(config));
    if !config.cpu_model.is_empty() {
        d.add("-cpu", config.cpu_model.clone());
    }
    if let Some(global) = tcg_rdrand(config, inputs) {
        d.add("-global", global);
    }
    d.add("-netdev", netdev(inputs));
    let mut drives = Vec::new();
    hard_disks(config, inputs, &mut d, &mut drives);
    d.add("-device", nic_device(config, inputs));
    cdroms(config, inputs, &mut d, &mut drives);
    firmware(config, inputs, &mut d, &mut drives);
    for dr in drives {
        d.add("-drive", dr);
    }
    add_floppy(&mut d, inputs);
    if let Some(vnc) = vnc(inputs) {
        d.add("-vnc", vnc);
    }
    if let Some(display) = display_value(config) {
        d.add("-display", display);
    }
    d.add("-qmp", format!("unix:{},server=on,wait=off", inputs.qmp_socket.display()));
    d.add("-serial", format!("file:{}", inputs.serial_log.display()));
    if let Some(log) = &inputs.trace_log {
        // written to only while trace events are on (typing with feedback)
        d.add("-D", log.display().to_string());
    }
    add_vtpm(&mut d, inputs);
    if let Some(vga) = config.vga.as_ref().filter(|v| !v.is_empty()) {
        d.add("-vga", vga.clone());
    }

    // qemuargs: override semantics
    let mut user = Switches(Vec::new());
    for (n, arg) in config.qemuargs.iter().enumerate() {
        let Some((switch, parts)) = arg.split_first() else { continue };
        let switch = render("qemuargs", switch, &inputs.template_vars)?;
        if !switch.starts_with('-') {
            return Err(ArgvError {
                option: "qemuargs",
                message: format!("entry {n} ({arg:?}) must start with a switch such as \"-m\""),
            });
        }
        let mut value = String::new();
        for p in parts {
            value.push_str(&render("qemuargs", p, &inputs.template_vars)?);
        }
        user.add(&switch, value);
    }
    if let Some((_, devs)) = user.0.iter_mut().find(|(s, _)| s == "-device") {
        if !devs.iter().any(|v| v.contains(&config.net_device)) {
            devs.push(nic_device(config, inputs));
        }
    }
    let mut merged = Vec::new();
    for (s, v) in d.0 {
        match user.0.iter().position(|(u, _)| *u == s) {
            Some(i) => merged.push(user.0.remove(i)),
            None => merged.push((s, v)),
        }
    }
    merged.extend(user.0);
    let mut argv = Vec::new();
    for (s, values) in merged {
        for v in values {
            argv.push(s.clone());
            if !v.is_empty() {
                argv.push(v);
            }
        }
    }
    if inputs.incoming {
        argv.extend(["-incoming".to_string(), "defer".to_string()]);
    }
    for a in &config.qemu_extra_args {
        argv.push(render("qemu_extra_args", a, &inputs.template_vars)?);
    }
    Ok(argv)
}

/// `-global x86_64-cpu.rdrand=on` under TCG when `cpu_model` is unset: QEMU's default x86 CPU
/// model (`qemu64`) lacks RDRAND, so a guest kernel has no early entropy and a program that needs
/// random numbers soon after boot (sshd answering its first connection, generating host keys)
/// blocks until the kernel has gathered jitter entropy — about 1 s under TCG on the test guest.
/// With RDRAND (emulated by TCG from the host's random source) the kernel's random pool is ready
/// at boot. A CPU property set with `-global` on the base CPU type, so the model stays QEMU's
/// default (some QEMU builds have no `qemu64` to name). Not under KVM, where the guest's RDRAND
/// is the host CPU's and jitter entropy is fast, and not with a `cpu_model` the user chose.
fn tcg_rdrand(config: &Config, inputs: &LaunchInputs) -> Option<String> {
    if inputs.accel != Accelerator::Tcg || !config.cpu_model.is_empty() || config.arch != Arch::X86_64 {
        return None;
    }
    let binary = Path::new(&config.qemu_binary).file_name().map(|n| n.to_string_lossy().into_owned());
    let cpu_type = if binary.is_some_and(|b| b.ends_with("i386")) { "i386-cpu" } else { "x86_64-cpu" };
    Some(format!("{cpu_type}.rdrand=on"))
}

/// `-netdev`: QEMU's user network with the SSH forward, or the host bridge (`net_bridge`).
fn netdev(inputs: &LaunchInputs) -> String {
    match (&inputs.bridge, &inputs.ssh_forward) {
        (Some(b), _) => format!("bridge,id=user.0,br={}", b.bridge),
        (None, Some(f)) => format!("user,id=user.0,hostfwd=tcp:{}:{}-:{}", f.bind, f.host_port, f.guest_port),
        (None, None) => "user,id=user.0".to_string(),
    }
}

/// The NIC `-device`, with the build's MAC on a bridge.
fn nic_device(config: &Config, inputs: &LaunchInputs) -> String {
    match &inputs.bridge {
        Some(b) => format!("{},netdev=user.0,mac={}", config.net_device, b.mac),
        None => format!("{},netdev=user.0", config.net_device),
    }
}

/// `-vnc`: the first free display of the range, with `password=on` when a password is used.
fn vnc(inputs: &LaunchInputs) -> Option<String> {
    let (bind, lo, hi) = inputs.vnc.as_ref()?;
    let password = if inputs.vnc_password { ",password=on" } else { "" };
    Some(format!("{bind}:{lo},to={hi}{password}"))
}

/// `-fda` with the floppy image.
fn add_floppy(d: &mut Switches, inputs: &LaunchInputs) {
    if let Some(f) = &inputs.floppy {
        d.add("-fda", f.display().to_string());
    }
}

/// The vTPM: swtpm's socket as a chardev, the emulator backend, and the TPM device.
fn add_vtpm(d: &mut Switches, inputs: &LaunchInputs) {
    if let Some(t) = &inputs.vtpm {
        d.add("-chardev", format!("socket,id=vtpm,path={}", t.socket.display()));
        d.add("-tpmdev", "emulator,id=tpm0,chardev=vtpm");
        d.add("-device", format!("{},tpmdev=tpm0", t.device));
    }
}

/// A file name or URL as a QEMU option value: commas are doubled (QEMU's escape).
fn opt_value(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// `-smp`: the vCPU count `prepare` settled on (Packer's rules), the topology given, and
/// `maxcpus` when the topology allows more vCPUs than are online (QEMU 7.2 refuses it otherwise).
fn smp_value(config: &Config) -> String {
    let mut v = config.cpus.max(1).to_string();
    let mut product = 1u32;
    let mut any = false;
    for (name, n) in [("sockets", config.sockets), ("cores", config.cores), ("threads", config.threads)] {
        if let Some(n) = n.filter(|n| *n > 0) {
            v.push_str(&format!(",{name}={n}"));
            product = product.saturating_mul(n);
            any = true;
        }
    }
    if any && config.cpus.max(1) < product {
        v.push_str(&format!(",maxcpus={product}"));
    }
    v
}

/// Whether `machine` is one of QEMU's PCI machines without a native SCSI/SD controller for
/// `if=scsi`/`if=sd` (`pc`, `q35`, their versioned names, `virt`).
fn pci_machine(machine: &str) -> bool {
    let base = machine.split(',').next().unwrap_or_default();
    base == "pc" || base == "q35" || base.starts_with("pc-") || base == "virt" || base.starts_with("virt-")
}

/// The hard disks (main disk first): drives and the controllers and devices their bus needs.
///
/// - `virtio`, `ide`, `sata`: `file=…,if=<interface>,…` as Packer passes them.
/// - `virtio-scsi`: one `virtio-scsi-pci` controller (shared with virtio-scsi CD-ROMs) and a
///   `scsi-hd` per disk.
/// - `scsi`: Packer passes `if=scsi`, which QEMU 7.2 refuses on `pc`/`q35`/`virt`; there an
///   `lsi53c895a` controller (what `if=scsi` used to create) gets a `scsi-hd` per disk.
/// - `sd`: `if=sd` needs a machine with an SD controller; on `pc`/`q35`/`virt` each disk gets its
///   own `sdhci-pci` controller with an `sd-card` (one card per SD bus).
fn hard_disks(config: &Config, inputs: &LaunchInputs, d: &mut Switches, drives: &mut Vec<String>) {
    let pci = pci_machine(&config.machine_type);
    let virtio_scsi = config.disk_interface == DiskInterface::VirtioScsi;
    if virtio_scsi || config.cdrom_interface == Some(CdromInterface::VirtioScsi) {
        d.add("-device", "virtio-scsi-pci,id=scsi0");
    }
    let lsi = config.disk_interface == DiskInterface::Scsi && pci && !inputs.disks.is_empty();
    if lsi {
        d.add("-device", "lsi53c895a,id=lsi0");
    }
    let sdhci = config.disk_interface == DiskInterface::Sd && pci;
    for (i, disk) in inputs.disks.iter().enumerate() {
        let file = opt_value(disk);
        let mut opts = if virtio_scsi {
            d.add("-device", format!("scsi-hd,bus=scsi0.0,drive=drive{i}"));
            format!("if=none,file={file},id=drive{i}")
        } else if lsi {
            d.add("-device", format!("scsi-hd,bus=lsi0.0,scsi-id={i},drive=drive{i}"));
            format!("if=none,file={file},id=drive{i}")
        } else if sdhci {
            d.add("-device", format!("sdhci-pci,id=sdhci{i}"));
            d.add("-device", format!("sd-card,drive=drive{i}"));
            format!("if=none,file={file},id=drive{i}")
        } else {
            format!("file={file},if={}", config.disk_interface.as_str())
        };
        opts.push_str(&format!(
            ",cache={},discard={},format={}",
            config.disk_cache.as_str(),
            config.disk_discard.as_str(),
            config.format.as_str()
        ));
        if config.disk_detect_zeroes.as_str() != "off" {
            opts.push_str(&format!(",detect-zeroes={}", config.disk_detect_zeroes.as_str()));
        }
        if i == 0 && inputs.copy_on_read {
            opts.push_str(",copy-on-read=on");
        }
        drives.push(opts);
    }
}

/// The CD-ROMs: the installer ISO (not with `disk_image`), then the `cd_files`/`cd_content` ISO.
///
/// - unset `cdrom_interface`: `media=cdrom` on the machine's default bus, as Packer does.
/// - `virtio-scsi`: a `scsi-cd` on the shared `virtio-scsi-pci` controller.
/// - `scsi`: Packer passes `if=scsi`, which QEMU 7.2 refuses on `pc`/`q35`/`virt`; there a
///   `scsi-cd` goes on the `lsi53c895a` controller (the one the `scsi` disks use, or a new one),
///   after the disks' SCSI ids.
/// - `ide`, `virtio`, and `scsi` on other machines: `if=<interface>` as Packer passes it.
fn cdroms(config: &Config, inputs: &LaunchInputs, d: &mut Switches, drives: &mut Vec<String>) {
    let pci = pci_machine(&config.machine_type);
    let lsi_disks = if config.disk_interface == DiskInterface::Scsi && pci { inputs.disks.len() } else { 0 };
    let mut lsi = lsi_disks > 0;
    for (i, iso) in inputs.install_iso.iter().chain(inputs.cd_iso.iter()).enumerate() {
        let iso = opt_value(iso);
        match config.cdrom_interface {
            None => drives.push(format!("file={iso},media=cdrom")),
            Some(CdromInterface::VirtioScsi) => {
                d.add("-device", format!("scsi-cd,bus=scsi0.0,drive=cdrom{i}"));
                drives.push(format!("file={iso},if=none,index={i},id=cdrom{i},media=cdrom"));
            }
            Some(CdromInterface::Scsi) if pci => {
                if !lsi {
                    d.add("-device", "lsi53c895a,id=lsi0");
                    lsi = true;
                }
                d.add("-device", format!("scsi-cd,bus=lsi0.0,scsi-id={},drive=cdrom{i}", lsi_disks + i));
                drives.push(format!("file={iso},if=none,id=cdrom{i},media=cdrom"));
            }
            Some(other) => drives.push(format!("file={iso},if={},index={i},id=cdrom{i},media=cdrom", other.as_str())),
        }
    }
}

/// Firmware: the UEFI pair (`efi_*`), else `firmware` as `-bios` or as a read-only pflash drive
/// (`use_pflash`). `prepare` already dropped `firmware` when UEFI is on.
fn firmware(config: &Config, inputs: &LaunchInputs, d: &mut Switches, drives: &mut Vec<String>) {
    if let Some(fw) = config.firmware.as_deref().filter(|f| !f.is_empty()).map(Path::new) {
        if config.use_pflash == Some(true) {
            drives.push(format!("file={},if=pflash,format=raw,readonly=on", opt_value(fw)));
        } else if inputs.efi.is_none() {
            d.add("-bios", fw.display().to_string());
        }
    }
    if let Some(efi) = &inputs.efi {
        drives.push(format!("file={},if=pflash,unit=0,format=raw,readonly=on", opt_value(&efi.code)));
        drives.push(format!("file={},if=pflash,unit=1,format=raw", opt_value(&efi.vars)));
    }
}

/// `-display`: `none` when headless (qemu-rs' default); else `display`, or `gtk` — or nothing
/// with `use_default_display` (QEMU picks), as Packer does.
fn display_value(config: &Config) -> Option<String> {
    if config.headless {
        Some("none".into())
    } else if !config.display.is_empty() {
        Some(config.display.clone())
    } else if config.use_default_display == Some(true) {
        None
    } else {
        Some("gtk".into())
    }
}

/// The argv as one shell-quoted line, for logs and for re-running by hand.
pub fn display(binary: &str, argv: &[String]) -> String {
    std::iter::once(binary)
        .chain(argv.iter().map(String::as_str))
        .map(|a| {
            if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=.,:/+@".contains(&b)) {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use packer_sdk::config::RawConfig;

    fn config(extra: serde_json::Value) -> Config {
        prepare(extra).expect("valid config").config
    }

    fn inputs() -> LaunchInputs {
        LaunchInputs {
            accel: Accelerator::Tcg,
            disks: vec!["/out/vm".into()],
            copy_on_read: false,
            install_iso: Some("/cache/x.iso".into()),
            cd_iso: None,
            qmp_socket: "/out/vm.monitor".into(),
            vnc: Some(("127.0.0.1".into(), 0, 99)),
            ssh_forward: Some(PortForward { bind: "127.0.0.1".into(), host_port: 0, guest_port: 22 }),
            bridge: None,
            vnc_password: false,
            floppy: None,
            vtpm: None,
            serial_log: "/out/serial.log".into(),
            trace_log: None,
            efi: None,
            incoming: false,
            template_vars: [("HTTPIP", "10.0.2.2"), ("HTTPPort", "8080"), ("Name", "vm")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn values<'a>(argv: &'a [String], switch: &str) -> Vec<&'a str> {
        argv.windows(2).filter(|w| w[0] == switch).map(|w| w[1].as_str()).collect()
    }

    #[test]
    fn defaults_are_complete_and_deterministic() {
        let c = config(serde_json::json!({}));
        let a = build(&c, &inputs()).unwrap();
        assert_eq!(a, build(&c, &inputs()).unwrap());
        assert_eq!(values(&a, "-machine"), ["type=pc,accel=tcg"]);
        assert_eq!(values(&a, "-boot"), ["once=d"]);
        assert_eq!(values(&a, "-netdev"), ["user,id=user.0,hostfwd=tcp:127.0.0.1:0-:22"]);
        assert_eq!(values(&a, "-device"), ["virtio-net,netdev=user.0"]);
        assert_eq!(
            values(&a, "-drive"),
            ["file=/out/vm,if=virtio,cache=writeback,discard=ignore,format=qcow2", "file=/cache/x.iso,media=cdrom"]
        );
        assert_eq!(values(&a, "-vnc"), ["127.0.0.1:0,to=99"]);
        assert_eq!(values(&a, "-display"), ["none"]);
        assert_eq!(values(&a, "-qmp"), ["unix:/out/vm.monitor,server=on,wait=off"]);
        assert_eq!(values(&a, "-serial"), ["file:/out/serial.log"]);
        assert_eq!(values(&a, "-global"), ["x86_64-cpu.rdrand=on"]);
        assert!(values(&a, "-D").is_empty());
        let i = LaunchInputs { trace_log: Some("/tmp/qemu-rs-1.trace".into()), ..inputs() };
        assert_eq!(values(&build(&c, &i).unwrap(), "-D"), ["/tmp/qemu-rs-1.trace"]);
    }

    /// RDRAND is added to QEMU's default CPU under TCG only: not under KVM, not to a CPU model the
    /// user chose, not on aarch64; the user's own `-global` list replaces it (qemuargs override).
    #[test]
    fn rdrand_for_the_default_cpu_under_tcg() {
        let tcg = inputs();
        let kvm = LaunchInputs { accel: Accelerator::Kvm, ..inputs() };
        let globals = |c: &Config, i: &LaunchInputs| {
            values(&build(c, i).unwrap(), "-global").iter().map(|s| s.to_string()).collect::<Vec<_>>()
        };
        assert_eq!(globals(&config(serde_json::json!({})), &tcg), ["x86_64-cpu.rdrand=on"]);
        assert!(globals(&config(serde_json::json!({})), &kvm).is_empty());
        assert!(globals(&config(serde_json::json!({"cpu_model": "Nehalem"})), &tcg).is_empty());
        assert_eq!(
            globals(&config(serde_json::json!({"qemu_binary": "/usr/bin/qemu-system-i386"})), &tcg),
            ["i386-cpu.rdrand=on"]
        );
        assert!(globals(&config(serde_json::json!({"qemu_binary": "qemu-system-aarch64"})), &tcg).is_empty());
        let user = config(serde_json::json!({"qemuargs": [["-global", "ICH9-LPC.disable_s3=1"]]}));
        assert_eq!(globals(&user, &tcg), ["ICH9-LPC.disable_s3=1"]);
    }

    #[test]
    fn qemuargs_override_and_extra_args_append() {
        let c = config(serde_json::json!({
            "qemuargs": [["-m", "1024M"], ["-device", "virtio-rng-pci"], ["-no-reboot", ""],
                         ["-drive", "file=", "{{ .Name }}", ".img"]],
            "qemu_extra_args": ["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"]
        }));
        let a = build(&c, &inputs()).unwrap();
        assert_eq!(values(&a, "-m"), ["1024M"]);
        // the user's -device list lacks the NIC: it is added back
        assert_eq!(values(&a, "-device"), ["virtio-rng-pci", "virtio-net,netdev=user.0"]);
        // a user -drive replaces every default drive
        assert_eq!(values(&a, "-drive"), ["file=vm.img"]);
        assert!(a.iter().any(|x| x == "-no-reboot"));
        assert_eq!(&a[a.len() - 2..], ["-smbios", "type=1,serial=ds=nocloud-net;s=http://10.0.2.2:8080/"]);
    }

    #[test]
    fn disk_image_efi_scsi() {
        let c = config(serde_json::json!({"disk_image": true, "disk_interface": "virtio-scsi",
            "disk_discard": "unmap", "disk_detect_zeroes": "unmap", "cdrom_interface": "virtio-scsi"}));
        let mut i = inputs();
        i.install_iso = None;
        i.cd_iso = Some("/tmp/cidata.iso".into());
        i.efi = Some(EfiFiles { code: "/usr/share/OVMF/OVMF_CODE.fd".into(), vars: "/out/efivars.fd".into() });
        let a = build(&c, &i).unwrap();
        assert!(values(&a, "-boot").is_empty());
        assert_eq!(
            values(&a, "-device"),
            [
                "virtio-scsi-pci,id=scsi0",
                "scsi-hd,bus=scsi0.0,drive=drive0",
                "virtio-net,netdev=user.0",
                "scsi-cd,bus=scsi0.0,drive=cdrom0"
            ]
        );
        assert_eq!(
            values(&a, "-drive"),
            [
                "if=none,file=/out/vm,id=drive0,cache=writeback,discard=unmap,format=qcow2,detect-zeroes=unmap",
                "file=/tmp/cidata.iso,if=none,index=0,id=cdrom0,media=cdrom",
                "file=/usr/share/OVMF/OVMF_CODE.fd,if=pflash,unit=0,format=raw,readonly=on",
                "file=/out/efivars.fd,if=pflash,unit=1,format=raw"
            ]
        );
    }

    #[test]
    fn bad_qemuargs_are_named() {
        let mut c = config(serde_json::json!({}));
        c.qemuargs = vec![vec!["m".into(), "512".into()]]; // prepare rejects this; build must too
        let e = build(&c, &inputs()).unwrap_err();
        assert_eq!(e.option, "qemuargs");
        c.qemuargs = vec![vec!["-m".into(), "{{ .Unknown }}".into()]];
        assert_eq!(build(&c, &inputs()).unwrap_err().option, "qemuargs");
    }

    const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
    const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";

    fn prepare(extra: serde_json::Value) -> Result<crate::config::PreparedConfig, String> {
        let mut m = serde_json::json!({
            "iso_url": "/tmp/x.iso", "iso_checksum": "none", "ssh_username": "root",
            "output_directory": "/tmp/qemu-rs-argv-test-out-does-not-exist", "vm_name": "vm",
            "accelerator": "tcg"
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        let raw = RawConfig::Map(m.as_object().unwrap().clone());
        let common = RawConfig::Map(serde_json::json!({"packer_build_name": "b"}).as_object().unwrap().clone());
        Config::prepare(&[raw, common]).map_err(|e| e.errors.to_string())
    }

    #[test]
    fn smp_follows_packers_topology_rules() {
        // (options, -smp, a warning expected)
        let cases = [
            (serde_json::json!({}), "1", false),
            (serde_json::json!({"cpus": 4}), "4", false),
            (serde_json::json!({"sockets": 2, "cores": 2}), "4,sockets=2,cores=2", false),
            (serde_json::json!({"threads": 2}), "2,threads=2", false),
            (
                serde_json::json!({"sockets": 2, "cores": 2, "threads": 2, "cpus": 8}),
                "8,sockets=2,cores=2,threads=2",
                false,
            ),
            // more cpus than the topology: lowered to the product (Packer's clamp)
            (serde_json::json!({"cpus": 8, "sockets": 2, "cores": 2}), "4,sockets=2,cores=2", true),
            (serde_json::json!({"cpus": 4, "sockets": 2}), "2,sockets=2", true),
            // fewer: kept, with maxcpus so QEMU 7.2 accepts the topology
            (serde_json::json!({"cpus": 2, "sockets": 1, "cores": 4}), "2,sockets=1,cores=4,maxcpus=4", true),
            // 0 is "unset", as in Packer
            (serde_json::json!({"cpus": 3, "sockets": 0}), "3", false),
        ];
        for (opts, want, warned) in cases {
            let p = prepare(opts.clone()).unwrap();
            let a = build(&p.config, &inputs()).unwrap();
            assert_eq!(values(&a, "-smp"), [want], "{opts}");
            assert_eq!(p.warnings.iter().any(|w| w.contains("topology")), warned, "{opts}: {:?}", p.warnings);
        }
        let e = prepare(serde_json::json!({"sockets": 64, "cores": 64, "threads": 64})).unwrap_err();
        assert!(e.contains("sockets") && e.contains("4096"), "{e}");
    }

    #[test]
    fn firmware_as_bios_or_pflash() {
        let c = config(serde_json::json!({"firmware": OVMF_CODE}));
        let a = build(&c, &inputs()).unwrap();
        assert_eq!(values(&a, "-bios"), [OVMF_CODE]);
        assert!(!values(&a, "-drive").iter().any(|d| d.contains("pflash")));
        let c = config(serde_json::json!({"firmware": OVMF_CODE, "use_pflash": true}));
        let a = build(&c, &inputs()).unwrap();
        assert!(values(&a, "-bios").is_empty());
        assert_eq!(
            values(&a, "-drive").last().copied(),
            Some("file=/usr/share/OVMF/OVMF_CODE.fd,if=pflash,format=raw,readonly=on")
        );
        // a BIOS-style firmware still boots the CD once, like Packer
        assert_eq!(values(&a, "-boot"), ["once=d"]);
    }

    #[test]
    fn firmware_meets_uefi() {
        // -bios next to the UEFI pflash: QEMU would ignore it; qemu-rs drops it with a warning
        let p = prepare(serde_json::json!({"firmware": OVMF_CODE, "efi_boot": true})).unwrap();
        assert!(p.config.efi_boot && p.config.firmware.is_none());
        assert!(p.warnings.iter().any(|w| w.contains("firmware") && w.contains("ignored")), "{:?}", p.warnings);
        let mut i = inputs();
        i.efi = Some(EfiFiles { code: OVMF_CODE.into(), vars: "/out/efivars.fd".into() });
        let a = build(&p.config, &i).unwrap();
        assert!(values(&a, "-bios").is_empty());
        assert_eq!(values(&a, "-drive").iter().filter(|d| d.contains("if=pflash")).count(), 2);
        // two firmware images in pflash unit 0: an error naming the fix
        let e = prepare(serde_json::json!({"firmware": OVMF_CODE, "use_pflash": true, "efi_firmware_code": OVMF_CODE,
            "efi_firmware_vars": "/usr/share/OVMF/OVMF_VARS.fd"}))
        .unwrap_err();
        assert!(e.contains("use_pflash") && e.contains("efi"), "{e}");
        let e = prepare(serde_json::json!({"firmware": "/nonexistent/bios.bin"})).unwrap_err();
        assert!(e.contains("firmware") && e.contains("not a readable file"), "{e}");
        let p = prepare(serde_json::json!({"use_pflash": true})).unwrap();
        assert!(p.warnings.iter().any(|w| w.contains("use_pflash has no effect")), "{:?}", p.warnings);
        assert!(!build(&p.config, &inputs()).unwrap().iter().any(|x| x.contains("pflash")));
    }

    #[test]
    fn vga_and_display() {
        let a = build(&config(serde_json::json!({"vga": "virtio"})), &inputs()).unwrap();
        assert_eq!(values(&a, "-vga"), ["virtio"]);
        assert!(values(&build(&config(serde_json::json!({})), &inputs()).unwrap(), "-vga").is_empty());
        let e = prepare(serde_json::json!({"vga": "vrtio"})).unwrap_err();
        assert!(e.contains("vga") && e.contains("did you mean \"virtio\""), "{e}");
        // (options, -display)
        let cases = [
            (serde_json::json!({}), vec!["none"]),
            (serde_json::json!({"headless": false}), vec!["gtk"]),
            (serde_json::json!({"headless": false, "display": "sdl"}), vec!["sdl"]),
            (serde_json::json!({"headless": false, "use_default_display": true}), vec![]),
            (serde_json::json!({"headless": false, "use_default_display": true, "display": "vnc"}), vec!["vnc"]),
            (serde_json::json!({"use_default_display": true}), vec!["none"]),
        ];
        for (opts, want) in cases {
            let a = build(&config(opts.clone()), &inputs()).unwrap();
            assert_eq!(values(&a, "-display"), want, "{opts}");
            assert_eq!(a.iter().filter(|x| *x == "-display").count(), want.len(), "{opts}");
        }
    }

    #[test]
    fn copy_on_read_only_on_the_main_disk() {
        let c = config(serde_json::json!({"disk_additional_size": ["64M"]}));
        let a = build(&c, &LaunchInputs { copy_on_read: true, ..two_disks() }).unwrap();
        let drives = values(&a, "-drive");
        assert!(drives[0].ends_with(",copy-on-read=on"), "{drives:?}");
        assert!(!drives[1].contains("copy-on-read"), "{drives:?}");
        let a = build(&c, &two_disks()).unwrap();
        assert!(!values(&a, "-drive").iter().any(|d| d.contains("copy-on-read")));
    }

    fn two_disks() -> LaunchInputs {
        let mut i = inputs();
        i.disks = vec!["/out/vm".into(), "/out/vm-1".into()];
        i
    }

    #[test]
    fn additional_disks_share_the_main_disks_settings() {
        let c = config(serde_json::json!({"disk_additional_size": ["1G"], "disk_cache": "unsafe",
            "disk_discard": "unmap", "disk_detect_zeroes": "unmap", "disk_interface": "sata"}));
        let a = build(&c, &two_disks()).unwrap();
        assert_eq!(
            &values(&a, "-drive")[..2],
            [
                "file=/out/vm,if=sata,cache=unsafe,discard=unmap,format=qcow2,detect-zeroes=unmap",
                "file=/out/vm-1,if=sata,cache=unsafe,discard=unmap,format=qcow2,detect-zeroes=unmap"
            ]
        );
        let c = config(serde_json::json!({"disk_additional_size": ["1G"], "disk_interface": "virtio-scsi"}));
        let a = build(&c, &two_disks()).unwrap();
        assert_eq!(
            values(&a, "-device")[..3],
            ["virtio-scsi-pci,id=scsi0", "scsi-hd,bus=scsi0.0,drive=drive0", "scsi-hd,bus=scsi0.0,drive=drive1"]
        );
        for bad in ["10GB", "", "0"] {
            let e = prepare(serde_json::json!({"disk_additional_size": ["1G", bad]})).unwrap_err();
            assert!(e.contains("disk_additional_size[1]"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn scsi_and_sd_on_pci_machines_and_others() {
        let c = config(serde_json::json!({"disk_interface": "scsi", "disk_additional_size": ["1G"]}));
        let a = build(&c, &two_disks()).unwrap();
        assert_eq!(
            values(&a, "-device")[..3],
            [
                "lsi53c895a,id=lsi0",
                "scsi-hd,bus=lsi0.0,scsi-id=0,drive=drive0",
                "scsi-hd,bus=lsi0.0,scsi-id=1,drive=drive1"
            ]
        );
        assert_eq!(
            values(&a, "-drive")[1],
            "if=none,file=/out/vm-1,id=drive1,cache=writeback,discard=ignore,format=qcow2"
        );
        let c = config(serde_json::json!({"disk_interface": "sd", "disk_size": "1G", "disk_additional_size": ["512M"],
            "machine_type": "q35"}));
        let a = build(&c, &two_disks()).unwrap();
        assert_eq!(
            values(&a, "-device")[..4],
            ["sdhci-pci,id=sdhci0", "sd-card,drive=drive0", "sdhci-pci,id=sdhci1", "sd-card,drive=drive1"]
        );
        // a machine with its own SD/SCSI controller gets Packer's if=sd / if=scsi
        let c = config(serde_json::json!({"disk_interface": "sd", "disk_size": "1G", "machine_type": "raspi3b"}));
        let a = build(&c, &inputs()).unwrap();
        assert_eq!(values(&a, "-drive")[0], "file=/out/vm,if=sd,cache=writeback,discard=ignore,format=qcow2");
        let c = config(serde_json::json!({"disk_interface": "scsi", "machine_type": "pseries"}));
        assert!(values(&build(&c, &inputs()).unwrap(), "-drive")[0].contains("if=scsi"));
        // SD cards need power-of-2 sizes
        let e =
            prepare(serde_json::json!({"disk_interface": "sd", "disk_size": "1000M", "disk_additional_size": ["3G"]}))
                .unwrap_err();
        assert!(e.contains("disk_size") && e.contains("1024M") && e.contains("disk_additional_size[0]"), "{e}");
    }

    #[test]
    fn file_names_with_commas_are_escaped() {
        let c = config(serde_json::json!({}));
        let mut i = inputs();
        i.disks = vec!["/out/a,b".into()];
        i.install_iso = Some("http://h/x.iso?a=1,2".into());
        let a = build(&c, &i).unwrap();
        assert!(values(&a, "-drive")[0].starts_with("file=/out/a,,b,if=virtio"));
        assert_eq!(values(&a, "-drive")[1], "file=http://h/x.iso?a=1,,2,media=cdrom");
    }

    #[test]
    fn aarch64_from_packer_style_templates() {
        // Packer's way: only qemu_binary and machine_type; UEFI through efi_* (or implied)
        let p = prepare(serde_json::json!({"qemu_binary": "qemu-system-aarch64", "machine_type": "virt",
            "cdrom_interface": "virtio-scsi"}))
        .unwrap();
        let c = p.config;
        assert_eq!((c.arch, c.efi_boot, c.cpu_model.as_str()), (crate::config::Arch::Aarch64, true, "max"));
        let mut i = inputs();
        i.efi = Some(EfiFiles { code: AAVMF_CODE.into(), vars: "/out/efivars.fd".into() });
        let a = build(&c, &i).unwrap();
        assert_eq!(values(&a, "-machine"), ["type=virt,accel=tcg"]);
        assert_eq!(values(&a, "-cpu"), ["max"]);
        assert!(values(&a, "-boot").is_empty());
        assert!(values(&a, "-drive")
            .contains(&"file=/usr/share/AAVMF/AAVMF_CODE.fd,if=pflash,unit=0,format=raw,readonly=on"));
        // firmware = AAVMF: that firmware boots, no implied UEFI pair
        let p = prepare(serde_json::json!({"qemu_binary": "/usr/bin/qemu-system-aarch64", "machine_type": "virt",
            "firmware": AAVMF_CODE, "cpu_model": "cortex-a57"}))
        .unwrap();
        assert!(!p.config.efi_boot);
        let a = build(&p.config, &inputs()).unwrap();
        assert_eq!(values(&a, "-bios"), [AAVMF_CODE]);
        assert_eq!(values(&a, "-cpu"), ["cortex-a57"]);
        // a -bios of their own in qemuargs: no implied UEFI either
        let p = prepare(serde_json::json!({"arch": "aarch64", "qemuargs": [["-bios", AAVMF_CODE]]})).unwrap();
        assert!(!p.config.efi_boot);
        // explicit efi_* paths
        let p = prepare(serde_json::json!({"qemu_binary": "qemu-system-aarch64", "efi_firmware_code": AAVMF_CODE,
            "efi_firmware_vars": "/usr/share/AAVMF/AAVMF_VARS.fd"}))
        .unwrap();
        assert!(p.config.efi_boot && p.config.machine_type == "virt");
    }

    /// Starts QEMU paused with `argv` (plus `-S`) and returns `info qtree`.
    async fn qtree(binary: &str, mut argv: Vec<String>, dir: &Path) -> String {
        argv.push("-S".into());
        let q = crate::driver::qemu::QemuProcess::launch(binary, &argv, &dir.join("qmp.sock"), &dir.join("serial.log"))
            .await
            .unwrap_or_else(|e| panic!("QEMU refused {}: {e}", display(binary, &argv)));
        let tree = q.qmp.human_monitor("info qtree").await.unwrap();
        q.kill().await;
        tree
    }

    /// QEMU takes the default argv and its vCPU then has RDRAND (the TCG default adds it).
    #[tokio::test]
    async fn qemu_gives_the_default_cpu_rdrand_under_tcg() {
        let dir = tempfile::tempdir().unwrap();
        crate::driver::qemu_img::QemuImg::default().create(&dir.path().join("vm"), "qcow2", 64 << 20).await.unwrap();
        let mut argv = build(&config(serde_json::json!({})), &real_inputs(dir.path(), &["vm"])).unwrap();
        argv.push("-S".into());
        let q = crate::driver::qemu::QemuProcess::launch(
            "qemu-system-x86_64",
            &argv,
            &dir.path().join("qmp.sock"),
            &dir.path().join("serial.log"),
        )
        .await
        .unwrap_or_else(|e| panic!("QEMU refused {}: {e}", display("qemu-system-x86_64", &argv)));
        let get = |property: &'static str| {
            let qmp = q.qmp.clone();
            async move {
                qmp.execute(
                    "qom-get",
                    Some(serde_json::json!({"path": "/machine/unattached/device[0]", "property": property})),
                )
                .await
                .unwrap()
            }
        };
        let (model, rdrand) = (get("type").await, get("rdrand").await);
        q.kill().await;
        assert_eq!(model, serde_json::json!("qemu64-x86_64-cpu"), "the CPU model must stay QEMU's default");
        assert_eq!(rdrand, serde_json::json!(true));
    }

    fn real_inputs(dir: &Path, disks: &[&str]) -> LaunchInputs {
        let mut i = inputs();
        i.install_iso = None;
        i.disks = disks.iter().map(|d| dir.join(d)).collect();
        i.qmp_socket = dir.join("qmp.sock");
        i.serial_log = dir.join("serial.log");
        i.vnc = None;
        i.ssh_forward = None;
        i
    }

    /// QEMU 7.2 accepts what qemu-rs generates for `scsi` and `sd` and the disks land on the
    /// controllers.
    #[tokio::test]
    async fn qemu_accepts_scsi_and_sd_disks() {
        let dir = tempfile::tempdir().unwrap();
        let img = crate::driver::qemu_img::QemuImg::default();
        for d in ["vm", "vm-1"] {
            img.create(&dir.path().join(d), "qcow2", 64 << 20).await.unwrap();
        }
        let c = config(serde_json::json!({"disk_interface": "scsi", "disk_additional_size": ["64M"]}));
        let tree =
            qtree("qemu-system-x86_64", build(&c, &real_inputs(dir.path(), &["vm", "vm-1"])).unwrap(), dir.path())
                .await;
        assert!(tree.contains("dev: lsi53c895a, id \"lsi0\""), "{tree}");
        assert_eq!(tree.matches("dev: scsi-hd").count(), 2, "{tree}");
        // scsi CD-ROMs: on the disks' controller after their ids, or on a controller of their own
        std::fs::write(dir.path().join("cd.iso"), vec![0u8; 2 << 20]).unwrap();
        for (disk_interface, controllers) in [("scsi", 1), ("virtio", 1)] {
            let c = config(serde_json::json!({"disk_interface": disk_interface, "cdrom_interface": "scsi"}));
            let mut i = real_inputs(dir.path(), &["vm"]);
            i.cd_iso = Some(dir.path().join("cd.iso"));
            let tree = qtree("qemu-system-x86_64", build(&c, &i).unwrap(), dir.path()).await;
            assert_eq!(tree.matches("dev: lsi53c895a").count(), controllers, "{tree}");
            assert_eq!(tree.matches("dev: scsi-cd").count(), 1, "{tree}");
        }
        let c = config(serde_json::json!({"disk_interface": "sd", "disk_size": "64M", "disk_additional_size": ["64M"],
            "machine_type": "q35"}));
        let tree =
            qtree("qemu-system-x86_64", build(&c, &real_inputs(dir.path(), &["vm", "vm-1"])).unwrap(), dir.path())
                .await;
        assert_eq!(tree.matches("dev: sdhci-pci").count(), 2, "{tree}");
        assert_eq!(tree.matches("dev: sd-card").count(), 2, "{tree}");
        // vga and the SMP topology are accepted too
        let c = config(serde_json::json!({"vga": "virtio", "cpus": 1, "sockets": 1, "cores": 2}));
        let tree = qtree("qemu-system-x86_64", build(&c, &real_inputs(dir.path(), &["vm"])).unwrap(), dir.path()).await;
        assert!(tree.contains("dev: virtio-vga"), "{tree}");
    }

    /// aarch64 `virt` with the AAVMF firmware found through QEMU's descriptors: the firmware runs
    /// (it prints its banner on the serial console within seconds under TCG).
    #[tokio::test]
    async fn aarch64_uefi_firmware_runs() {
        if std::process::Command::new("qemu-system-aarch64").arg("-version").output().is_err() {
            panic!("qemu-system-aarch64 is missing: install qemu-system-arm and qemu-efi-aarch64 (scripts/install-deps.sh)");
        }
        let dir = tempfile::tempdir().unwrap();
        let fw = crate::driver::firmware::find(&crate::driver::firmware::descriptor_dirs(), "aarch64", "virt", false)
            .expect("AAVMF (qemu-efi-aarch64) is installed");
        let vars = dir.path().join("efivars.fd");
        std::fs::copy(&fw.vars_template, &vars).unwrap();
        crate::driver::qemu_img::QemuImg::default().create(&dir.path().join("vm"), "qcow2", 64 << 20).await.unwrap();
        let c = config(serde_json::json!({"qemu_binary": "qemu-system-aarch64", "memory": 256}));
        let mut i = real_inputs(dir.path(), &["vm"]);
        i.efi = Some(EfiFiles { code: fw.code.clone(), vars });
        let argv = build(&c, &i).unwrap();
        let q = crate::driver::qemu::QemuProcess::launch(&c.qemu_binary, &argv, &i.qmp_socket, &i.serial_log)
            .await
            .unwrap_or_else(|e| panic!("QEMU refused {}: {e}", display(&c.qemu_binary, &argv)));
        let mut banner = false;
        for _ in 0..300 {
            if std::fs::read(&i.serial_log).is_ok_and(|b| String::from_utf8_lossy(&b).contains("UEFI firmware")) {
                banner = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        q.kill().await;
        assert!(banner, "no UEFI banner on the serial console: {:?}", std::fs::read_to_string(&i.serial_log));
    }

    #[test]
    fn floppy_vtpm_and_vnc_password() {
        let c = config(serde_json::json!({}));
        let mut i = inputs();
        i.floppy = Some("/tmp/qemu-rs-floppy-1.img".into());
        i.vtpm = Some(VtpmWiring { socket: "/tmp/qemu-rs-vtpm-x/vtpm.sock".into(), device: "tpm-crb".into() });
        i.vnc_password = true;
        let a = build(&c, &i).unwrap();
        assert_eq!(values(&a, "-fda"), ["/tmp/qemu-rs-floppy-1.img"]);
        assert_eq!(values(&a, "-chardev"), ["socket,id=vtpm,path=/tmp/qemu-rs-vtpm-x/vtpm.sock"]);
        assert_eq!(values(&a, "-tpmdev"), ["emulator,id=tpm0,chardev=vtpm"]);
        assert_eq!(values(&a, "-device"), ["virtio-net,netdev=user.0", "tpm-crb,tpmdev=tpm0"]);
        assert_eq!(values(&a, "-vnc"), ["127.0.0.1:0,to=99,password=on"]);
        // none of it without the inputs
        let a = build(&c, &inputs()).unwrap();
        for switch in ["-fda", "-chardev", "-tpmdev"] {
            assert!(values(&a, switch).is_empty(), "{switch} in {a:?}");
        }
        // disable_vnc: the launch step passes no VNC range, and there is no -vnc at all
        let mut i = inputs();
        i.vnc = None;
        assert!(values(&build(&c, &i).unwrap(), "-vnc").is_empty());
    }

    #[test]
    fn bridge_network() {
        let c = config(serde_json::json!({"net_device": "e1000"}));
        let mut i = inputs();
        i.ssh_forward = None;
        i.bridge = Some(BridgeNet { bridge: "br0".into(), mac: "52:54:00:ab:cd:ef".into() });
        let a = build(&c, &i).unwrap();
        assert_eq!(values(&a, "-netdev"), ["bridge,id=user.0,br=br0"]);
        assert_eq!(values(&a, "-device"), ["e1000,netdev=user.0,mac=52:54:00:ab:cd:ef"]);
        // a user -device list without the NIC gets the NIC back, with the build's MAC
        let c = config(serde_json::json!({"net_device": "e1000", "qemuargs": [["-device", "virtio-rng-pci"]]}));
        let a = build(&c, &i).unwrap();
        assert_eq!(values(&a, "-device"), ["virtio-rng-pci", "e1000,netdev=user.0,mac=52:54:00:ab:cd:ef"]);
    }

    #[test]
    fn display_quotes() {
        assert_eq!(display("qemu", &["-name".into(), "a b".into(), "it's".into()]), "qemu -name 'a b' 'it'\\''s'");
    }
}
