//! `make release` (`scripts/release.sh`): the archive, the sums and their signature are what Packer's
//! installer and the integrations registry expect, they verify with nothing but the public key, and
//! the binary from the archive — installed as `packer plugins install --path` lays it out, and under
//! Packer 1.6.6's names — runs a real build.
//!
//! The script packages the debug plugin `make test` has built (`RELEASE_BINARY`: a test cannot run
//! cargo in the target directory its own `cargo test` holds); the signing key is a throwaway one made
//! with Debian's `gpg` in a temporary `GNUPGHOME`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use packer_acctest::run_ok as run;
use qemu_rs_tests::e2e::{cloud_source, guest_key, Build};
use qemu_rs_tests::{guest_dir, guest_slot, plugin_binary, workspace_root};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home).arg("--batch");
    c
}

/// A new GNUPGHOME holding a throwaway ed25519 signing key without passphrase; its fingerprint.
fn throwaway_key(dir: &Path) -> (PathBuf, String) {
    let home = dir.join("gnupg");
    fs::create_dir_all(&home).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
    run(gpg(&home)
        .args(["--passphrase", "", "--quick-gen-key", "qemu-rs release test <release@test.invalid>"])
        .args(["ed25519", "sign", "never"]));
    let list = run(gpg(&home).args(["--with-colons", "--list-secret-keys"]));
    let text = String::from_utf8_lossy(&list.stdout);
    let fpr = text.lines().find_map(|l| l.strip_prefix("fpr:")).expect("a fingerprint").trim_matches(':').to_string();
    (home, fpr)
}

fn release(dist: &Path, version: &str, gnupg: &Path, fpr: &str) -> Output {
    Command::new(workspace_root().join("scripts/release.sh"))
        .env("VERSION", version)
        .env("DIST", dist)
        .env("RELEASE_BINARY", plugin_binary())
        .env("RELEASE_TARGETS", "x86_64-unknown-linux-gnu")
        .env("GPG_FINGERPRINT", fpr)
        .env("GNUPGHOME", gnupg)
        .output()
        .expect("run scripts/release.sh")
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn release_files_verify_and_the_released_binary_builds_an_image() {
    let tmp = tempfile::Builder::new().prefix("qemu-rs-release-").tempdir().unwrap();
    let (gnupg, fpr) = throwaway_key(tmp.path());
    let dist = tmp.path().join("dist");

    let out = release(&dist, VERSION, &gnupg, &fpr);
    assert!(out.status.success(), "release.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));

    // exactly the registry's file names
    let base = format!("packer-plugin-qemu-rs_v{VERSION}_x5.0_linux_amd64");
    let zip = format!("{base}.zip");
    let sums = format!("packer-plugin-qemu-rs_v{VERSION}_SHA256SUMS");
    let mut names: Vec<String> =
        fs::read_dir(&dist).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec![sums.clone(), format!("{sums}.sig"), zip.clone()]);

    // the sums name the zip with its digest
    let sums_text = fs::read_to_string(dist.join(&sums)).unwrap();
    assert_eq!(sums_text, format!("{}  {zip}\n", sha256(&dist.join(&zip))));
    run(Command::new("sha256sum").arg("-c").arg(&sums).current_dir(&dist));

    // the signature verifies with only the public key, and not for altered sums
    let public = run(gpg(&gnupg).args(["--armor", "--export", &fpr])).stdout;
    let verifier = tmp.path().join("verifier");
    fs::create_dir_all(&verifier).unwrap();
    let key_file = tmp.path().join("release-key.asc");
    fs::write(&key_file, public).unwrap();
    run(gpg(&verifier).arg("--import").arg(&key_file));
    run(gpg(&verifier).arg("--verify").arg(dist.join(format!("{sums}.sig"))).arg(dist.join(&sums)));
    let altered = tmp.path().join("altered");
    fs::write(&altered, sums_text.replace(&zip, "other.zip")).unwrap();
    let bad = gpg(&verifier).arg("--verify").arg(dist.join(format!("{sums}.sig"))).arg(&altered).output().unwrap();
    assert!(!bad.status.success(), "altered sums verified");

    // the zip holds one executable, named like the zip, the plugin itself
    let list = run(Command::new("unzip").arg("-Z1").arg(dist.join(&zip)));
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), base);
    let unpacked = tmp.path().join("unpacked");
    run(Command::new("unzip").arg("-q").arg(dist.join(&zip)).arg("-d").arg(&unpacked));
    let bin = unpacked.join(&base);
    assert_eq!(sha256(&bin), sha256(&plugin_binary()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&bin).unwrap().permissions().mode() & 0o111, 0o111, "not executable");
    let describe = run(Command::new(&bin).arg("describe").env("PACKER_PLUGIN_MAGIC_COOKIE", COOKIE));
    let d: serde_json::Value = serde_json::from_slice(&describe.stdout).expect("describe prints JSON");
    assert_eq!(d["version"], VERSION);
    assert_eq!(d["api_version"], "x5.0");

    // a version the binary does not report is refused, and leaves no files of that version
    let wrong = release(&dist, "9.9.9", &gnupg, &fpr);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains(&format!("describe says version '{VERSION}', not 9.9.9")));
    assert!(!fs::read_dir(&dist).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains("9.9.9")));

    // `packer plugins install --path` layout (modern Packer), made by scripts/install-plugin.sh
    let modern = tmp.path().join("plugins-modern");
    run(Command::new(workspace_root().join("scripts/install-plugin.sh"))
        .arg(&bin)
        .arg("modern")
        .env("PACKER_PLUGIN_PATH", &modern));
    let installed = modern.join("github.com/qemu-rs/qemu-rs").join(&base);
    assert_eq!(sha256(&installed), sha256(&bin));
    let sum_file = fs::read_to_string(modern.join("github.com/qemu-rs/qemu-rs").join(format!("{base}_SHA256SUM")))
        .expect("the installed binary's _SHA256SUM");
    assert_eq!(sum_file.trim(), sha256(&bin));

    // Packer 1.6.6 with the binary from the archive: a cloud-image build of the test guest with the
    // archive's provisioner too
    let guest = guest_dir();
    let (pubkey, key) = guest_key(&guest);
    let _slot = guest_slot();
    let b = Build::with_plugin(&bin);
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    inline = ["echo released-plugin-ran-$((6 * 7))"]
  }}
}}
"#,
        source = cloud_source(&guest.join("testguest.qcow2"), &b.out_dir(), &pubkey, &key, "")
    );
    let o = b.run_ok(&template);
    assert!(o.text.contains("released-plugin-ran-42"), "{}", o.text);
    assert!(b.out_dir().join("cloud.qcow2").is_file(), "{}", o.text);
}
