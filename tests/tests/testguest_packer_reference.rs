//! Runs the reference templates `images/testguest/testguest-iso.pkr.hcl` and `testguest-disk.pkr.hcl` with
//! Packer 1.6.6's BUILT-IN `qemu` builder under TCG: the baseline the benchmark compares qemu-rs with. Each
//! build uses a temporary output directory and `PACKER_CACHE_DIR`, and its artifact is checked on the host
//! without mounts (`qemu-img convert` to raw, then the bytes the provisioner wrote).
//!
//! The images come from `make testguest`; set `TESTGUEST_DIR` to use another directory than
//! `images/testguest/out`. When they are missing the tests fail and say so. Guests boot one at a time
//! (a lock file shared with `testguest_boot`).

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use qemu_rs_tests::{guest_dir, guest_slot, qcow2_to_raw, run_with_deadline};

/// Hang guard for one `packer build` (a healthy one takes 15–40 s under TCG).
const PACKER_DEADLINE: Duration = Duration::from_secs(600);

fn repo_dir() -> PathBuf {
    fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).expect("canonicalize the workspace root")
}

/// `packer build` of one reference template into a temp dir; returns (output dir, packer's stdout, temp dir).
fn packer_build(template: &str, artifact: &str) -> (PathBuf, String, tempfile::TempDir) {
    let dir = guest_dir();
    let _slot = guest_slot();
    let tmp = tempfile::Builder::new().prefix("testguest-packer-").tempdir().expect("create a temp dir");
    let out_dir = tmp.path().join("output");
    let serial = tmp.path().join("serial.log");
    let packer_log = tmp.path().join("packer.log");
    let template = repo_dir().join("images/testguest").join(template);
    let mut cmd = Command::new("packer");
    cmd.current_dir(tmp.path())
        .env("PACKER_CACHE_DIR", tmp.path().join("packer_cache"))
        .env("CHECKPOINT_DISABLE", "1")
        .env("PACKER_LOG", "1")
        .env("PACKER_LOG_PATH", &packer_log)
        .args(["build", "-color=false", "-var"])
        .arg(format!("guest_dir={}", dir.display()))
        .arg("-var")
        .arg(format!("output_dir={}", out_dir.display()))
        .arg("-var")
        .arg(format!("serial_log={}", serial.display()))
        .arg(&template);
    let out = run_with_deadline(&mut cmd, PACKER_DEADLINE);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let log = fs::read_to_string(&packer_log).unwrap_or_default();
        let log_tail: String =
            log.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        panic!(
            "packer build {} failed ({}):\n{stdout}\n{}\nserial console:\n{}\nPACKER_LOG (tail):\n{log_tail}",
            template.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&serial).unwrap_or_default()
        );
    }
    let image = out_dir.join(artifact);
    assert!(image.is_file(), "packer succeeded but {} is missing:\n{stdout}", image.display());
    let info = Command::new("qemu-img").arg("info").arg(&image).output().expect("run qemu-img info");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("file format: qcow2"), "the artifact is not qcow2:\n{info}");
    (image, stdout, tmp)
}

#[test]
fn builtin_qemu_builds_the_iso_template() {
    let (image, stdout, tmp) = packer_build("testguest-iso.pkr.hcl", "testguest-iso.qcow2");
    // the provisioner printed the marker the guest fetched from Packer's HTTP server (seed=URL)
    assert!(stdout.contains("marker: testguest-seed-marker"), "no seed marker in the build output:\n{stdout}");
    let raw = qcow2_to_raw(tmp.path(), &image);
    let mut f = File::open(&raw).expect("open the raw artifact");
    f.seek(SeekFrom::Start(2048 * 512)).expect("seek");
    let mut buf = [0u8; 22];
    f.read_exact(&mut buf).expect("read the raw artifact");
    assert_eq!(&buf, b"TESTGUEST-PROVISIONED\n", "the provisioner's bytes are not at sector 2048 of /dev/vda");
    // 20 MB of random data were written too, so the compacted image cannot be tiny
    let size = fs::metadata(&image).expect("stat the artifact").len();
    assert!(size > 20_000_000, "artifact is only {size} bytes; the 20 MB the provisioner wrote are missing");
}

#[test]
fn builtin_qemu_builds_the_disk_template() {
    let (image, _stdout, tmp) = packer_build("testguest-disk.pkr.hcl", "testguest-disk.qcow2");
    // the provisioner's file lives in the tgdata ext2 partition; find its bytes without mounting
    let raw = qcow2_to_raw(tmp.path(), &image);
    let grep = Command::new("grep").args(["-c", "-a", "TESTGUEST-PROVISIONED"]).arg(&raw).output().expect("run grep");
    assert_eq!(
        String::from_utf8_lossy(&grep.stdout).trim(),
        "1",
        "the file the provisioner wrote to the tgdata partition is not in the artifact"
    );
}
