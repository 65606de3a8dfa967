//! The one place that assembles QEMU's command line.
//!
//! Deterministic: the same config and inputs always give the same argv, switches in a fixed
//! order (Packer's builder iterates a Go map, so its order changes between runs). `qemuargs` keep
//! Packer's override semantics — a switch the user names replaces all default values of that
//! switch; a user `-device` list without the NIC gets the NIC added back — and `qemu_extra_args`
//! are appended verbatim at the end.

use std::collections::BTreeMap;
use std::path::PathBuf;

use packer_sdk::config::template::Template;

use super::accel::Accelerator;
use crate::config::{CdromInterface, Config, DiskInterface};

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
    /// EFI firmware, when booting with EFI.
    pub efi: Option<EfiFiles>,
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
    d.add("-smp", config.cpus.max(1).to_string());
    if !config.cpu_model.is_empty() {
        d.add("-cpu", config.cpu_model.clone());
    }
    d.add("-netdev", netdev(inputs));
    // disks
    let scsi = config.disk_interface == DiskInterface::VirtioScsi;
    let cd_scsi = config.cdrom_interface == Some(CdromInterface::VirtioScsi);
    if scsi || cd_scsi {
        d.add("-device", "virtio-scsi-pci,id=scsi0");
    }
    let mut drives = Vec::new();
    for (i, disk) in inputs.disks.iter().enumerate() {
        let mut opts = if scsi {
            d.add("-device", format!("scsi-hd,bus=scsi0.0,drive=drive{i}"));
            format!("if=none,file={},id=drive{i}", disk.display())
        } else {
            format!("file={},if={}", disk.display(), config.disk_interface.as_str())
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
        drives.push(opts);
    }
    d.add("-device", nic_device(config, inputs));
    for (i, iso) in inputs.install_iso.iter().chain(inputs.cd_iso.iter()).enumerate() {
        match config.cdrom_interface {
            None => drives.push(format!("file={},media=cdrom", iso.display())),
            Some(CdromInterface::VirtioScsi) => {
                d.add("-device", format!("scsi-cd,bus=scsi0.0,drive=cdrom{i}"));
                drives.push(format!("file={},if=none,index={i},id=cdrom{i},media=cdrom", iso.display()));
            }
            Some(other) => {
                drives.push(format!("file={},if={},index={i},id=cdrom{i},media=cdrom", iso.display(), other.as_str()))
            }
        }
    }
    if let Some(efi) = &inputs.efi {
        drives.push(format!("file={},if=pflash,unit=0,format=raw,readonly=on", efi.code.display()));
        drives.push(format!("file={},if=pflash,unit=1,format=raw", efi.vars.display()));
    }
    for dr in drives {
        d.add("-drive", dr);
    }
    add_floppy(&mut d, inputs);
    if let Some(vnc) = vnc(inputs) {
        d.add("-vnc", vnc);
    }
    if config.headless {
        d.add("-display", "none");
    } else if !config.display.is_empty() {
        d.add("-display", config.display.clone());
    } else {
        d.add("-display", "gtk");
    }
    d.add("-qmp", format!("unix:{},server=on,wait=off", inputs.qmp_socket.display()));
    d.add("-serial", format!("file:{}", inputs.serial_log.display()));
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
    for a in &config.qemu_extra_args {
        argv.push(render("qemu_extra_args", a, &inputs.template_vars)?);
    }
    Ok(argv)
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
        Config::prepare(&[raw, common]).expect("valid config").config
    }

    fn inputs() -> LaunchInputs {
        LaunchInputs {
            accel: Accelerator::Tcg,
            disks: vec!["/out/vm".into()],
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
            efi: None,
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
