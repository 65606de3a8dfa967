//! End-to-end builds with real Packer (Debian's 1.6.6), the `qemu-rs` builder from this workspace and
//! the test guest (`make testguest`), under TCG:
//!
//! - an ISO build typed over QMP: `seed=` and `sshkey={{ .SSHPublicKey | urlquery }}` in the boot
//!   command, a temporary SSH key, `qemu-rs-shell`, Packer's `file` (upload and download), `shell`
//!   and `shell-local`, `shutdown_command`, the provisioned bytes found in the compacted qcow2;
//! - an ISO build typed over VNC with raw output and an `output_checksum` manifest;
//! - a cloud-image build (`disk_image`) configured by a `cd_content` cidata CD, shut down by ACPI
//!   power button, compressed, with the default accelerator (`auto`), whose artifact then boots
//!   again in a second build that finds the first one's file;
//! - fail fast: a kernel panic and a guest without sshd end the build quickly, showing the serial tail;
//! - cancellation: Ctrl-C (SIGINT to Packer's process group) during provisioning, SIGTERM to Packer, SIGKILL of Packer, and SIGKILL
//!   of the plugin leave no QEMU and no output directory (after the plugin's SIGKILL its janitor
//!   removes it), and no temporary files behind.
//!
//! Guests boot one at a time (the lock shared with the other test-guest tests).

use std::fs;
use std::path::Path;
use std::process::{Child, Command};
use std::thread::sleep;
use std::time::{Duration, Instant};

use qemu_rs_tests::e2e::{
    cloud_source, ctrl_c, descendants_named, guest_key, iso_source, qemu_pids_mentioning, wait_until, Build,
};
use qemu_rs_tests::{guest_dir, guest_slot, hcl_str, qcow2_to_raw};

fn image_format(image: &Path) -> String {
    let out = Command::new("qemu-img").arg("info").arg(image).output().expect("run qemu-img info");
    let info = String::from_utf8_lossy(&out.stdout).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("file format: "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no format in qemu-img info:\n{info}"))
}

#[test]
fn iso_build_over_qmp_runs_every_kind_of_provisioner() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let b = Build::new();
    let out = b.out_dir();
    let upload = b.env.write("upload.txt", "uploaded by packer's file provisioner\n");
    let download = b.env.path().join("downloaded-marker.txt");
    let local = b.env.path().join("shell-local.txt");
    let marker = "e2e-qmp-marker-4711";
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.iso"]

  provisioner "qemu-rs-shell" {{
    environment_vars = ["GREETING=hello from qemu-rs-shell"]
    inline = [
      "echo \"source: $(cat /run/testguest/source)\"",
      "echo \"$GREETING; marker: $(cat /run/testguest/marker)\"",
      "mke2fs -F -L e2e /dev/vda >/dev/null",
      "mkdir -p /mnt/e2e && mount -t ext2 /dev/vda /mnt/e2e",
      "echo QEMU-RS-E2E-PROVISIONED > /mnt/e2e/marker.txt",
      "umount /mnt/e2e && sync",
    ]
  }}
  provisioner "file" {{
    source      = {upload}
    destination = "/tmp/upload.txt"
  }}
  provisioner "shell" {{
    inline = ["echo \"packer shell read: $(cat /tmp/upload.txt)\""]
  }}
  provisioner "file" {{
    direction   = "download"
    source      = "/run/testguest/marker"
    destination = {download}
  }}
  provisioner "shell-local" {{
    inline = ["echo shell-local ran > {local_path}"]
  }}
}}
"#,
        source = iso_source(&guest, &out, marker, ""),
        upload = hcl_str(&upload),
        download = hcl_str(&download),
        local_path = local.display(),
    );
    let o = b.run_ok(&template);
    let t = &o.text;
    assert!(t.contains("Typing the boot command over QMP"), "{t}");
    assert!(t.contains("source: seed:http://10.0.2.2:"), "the guest was not configured by the seed:\n{t}");
    assert!(t.contains(&format!("hello from qemu-rs-shell; marker: {marker}")), "{t}");
    assert!(t.contains("packer shell read: uploaded by packer's file provisioner"), "{t}");
    assert_eq!(fs::read_to_string(&download).expect("the downloaded marker").trim(), marker);
    assert_eq!(fs::read_to_string(&local).expect("shell-local's file").trim(), "shell-local ran");
    assert!(t.contains("Gracefully halting"), "shutdown_command was not used:\n{t}");

    let image = out.join("e2e.img");
    assert_eq!(image_format(&image), "qcow2");
    let raw = qcow2_to_raw(b.env.path(), &image);
    // the file system qemu-rs-shell made, read with e2fsprogs' debugfs
    let cat = Command::new("debugfs").args(["-R", "cat /marker.txt"]).arg(&raw).output().expect("run debugfs");
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout).trim(),
        "QEMU-RS-E2E-PROVISIONED",
        "the marker is not in the artifact's file system: {}",
        String::from_utf8_lossy(&cat.stderr)
    );
    // the serial console went to the default serial_log in the output directory
    let serial = fs::read_to_string(out.join("serial.log")).expect("serial.log in the output directory");
    assert!(serial.contains("testguest: READY"), "{serial}");
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());
    assert!(qemu_pids_mentioning(&out.display().to_string()).is_empty(), "QEMU outlived the build");
}

#[test]
fn iso_build_over_vnc_writes_raw_output_and_checksums() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let b = Build::new();
    let out = b.out_dir();
    let extra = r#"
  boot_command_transport = "vnc"
  format                 = "raw"
  output_checksum        = "sha256"
"#;
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.iso"]
  provisioner "qemu-rs-shell" {{
    inline = ["echo \"marker: $(cat /run/testguest/marker)\""]
  }}
}}
"#,
        source = iso_source(&guest, &out, "e2e-vnc-marker", extra)
    );
    let o = b.run_ok(&template);
    assert!(o.text.contains("Typing the boot command over VNC"), "{}", o.text);
    assert!(o.text.contains("marker: e2e-vnc-marker"), "keys typed over VNC did not reach the guest:\n{}", o.text);
    let image = out.join("e2e.img");
    assert_eq!(image_format(&image), "raw");
    let sums = fs::read_to_string(out.join("SHA256SUMS")).expect("SHA256SUMS");
    assert!(sums.lines().any(|l| l.ends_with("  e2e.img")), "{sums}");
    let check = Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&out).output().expect("sha256sum");
    assert!(check.status.success(), "sha256sum -c: {}", String::from_utf8_lossy(&check.stdout));
}

/// `<waitForSerial>`: typing starts when GRUB's menu shows on the serial console, with no
/// `boot_wait`; the `sshkey=` typed afterwards is the only way in, so the build proves the wait
/// let every key reach the entry editor.
#[test]
fn iso_build_waits_for_the_menu_on_the_serial_console() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let b = Build::new();
    let out = b.out_dir();
    let source = iso_source(&guest, &out, "e2e-waitfor-marker", "")
        .replace(r#"boot_wait    = "3s""#, r#"boot_wait    = "-1s""#)
        .replace(
            r#"boot_command = ["e<down>"#,
            r#"boot_command = ["<waitForSerial \"executed automatically in\" 2m>e<down>"#,
        );
    assert!(source.contains("<waitForSerial") && source.contains(r#""-1s""#), "{source}");
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.iso"]
  provisioner "qemu-rs-shell" {{
    inline = ["echo \"marker: $(cat /run/testguest/marker)\""]
  }}
}}
"#
    );
    let o = b.run_ok(&template);
    assert!(o.text.contains("marker: e2e-waitfor-marker"), "{}", o.text);
    assert!(!o.text.contains("Waiting 3s for boot"), "{}", o.text);
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());
}

#[test]
fn cloud_image_build_with_cd_content_and_acpi_shutdown_boots_again() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let (pubkey, key) = guest_key(&guest);
    let b = Build::new();
    let out = b.out_dir();
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    inline = [
      "echo \"source: $(cat /run/testguest/source) host: $(hostname)\"",
      "mkdir -p /mnt/tgdata && mount \"$(findfs LABEL=tgdata)\" /mnt/tgdata",
      "echo QEMU-RS-CLOUD-MARKER > /mnt/tgdata/e2e.txt",
      "umount /mnt/tgdata && sync",
    ]
  }}
}}
"#,
        source = cloud_source(&guest.join("testguest.qcow2"), &out, &pubkey, &key, "")
    );
    let o = b.run_ok(&template);
    let t = &o.text;
    assert!(t.contains("source: cidata:"), "the guest was not configured by the cd_content CD:\n{t}");
    assert!(t.contains("host: e2e-cloud"), "{t}");
    // the default accelerator: KVM only when it works, else TCG with a warning saying why
    if t.contains("Starting QEMU (TCG)") {
        assert!(t.contains("KVM is not usable"), "auto fell back to TCG without a warning:\n{t}");
    } else {
        assert!(t.contains("Starting QEMU (KVM)"), "{t}");
    }
    assert!(!t.contains("Gracefully halting"), "{t}");
    assert!(!t.contains("forcibly") && !t.contains("SIGKILL"), "the ACPI shutdown was not clean:\n{t}");
    // the compressed base became an overlay during the build; the artifact stands alone
    assert!(t.contains("copy-on-read overlay"), "{t}");
    // ... and qemu-rs wrote the compressed artifact itself, copying the base's unchanged clusters
    assert!(t.contains("copied compressed from the base image"), "{t}");
    let image = out.join("cloud.qcow2");
    assert_eq!(image_format(&image), "qcow2");
    let info = Command::new("qemu-img").arg("info").arg(&image).output().expect("run qemu-img info");
    assert!(!String::from_utf8_lossy(&info.stdout).contains("backing file"), "the artifact has a backing file");
    let raw = qcow2_to_raw(b.env.path(), &image);
    let grep = Command::new("grep").args(["-c", "-a", "QEMU-RS-CLOUD-MARKER"]).arg(&raw).output().expect("grep");
    assert_eq!(String::from_utf8_lossy(&grep.stdout).trim(), "1", "the provisioned file is not in the artifact");
    fs::remove_file(&raw).expect("remove the raw copy");

    // the artifact boots again and still holds the file
    let b2 = Build::new();
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    inline = [
      "mkdir -p /mnt/tgdata && mount \"$(findfs LABEL=tgdata)\" /mnt/tgdata",
      "echo \"found: $(cat /mnt/tgdata/e2e.txt)\"",
      "umount /mnt/tgdata",
    ]
  }}
}}
"#,
        source = cloud_source(&image, &b2.out_dir(), &pubkey, &key, "")
    );
    let o = b2.run_ok(&template);
    assert!(o.text.contains("found: QEMU-RS-CLOUD-MARKER"), "{}", o.text);
}

#[test]
fn a_kernel_panic_or_a_guest_without_sshd_fails_fast_with_the_serial_tail() {
    let guest = guest_dir();
    let _slot = guest_slot();
    // (kernel parameter, ssh_timeout, what the serial tail shows, longest acceptable build)
    let cases = [
        ("panic", "5m", "Kernel panic", Duration::from_secs(60)),
        ("nossh", "20s", "testguest", Duration::from_secs(90)),
    ];
    for (param, timeout, expect, longest) in cases {
        let b = Build::new();
        let out = b.out_dir();
        let template = sshless_template(&guest, &out, &format!("e<down><down><end> {param}<f10>"), timeout);
        let o = b.run(&template);
        assert!(!o.success, "{param}: the build succeeded:\n{}", o.text);
        assert!(o.text.contains(expect), "{param}: the error lacks the serial tail ({expect:?}):\n{}", o.text);
        // a panic is seen when it happens, not after ssh_timeout; nossh waits out its 20 s only
        assert!(o.elapsed < longest, "{param}: took {:?}", o.elapsed);
        if param == "nossh" {
            assert!(o.text.contains("ssh_timeout") || o.text.contains("Timeout"), "{}", o.text);
        }
        assert!(!out.exists(), "{param}: the output directory was left behind");
        assert!(qemu_pids_mentioning(&out.display().to_string()).is_empty(), "{param}: QEMU outlived the build");
        assert!(b.leftover_temp_files().is_empty(), "{param}: temp files left: {:?}", b.leftover_temp_files());
    }
}

/// A build of the test guest ISO that types `boot_command` and waits up to `ssh_timeout` for an
/// SSH password login the guest never offers (its `panic` and `nossh` parameters).
fn sshless_template(guest: &Path, out: &Path, boot_command: &str, ssh_timeout: &str) -> String {
    format!(
        r#"
source "qemu-rs" "sshless" {{
  iso_url          = {iso}
  iso_checksum     = "none"
  output_directory = {out}
  disk_size        = "64M"
  accelerator      = "tcg"
  memory           = 512
  boot_wait        = "3s"
  boot_command     = ["{boot_command}"]
  ssh_username     = "root"
  ssh_password     = "packer"
  ssh_timeout      = "{ssh_timeout}"
}}
build {{ sources = ["source.qemu-rs.sshless"] }}
"#,
        iso = hcl_str(&guest.join("testguest.iso")),
        out = hcl_str(out)
    )
}

/// Starts a build that waits for SSH forever (`nossh`) and returns Packer once QEMU runs.
fn start_hanging_build(b: &Build, guest: &Path) -> Child {
    let template = sshless_template(guest, &b.out_dir(), "e<down><down><end> nossh<f10>", "30m");
    let child = b.spawn_interactive(&template, &[]);
    let out = b.out_dir().display().to_string();
    assert!(
        wait_until(Duration::from_secs(120), || !qemu_pids_mentioning(&out).is_empty()),
        "QEMU never started\n{}",
        b.diagnostics()
    );
    sleep(Duration::from_secs(3));
    child
}

/// Starts a build whose provisioner sleeps, and returns Packer once the provisioner runs.
fn start_provisioning_build(b: &Build, guest: &Path) -> Child {
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.iso"]
  provisioner "qemu-rs-shell" {{
    inline = ["echo provisioning-has-started", "sleep 600"]
  }}
}}
"#,
        source = iso_source(guest, &b.out_dir(), "e2e-cancel", "")
    );
    let child = b.spawn_interactive(&template, &[]);
    assert!(
        wait_until(Duration::from_secs(300), || fs::read_to_string(b.log_path())
            .is_ok_and(|l| l.contains("provisioning-has-started"))),
        "the provisioner never started\n{}",
        b.diagnostics()
    );
    sleep(Duration::from_secs(1));
    child
}

#[test]
fn cancelling_or_killing_the_plugin_leaves_nothing_behind() {
    let guest = guest_dir();
    let _slot = guest_slot();

    // Ctrl-C during provisioning: everything is gone within 10 s
    let b = Build::new();
    let mut packer = start_provisioning_build(&b, &guest);
    let out = b.out_dir().display().to_string();
    ctrl_c(&packer);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = packer.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = packer.kill();
            panic!("packer did not stop within 60 s of SIGINT\n{}", b.diagnostics());
        }
        sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    assert!(start.elapsed() < Duration::from_secs(10), "cancel took {:?}", start.elapsed());
    assert!(qemu_pids_mentioning(&out).is_empty(), "QEMU survived the cancel");
    assert!(!b.out_dir().exists(), "the output directory survived the cancel");
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());

    // SIGTERM to Packer alone during boot (a CI runner's timeout): QEMU gets no signal from a
    // terminal here, so the builder's cleanup must end it
    let b = Build::new();
    let mut packer = start_hanging_build(&b, &guest);
    let out = b.out_dir().display().to_string();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(packer.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM packer");
    let stopped = wait_until(Duration::from_secs(10), || packer.try_wait().expect("wait").is_some());
    if !stopped {
        let _ = packer.kill();
    }
    let _ = packer.wait();
    assert!(stopped, "packer did not stop within 10 s of SIGTERM\n{}", b.diagnostics());
    assert!(qemu_pids_mentioning(&out).is_empty(), "QEMU survived SIGTERM");
    assert!(!b.out_dir().exists(), "the output directory survived SIGTERM");

    // SIGKILL of the plugin during boot: QEMU dies with it (PR_SET_PDEATHSIG)
    let b = Build::new();
    let mut packer = start_hanging_build(&b, &guest);
    let out = b.out_dir().display().to_string();
    let plugins = descendants_named(packer.id(), "packer-builder-qemu-rs");
    assert_eq!(plugins.len(), 1, "cannot find the plugin process under packer ({})", packer.id());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(plugins[0].0 as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL the plugin");
    let gone = wait_until(Duration::from_secs(10), || qemu_pids_mentioning(&out).is_empty());
    let removed = wait_until(Duration::from_secs(10), || !b.out_dir().exists());
    let _ = packer.kill();
    let _ = packer.wait();
    assert!(gone, "QEMU outlived the SIGKILLed plugin");
    assert!(removed, "the output directory survived the SIGKILLed plugin (its janitor did not remove it)");

    // SIGKILL of Packer core itself (the OOM killer): the plugin notices that its parent is gone
    // and exits, and QEMU with it. `packer` may be panicwrap's parent process, whose child is the
    // core that started the plugin, so the plugin's own parent is killed.
    let b = Build::new();
    let mut packer = start_hanging_build(&b, &guest);
    let out = b.out_dir().display().to_string();
    let plugins = descendants_named(packer.id(), "packer-builder-qemu-rs");
    assert_eq!(plugins.len(), 1, "cannot find the plugin process under packer ({})", packer.id());
    let (plugin, core) = plugins[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(core as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL packer core");
    let plugin_gone = wait_until(Duration::from_secs(10), || !Path::new(&format!("/proc/{plugin}")).exists());
    let qemu_gone = wait_until(Duration::from_secs(10), || qemu_pids_mentioning(&out).is_empty());
    if !plugin_gone {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(plugin as i32), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = packer.kill();
    let _ = packer.wait();
    assert!(plugin_gone, "the plugin outlived the SIGKILLed Packer");
    assert!(qemu_gone, "QEMU outlived the SIGKILLed Packer");
    // the plugin cancelled the build and ran its cleanups before exiting
    assert!(
        !b.out_dir().exists(),
        "the output directory survived the SIGKILLed Packer; plugin log:\n{}",
        fs::read_to_string(b.env.path().join("plugin.log")).unwrap_or_default()
    );
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());
}
