//! `warm_start` end to end with real Packer and QEMU (TCG), on the test guest's ISO build:
//!
//! 1. a first build misses the cache, runs cold and saves the machine when SSH answers;
//! 2. the same build again restores it: no boot command, the same boot of the guest (the SSH host
//!    keys its dropbear made at the first connection, before the save),
//!    and an artifact whose file tree and marker are what the cold build's provisioning made;
//! 3. a changed `boot_command` misses the cache and makes a second entry;
//! 4. a damaged entry is found, discarded with a warning, and the build goes on cold;
//! 5. Ctrl-C during a warm build leaves the cache intact (the next build restores from it) and no
//!    QEMU behind;
//!
//! and on the cloud-image build (`disk_image`, a cidata CD, the user's own key, ACPI shutdown) a
//! rebuild restores and its artifact holds what its provisioner wrote; the user's key is not
//! copied into the cache.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use builder_qemu::driver::warm_cache::WarmCache;
use qemu_rs_tests::e2e::{cloud_source, ctrl_c, guest_key, iso_source, qemu_pids_mentioning, wait_until, Build};
use qemu_rs_tests::{guest_dir, guest_slot, qcow2_to_raw};

const PROVISION: &str = r#"
  provisioner "qemu-rs-shell" {
    inline = [
      "echo \"boot-id: $(cat /etc/dropbear/*host_key* | md5sum)\"",
      "mke2fs -F -L warm /dev/vda >/dev/null",
      "mkdir -p /mnt/w && mount -t ext2 /dev/vda /mnt/w",
      "mkdir -p /mnt/w/etc/app && echo setting=1 > /mnt/w/etc/app/app.conf",
      "echo WARM-START-MARKER > /mnt/w/marker.txt",
      "umount /mnt/w && sync",
    ]
  }
"#;

fn template(guest: &Path, out: &Path, boot_extra: &str) -> String {
    let source = iso_source(guest, out, "warm-start", "  warm_start = true\n");
    // a changed boot command: one more kernel argument before booting
    let source = source.replace("<f10>", &format!("{boot_extra}<f10>"));
    format!("{source}\nbuild {{\n  sources = [\"source.qemu-rs.iso\"]\n{PROVISION}}}\n")
}

fn boot_id(text: &str) -> String {
    text.lines()
        .find_map(|l| l.split("boot-id: ").nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no boot id in the output:\n{text}"))
}

/// The artifact's file tree (`debugfs ls -p`: mode, owner, name, size; no times, no inode numbers)
/// and file contents.
fn tree(b: &Build, image: &Path) -> String {
    let raw = qcow2_to_raw(b.env.path(), image);
    let mut out = String::new();
    for req in ["ls -p /", "ls -p /etc", "ls -p /etc/app", "cat /marker.txt", "cat /etc/app/app.conf"] {
        let o = Command::new("debugfs").args(["-R", req]).arg(&raw).output().expect("run debugfs");
        // ls -p: /inode/mode/uid/gid/name/size/ — inode numbers of directories are random (ext2's
        // allocator spreads directories over block groups), the rest is the tree
        let text = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<String> = text
            .lines()
            .map(|l| match l.strip_prefix('/').and_then(|r| r.split_once('/')) {
                Some((_inode, rest)) if req.starts_with("ls") => rest.to_string(),
                _ => l.to_string(),
            })
            .collect();
        out.push_str(&format!("{req}:\n{}\n", lines.join("\n")));
    }
    let _ = fs::remove_file(raw);
    out
}

fn entries(cache: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(cache)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn warm_start_saves_restores_misses_and_survives_damage_and_ctrl_c() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let b = Build::new();
    let out = b.out_dir();
    let cache_dir = b.env.path().join("packer_cache/qemu-rs-warm");
    let t = template(&guest, &out, "");

    // 1. cold, saved
    let cold = b.run_ok(&t);
    assert!(cold.text.contains("Warm start: no saved machine for these inputs"), "{}", cold.text);
    assert!(cold.text.contains("Warm start: machine saved"), "{}", cold.text);
    assert!(cold.text.contains("Typing the boot command"), "{}", cold.text);
    let cold_boot = boot_id(&cold.text);
    let cold_tree = tree(&b, &out.join("e2e.img"));
    assert!(cold_tree.contains("WARM-START-MARKER") && cold_tree.contains("setting=1"), "{cold_tree}");
    let first = entries(&cache_dir);
    assert_eq!(first.len(), 1, "{first:?}");
    for f in fs::read_dir(cache_dir.join(&first[0])).unwrap().flatten() {
        let mode = f.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", f.path().display());
    }
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());

    // 2. warm: restored, same boot of the guest, same artifact
    fs::remove_dir_all(&out).unwrap();
    let warm = b.run_ok(&t);
    assert!(warm.text.contains("Warm start: restoring the machine saved"), "{}", warm.text);
    assert!(warm.text.contains("Warm start: machine restored"), "{}", warm.text);
    assert!(!warm.text.contains("Typing the boot command"), "{}", warm.text);
    assert!(!warm.text.contains("Warm start: machine saved"), "{}", warm.text);
    assert_eq!(boot_id(&warm.text), cold_boot, "the restored guest booted again:\n{}", warm.text);
    assert_eq!(tree(&b, &out.join("e2e.img")), cold_tree, "the warm artifact differs from the cold one");
    eprintln!("cold build {:?}, warm build {:?}", cold.elapsed, warm.elapsed);
    assert!(warm.elapsed < cold.elapsed, "warm {:?} not faster than cold {:?}", warm.elapsed, cold.elapsed);

    // 3. a changed boot command misses and makes a second entry
    fs::remove_dir_all(&out).unwrap();
    let changed = b.run_ok(&template(&guest, &out, " quiet"));
    assert!(changed.text.contains("Warm start: no saved machine"), "{}", changed.text);
    assert_ne!(boot_id(&changed.text), cold_boot);
    assert_eq!(entries(&cache_dir).len(), 2);

    // 4. a damaged entry: discarded with a warning, the build goes on cold and saves anew
    let state = cache_dir.join(&first[0]).join("state.mig");
    let mut bytes = fs::read(&state).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&state, bytes).unwrap();
    fs::remove_dir_all(&out).unwrap();
    let damaged = b.run_ok(&t);
    assert!(damaged.text.contains("is damaged"), "{}", damaged.text);
    assert!(damaged.text.contains("Typing the boot command"), "{}", damaged.text);
    assert!(damaged.text.contains("Warm start: machine saved"), "{}", damaged.text);
    let damaged_boot = boot_id(&damaged.text);
    assert_ne!(damaged_boot, cold_boot);

    // 5. Ctrl-C during a warm build: the cache stays intact, no QEMU left
    fs::remove_dir_all(&out).unwrap();
    let packer = b.spawn_interactive(&t, &[]);
    let started = Instant::now();
    let packer_out = b.env.path().join("packer.out");
    assert!(
        wait_until(Duration::from_secs(120), || fs::read_to_string(&packer_out)
            .is_ok_and(|l| l.contains("Warm start: machine restored"))),
        "the warm build did not restore\n{}",
        fs::read_to_string(&packer_out).unwrap_or_default()
    );
    sleep(Duration::from_millis(500));
    ctrl_c(&packer);
    let o = b.wait_at_most(packer, started, Duration::from_secs(120));
    assert!(!o.success, "{}", o.text);
    let needle = out.display().to_string();
    assert!(wait_until(Duration::from_secs(10), || qemu_pids_mentioning(&needle).is_empty()), "QEMU outlived Ctrl-C");
    assert!(!out.exists(), "the output directory survived the cancel");
    let cache = WarmCache::new(&cache_dir);
    assert!(cache.open(&first[0]).expect("the entry is intact after Ctrl-C").is_some());
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());

    // and the next build restores from it
    let again = b.run_ok(&t);
    assert!(again.text.contains("Warm start: machine restored"), "{}", again.text);
    assert_eq!(boot_id(&again.text), damaged_boot);
    assert!(entries(&cache_dir).iter().all(|e| !e.starts_with(".staging")));
}

#[test]
fn warm_start_of_a_cloud_image_build_with_the_users_key() {
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
      "echo \"boot-id: $(cat /etc/dropbear/*host_key* | md5sum)\"",
      "mkdir -p /mnt/tgdata && mount \"$(findfs LABEL=tgdata)\" /mnt/tgdata",
      "echo QEMU-RS-WARM-CLOUD-MARKER > /mnt/tgdata/e2e.txt",
      "umount /mnt/tgdata && sync",
    ]
  }}
}}
"#,
        source = cloud_source(&guest.join("testguest.qcow2"), &out, &pubkey, &key, "  warm_start = true\n")
    );
    let cold = b.run_ok(&template);
    assert!(cold.text.contains("Warm start: machine saved"), "{}", cold.text);
    let cache_dir = b.env.path().join("packer_cache/qemu-rs-warm");
    let entry = entries(&cache_dir).pop().expect("an entry");
    assert!(!cache_dir.join(&entry).join("ssh_key").exists(), "the user's private key was copied into the cache");
    fs::remove_dir_all(&out).unwrap();
    let warm = b.run_ok(&template);
    assert!(warm.text.contains("Warm start: machine restored"), "{}", warm.text);
    assert_eq!(boot_id(&warm.text), boot_id(&cold.text));
    let raw = qcow2_to_raw(b.env.path(), &out.join("cloud.qcow2"));
    let grep = Command::new("grep").args(["-c", "-a", "QEMU-RS-WARM-CLOUD-MARKER"]).arg(&raw).output().expect("grep");
    assert_eq!(String::from_utf8_lossy(&grep.stdout).trim(), "1", "the provisioned file is not in the artifact");
    eprintln!("cloud: cold build {:?}, warm build {:?}", cold.elapsed, warm.elapsed);
}
