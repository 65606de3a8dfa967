//! A real Linux distribution end to end: the Debian 12 cloud image (systemd, cloud-init, OpenSSH,
//! GRUB on a GPT disk; made from Debian's packages by `images/debian-cloud/build.sh`) customised by
//! real Packer with the template users copy, `images/debian-cloud/debian-12-genericcloud.pkr.hcl`,
//! unchanged but for its variables: a NoCloud seed from `cd_content` carrying the build's temporary
//! key, a larger `disk_size` (the root file system grows), Packer's `file` provisioner, a `.deb` from
//! `http_directory` installed with sudo and its systemd unit enabled, `cloud-init clean`, `sudo
//! shutdown -P now`, compressed qcow2. Once on BIOS and once on UEFI (`efi_boot`), at the same time.
//! Each artifact then boots again as a new instance, with a new seed and a new key, and the unit runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use qemu_rs_tests::e2e::Build;
use qemu_rs_tests::{built_images, free_port, guest_slot, run_with_deadline, workspace_root};

/// Hang guard for one build: a healthy one takes 4–8 minutes under TCG on a busy 2-core host.
const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// Hang guard for the artifact's boot to SSH (60–150 s under TCG).
const BOOT_DEADLINE: Duration = Duration::from_secs(10 * 60);

/// The image made by `images/debian-cloud/build.sh` (`DEBIAN_CLOUD_DIR` overrides its directory).
fn debian_image_dir() -> PathBuf {
    built_images(
        "DEBIAN_CLOUD_DIR",
        "images/debian-cloud/out",
        &["debian-12-genericcloud-amd64.qcow2", "SHA256SUMS"],
        "debian-cloud",
    )
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = run_with_deadline(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `.deb` made here with `dpkg-deb`: a script and a systemd unit that records each run in
/// `/var/lib/hello-qemu-rs/ran` with the content of `/etc/hello-qemu-rs.conf` (which the build
/// uploads with Packer's `file` provisioner) and says so on the console.
fn hello_deb(dir: &Path) -> PathBuf {
    let root = dir.join("pkg");
    let write = |rel: &str, content: &str, mode: u32| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    };
    write(
        "DEBIAN/control",
        "Package: hello-qemu-rs\nVersion: 1.0\nArchitecture: all\nMaintainer: qemu-rs tests <tests@invalid>\n\
         Description: qemu-rs end-to-end test unit\n Records that it ran.\n",
        0o644,
    );
    write(
        "usr/lib/hello-qemu-rs/hello",
        "#!/bin/sh\nset -e\nmkdir -p /var/lib/hello-qemu-rs\n\
         echo \"ran in boot $(cat /proc/sys/kernel/random/boot_id) with: $(cat /etc/hello-qemu-rs.conf)\" >> /var/lib/hello-qemu-rs/ran\n\
         echo 'hello-qemu-rs: ran'\n",
        0o755,
    );
    write(
        "lib/systemd/system/hello-qemu-rs.service",
        "[Unit]\nDescription=qemu-rs end-to-end test unit\nAfter=local-fs.target\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/lib/hello-qemu-rs/hello\n\
         StandardOutput=journal+console\n\n[Install]\nWantedBy=multi-user.target\n",
        0o644,
    );
    let deb = dir.join("hello-qemu-rs_1.0_all.deb");
    run_ok(Command::new("dpkg-deb").args(["--root-owner-group", "-Zgzip", "--build"]).arg(&root).arg(&deb), "dpkg-deb");
    deb
}

/// QEMU booting an artifact; killed (by pid) and reaped when dropped.
struct Vm {
    child: Child,
    port: u16,
    serial: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    /// Boots `disk` (through a qcow2 overlay in `dir`) with the NoCloud `seed` CD, under TCG, SSH
    /// forwarded from 127.0.0.1; UEFI with the build's variable store `efivars` when given.
    fn boot(dir: &Path, disk: &Path, seed: &Path, efivars: Option<&Path>) -> Vm {
        let overlay = dir.join("overlay.qcow2");
        run_ok(
            Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"]).arg(disk).arg(&overlay),
            "qemu-img create",
        );
        let serial = dir.join("serial.log");
        let port = free_port();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-machine", "pc", "-m", "1024", "-display", "none", "-monitor", "none"])
            .args(["-global", "x86_64-cpu.rdrand=on"])
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
            .arg("-drive")
            .arg(format!("file={},media=cdrom,readonly=on", seed.display()))
            .arg("-netdev")
            .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"))
            .args(["-device", "virtio-net-pci,netdev=n0", "-serial"])
            .arg(format!("file:{}", serial.display()));
        if let Some(vars) = efivars {
            let copy = dir.join("efivars.fd");
            fs::copy(vars, &copy).expect("copy the build's UEFI variables");
            // the code image that matches the variable store's size (Debian's 4 MiB or 2 MiB OVMF)
            let code = if fs::metadata(&copy).unwrap().len() == 131_072 {
                "/usr/share/OVMF/OVMF_CODE.fd"
            } else {
                "/usr/share/OVMF/OVMF_CODE_4M.fd"
            };
            cmd.arg("-drive")
                .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"))
                .arg("-drive")
                .arg(format!("if=pflash,format=raw,unit=1,file={}", copy.display()));
        }
        let log = fs::File::create(dir.join("qemu.log")).expect("qemu.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start qemu-system-x86_64");
        Vm { child, port, serial }
    }

    fn serial_tail(&self) -> String {
        let text = String::from_utf8_lossy(&fs::read(&self.serial).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = text.lines().rev().take(40).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// `ssh debian@guest command` with `key`, retried until it works or the boot deadline passes.
    fn ssh_when_up(&mut self, key: &Path, command: &str) -> String {
        let start = Instant::now();
        loop {
            let out = run_with_deadline(
                Command::new("ssh")
                    .args([
                        "-o",
                        "BatchMode=yes",
                        "-o",
                        "StrictHostKeyChecking=no",
                        "-o",
                        "UserKnownHostsFile=/dev/null",
                    ])
                    .args(["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-i"])
                    .arg(key)
                    .args(["-p", &self.port.to_string(), "debian@127.0.0.1", command]),
                Duration::from_secs(120),
            );
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if let Some(status) = self.child.try_wait().expect("wait for qemu") {
                panic!("QEMU exited ({status}) before SSH worked; serial console:\n{}", self.serial_tail());
            }
            if start.elapsed() > BOOT_DEADLINE {
                panic!(
                    "no SSH as debian after {:?}: {}\nserial console:\n{}",
                    BOOT_DEADLINE,
                    String::from_utf8_lossy(&out.stderr),
                    self.serial_tail()
                );
            }
            sleep(Duration::from_secs(2));
        }
    }
}

/// A NoCloud seed CD for the artifact's second life: a new instance id, hostname and key.
fn new_seed(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("id_ed25519");
    run_ok(
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "second-boot", "-f"]).arg(&key),
        "ssh-keygen",
    );
    let pubkey = fs::read_to_string(dir.join("id_ed25519.pub")).unwrap();
    let seed = dir.join("seed");
    fs::create_dir_all(&seed).unwrap();
    fs::write(seed.join("meta-data"), "instance-id: second-boot\nlocal-hostname: debian-12-again\n").unwrap();
    fs::write(seed.join("user-data"), format!("#cloud-config\nssh_authorized_keys:\n  - {}\n", pubkey.trim())).unwrap();
    let iso = dir.join("seed.iso");
    run_ok(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-volid", "cidata", "-joliet", "-rock", "-o"])
            .arg(&iso)
            .arg(seed.join("meta-data"))
            .arg(seed.join("user-data")),
        "xorriso",
    );
    (iso, key)
}

struct Variant {
    name: &'static str,
    efi: bool,
    build: Build,
    started: Instant,
    child: Option<Child>,
}

#[test]
fn debian_cloud_image_is_customised_on_bios_and_uefi_and_boots_again() {
    let image_dir = debian_image_dir();
    let _slot = guest_slot();
    let template = fs::read_to_string(workspace_root().join("images/debian-cloud/debian-12-genericcloud.pkr.hcl"))
        .expect("read the Debian template");
    let shared = tempfile::Builder::new().prefix("qemu-rs-debian-").tempdir().expect("temp dir");
    let deb = hello_deb(shared.path());

    let mut variants = Vec::new();
    for (name, efi) in [("bios", false), ("uefi", true)] {
        let build = Build::new();
        let http = build.env.path().join("http");
        let files = build.env.path().join("files/etc");
        fs::create_dir_all(&http).unwrap();
        fs::create_dir_all(&files).unwrap();
        fs::copy(&deb, http.join(deb.file_name().unwrap())).unwrap();
        fs::write(files.join("hello-qemu-rs.conf"), format!("uploaded by the file provisioner ({name})\n")).unwrap();
        let vars = [
            format!("iso_url={}", image_dir.join("debian-12-genericcloud-amd64.qcow2").display()),
            format!("iso_checksum=file:{}", image_dir.join("SHA256SUMS").display()),
            format!("output_dir={}", build.out_dir().display()),
            "disk_size=3G".to_string(),
            format!("efi_boot={efi}"),
            format!("http_dir={}", http.display()),
            format!("files_dir={}", build.env.path().join("files").display()),
            "debs=[\"hello-qemu-rs_1.0_all.deb\"]".to_string(),
            "units=[\"hello-qemu-rs.service\"]".to_string(),
        ]
        .map(|v| format!("-var={v}"));
        let started = Instant::now();
        let child = build.spawn_with(&template, &vars);
        variants.push(Variant { name, efi, build, started, child: Some(child) });
    }

    for v in &mut variants {
        let outcome = v.build.wait_at_most(v.child.take().unwrap(), v.started, BUILD_DEADLINE);
        assert!(outcome.success, "{} build failed:\n{}\n{}", v.name, outcome.text, v.build.diagnostics());
        eprintln!("{} build: {:.0} s", v.name, outcome.elapsed.as_secs_f64());
        for needle in ["Creating CD disk", "hello-qemu-rs", "Gracefully halting virtual machine"] {
            assert!(outcome.text.contains(needle), "{}: the build output lacks {needle:?}:\n{}", v.name, outcome.text);
        }
        assert!(
            v.build.leftover_temp_files().is_empty(),
            "{}: temp files left: {:?}",
            v.name,
            v.build.leftover_temp_files()
        );
        let artifact = v.build.out_dir().join("debian-12.qcow2");
        let info = run_ok(Command::new("qemu-img").args(["info", "--output=json"]).arg(&artifact), "qemu-img info");
        assert!(info.contains("\"format\": \"qcow2\""), "{info}");
        assert!(info.contains("\"virtual-size\": 3221225472"), "the artifact is not 3 GiB: {info}");
        let size = fs::metadata(&artifact).unwrap().len();
        assert!(size < 1_000_000_000, "{}: the compressed artifact is {size} bytes", v.name);
        eprintln!("{} artifact: {size} bytes", v.name);
    }

    // Second life: both artifacts at once, each a new instance with a new seed and key.
    let mut vms = Vec::new();
    for v in &variants {
        let dir = v.build.env.path().join("second-boot");
        fs::create_dir_all(&dir).unwrap();
        let (seed, key) = new_seed(&dir);
        let efivars = v.build.out_dir().join("efivars.fd");
        let vm = Vm::boot(&dir, &v.build.out_dir().join("debian-12.qcow2"), &seed, v.efi.then_some(efivars.as_path()));
        vms.push((v, vm, key, Instant::now()));
    }
    for (v, vm, key, started) in &mut vms {
        let report = vm.ssh_when_up(
            key,
            "cloud-init status --wait >/dev/null; echo host=$(hostname); \
             echo unit=$(systemctl is-active hello-qemu-rs.service); echo boot=$(cat /proc/sys/kernel/random/boot_id); \
             cat /var/lib/hello-qemu-rs/ran; \
             echo keys=$(wc -l < ~/.ssh/authorized_keys); echo root=$(df -B1 --output=size / | tail -1); \
             test -d /sys/firmware/efi && echo firmware=uefi || echo firmware=bios; \
             echo machine-id=$(cat /etc/machine-id); echo sudo=$(sudo -n id -u)",
        );
        eprintln!("{} second boot to SSH: {:.0} s\n{report}", v.name, started.elapsed().as_secs_f64());
        let line = |k: &str| report.lines().find_map(|l| l.strip_prefix(k)).unwrap_or_default().trim().to_string();
        assert_eq!(line("host="), "debian-12-again", "{}: cloud-init did not run as a new instance:\n{report}", v.name);
        assert_eq!(line("unit="), "active", "{}: the unit did not run:\n{report}", v.name);
        let runs: Vec<&str> = report.lines().filter(|l| l.starts_with("ran in boot ")).collect();
        let expected = format!("ran in boot {} with: uploaded by the file provisioner ({})", line("boot="), v.name);
        assert_eq!(runs, [expected.as_str()], "{}: the unit must have run once, in this boot:\n{report}", v.name);
        assert_eq!(line("keys="), "1", "{}: the build's key is still authorized:\n{report}", v.name);
        let root: u64 = line("root=").parse().unwrap_or(0);
        assert!(root > 2_700_000_000, "{}: the root file system did not grow to the 3 GiB disk:\n{report}", v.name);
        assert_eq!(line("firmware="), if v.efi { "uefi" } else { "bios" }, "{report}");
        assert_eq!(line("machine-id=").len(), 32, "{}: no new machine-id:\n{report}", v.name);
        assert_eq!(line("sudo="), "0", "{}: sudo without password does not work:\n{report}", v.name);
    }
}
