//! End-to-end build of a legacy JSON template with real Packer (Debian's 1.6.6), the `qemu-rs`
//! builder and `qemu-rs-shell` from this workspace and the test guest, under TCG: user variables
//! and Packer's template functions (`user`, `timestamp`, `isotime`, `build_name`, `template_dir`,
//! `build`) in several options — `output_directory`, `vm_name`, `disk_size`, `memory`, `headless`,
//! `http_content`, `boot_command`, `qemuargs`, `shutdown_command` and the provisioner's `inline` —
//! are rendered by the plugin (config decoding for most, the builder at run time for the data in
//! `boot_command`/`qemuargs`), and the rendered values are found in the output directory's name,
//! the artifact's name, the artifact's file system, the guest's kernel command line, the QEMU
//! command line and Packer's output.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qemu_rs_tests::{guest_dir, guest_slot, qcow2_to_raw, run_with_deadline, PackerEnv};
use serde_json::json;

/// Hang guard for one `packer build` (a healthy one takes 20–40 s under TCG).
const PACKER_DEADLINE: Duration = Duration::from_secs(600);

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// `date -u -d @secs +%Y%m%d`: the UTC day of a Unix time, as Go's layout `20060102` prints it.
fn utc_day(secs: i64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y%m%d"]).output().expect("run date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn debugfs_cat(raw: &Path, file: &str) -> String {
    let out = Command::new("debugfs").args(["-R", &format!("cat {file}")]).arg(raw).output().expect("run debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn json_template_with_user_variables_and_functions_builds() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let env = PackerEnv::new();
    let tmpdir = env.path().join("tmp");
    fs::create_dir_all(&tmpdir).expect("create TMPDIR");
    let marker = "json-e2e-marker-0815";
    let mount = "mkdir -p /mnt/e2e && mount -t ext2 /dev/vda /mnt/e2e";
    let template = json!({
        "variables": {
            "disk_size": "256M",
            "memory": "512",
            "headless": "true",
            "marker": marker,
            "iso": guest.join("testguest.iso").display().to_string(),
        },
        "builders": [{
            "type": "qemu-rs",
            "name": "jsonvm",
            "iso_url": "{{ user `iso` }}",
            "iso_checksum": "none",
            "output_directory": "{{ template_dir }}/out-{{ build_name }}-{{ timestamp }}",
            "vm_name": "{{ build_name }}-{{ isotime `20060102` }}.img",
            "disk_size": "{{ user `disk_size` }}",
            "memory": "{{ user `memory` }}",
            "headless": "{{ user `headless` }}",
            "accelerator": "tcg",
            "disk_interface": "virtio",
            "net_device": "virtio-net",
            "http_content": {
                "/authorized_keys": "# no key: the builder's temporary key comes through sshkey=\n",
                "/marker": "{{ user `marker` }}"
            },
            "boot_wait": "3s",
            "boot_command": [
                "e<down><down><end> seed=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ sshkey={{ .SSHPublicKey | urlquery }}",
                " e2e_build={{ build_name | upper }}<f10>"
            ],
            "qemuargs": [["-name", "{{ .Name }}-{{ user `marker` }}"]],
            "temporary_key_pair_type": "ed25519",
            "ssh_username": "root",
            "ssh_timeout": "5m",
            "shutdown_command": format!("{mount} && echo 'shutdown: {{{{ user `marker` }}}}' >> /mnt/e2e/marker.txt && umount /mnt/e2e && sync && poweroff"),
        }],
        "provisioners": [{
            "type": "qemu-rs-shell",
            "inline": [
                "echo \"prov: {{ user `marker` }} {{ build_name }} host={{ build `Host` }} ts={{ timestamp }}\"",
                "echo \"cmdline: $(cat /proc/cmdline)\"",
                "echo \"seed marker: $(cat /run/testguest/marker)\"",
                "mke2fs -F -L e2e /dev/vda >/dev/null",
                mount,
                "echo 'provisioned: {{ user `marker` }} by {{ build_name }} ({{ build_type }})' > /mnt/e2e/marker.txt",
                "umount /mnt/e2e && sync",
            ]
        }]
    });
    let path = env.write("template.json", &serde_json::to_string_pretty(&template).expect("json"));
    let log = env.path().join("packer.log");
    let mut cmd = env.packer(&["build", "-color=false"]);
    cmd.arg(&path).env("TMPDIR", &tmpdir).env("PACKER_LOG", "1").env("PACKER_LOG_PATH", &log);
    let before = unix_now();
    let out = run_with_deadline(&mut cmd, PACKER_DEADLINE);
    let after = unix_now();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let log_text = fs::read_to_string(&log).unwrap_or_default();
    if !out.status.success() {
        let tail: Vec<&str> = log_text.lines().rev().take(80).collect();
        panic!(
            "packer build failed:\n{text}\nPACKER_LOG (tail):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    // output_directory = "{{ template_dir }}/out-{{ build_name }}-{{ timestamp }}"
    let outs: Vec<String> = fs::read_dir(env.path())
        .expect("read the template directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("out-jsonvm-"))
        .collect();
    assert_eq!(outs.len(), 1, "one output directory next to the template: {outs:?}");
    let ts: i64 = outs[0]["out-jsonvm-".len()..].parse().unwrap_or_else(|_| panic!("no timestamp in {}", outs[0]));
    assert!((before - 5..=after).contains(&ts), "timestamp {ts} is not the build's time ({before}..{after})");
    let out_dir = env.path().join(&outs[0]);

    // vm_name = "{{ build_name }}-{{ isotime `20060102` }}.img", isotime from the same InitTime as timestamp.
    let image = out_dir.join(format!("jsonvm-{}.img", utc_day(ts)));
    assert!(
        image.is_file(),
        "no artifact {}; the output directory holds {:?}",
        image.display(),
        fs::read_dir(&out_dir).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>())
    );

    // boot_command: data rendered by the builder, build_name | upper by config decoding.
    assert!(
        text.contains("e2e_build=JSONVM"),
        "the rendered boot command is not on the guest's kernel command line:\n{text}"
    );
    // http_content value from a user variable, served to the guest.
    assert!(text.contains(&format!("seed marker: {marker}")), "{text}");
    // the provisioner's inline: functions at Prepare, build data at provision time.
    let prov = text.lines().find(|l| l.contains("prov: ")).unwrap_or_else(|| panic!("no provisioner output:\n{text}"));
    assert!(prov.contains(&format!("prov: {marker} jsonvm host=")), "{prov}");
    assert!(!prov.contains("host= ") && !prov.contains("{{"), "build `Host` was not rendered: {prov}");
    // qemuargs: "{{ .Name }}" (vm_name) at run time, the user variable at Prepare.
    let name_arg = format!("-name jsonvm-{}.img-{marker}", utc_day(ts));
    assert!(log_text.contains(&name_arg), "no {name_arg:?} in the QEMU command line logged by the plugin");

    // The artifact's file system: written by the provisioner, appended to by shutdown_command.
    let raw = qcow2_to_raw(env.path(), &image);
    let marker_txt = debugfs_cat(&raw, "/marker.txt");
    assert_eq!(
        marker_txt.lines().collect::<Vec<_>>(),
        vec![format!("provisioned: {marker} by jsonvm (qemu-rs)").as_str(), &format!("shutdown: {marker}")],
        "{marker_txt}"
    );
}
