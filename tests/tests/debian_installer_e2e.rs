//! The installer path with a real distribution: Debian 12's installer, from an ISO assembled from
//! Debian's `debian-installer-12-netboot-amd64` package (`images/debian-installer/build-iso.sh`, with
//! the ISOLINUX prompt of Debian's netinst ISO), driven by the template users copy,
//! `images/debian-installer/debian-12-preseed.pkr.hcl`: the boot command typed at ISOLINUX's `boot:`
//! prompt starts the automated install, the installer fetches the preseed file (which carries the
//! build's key, rendered from `http_content`) from the build's HTTP server, configures the network
//! from it and asks the Debian mirror for the release; then the build is interrupted as a user would
//! (Ctrl-C) and must leave nothing behind.
//!
//! It stops there because a full install needs the installer's own packages (`.udeb`) from a Debian
//! mirror, which the mirror this project's machines reach does not serve (every `.udeb` is a 404);
//! `make debian-installer` runs the whole install where the mirror is complete.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use qemu_rs_tests::e2e::{ctrl_c, qemu_pids_mentioning, wait_until, Build};
use qemu_rs_tests::{built_images, guest_slot, workspace_root};

/// The ISO made by `images/debian-installer/build-iso.sh` (`DEBIAN_INSTALLER_DIR` overrides its directory).
fn installer_dir() -> PathBuf {
    built_images(
        "DEBIAN_INSTALLER_DIR",
        "images/debian-installer/out",
        &["debian-12-netboot-amd64.iso", "SHA256SUMS"],
        "debian-installer-iso",
    )
}

/// The serial console without terminal escape sequences (the installer draws dialogs on it).
fn console_text(path: &std::path::Path) -> String {
    let raw = String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte; charset: ESC ( X
            match chars.next() {
                Some('[') => {
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                }
                Some('(') | Some(')') => {
                    chars.next();
                }
                _ => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn debian_installer_takes_the_typed_preseed_url_and_a_ctrl_c_leaves_nothing() {
    let dir = installer_dir();
    let _slot = guest_slot();
    let template = fs::read_to_string(workspace_root().join("images/debian-installer/debian-12-preseed.pkr.hcl"))
        .expect("read the installer template");
    let b = Build::new();
    // the template reads http/preseed.cfg next to itself (path.root): copied along, as a user would
    fs::create_dir_all(b.env.path().join("http")).expect("http dir");
    fs::copy(workspace_root().join("images/debian-installer/http/preseed.cfg"), b.env.path().join("http/preseed.cfg"))
        .expect("copy the preseed file");
    let vars = [
        format!("iso_url={}", dir.join("debian-12-netboot-amd64.iso").display()),
        format!("iso_checksum=file:{}", dir.join("SHA256SUMS").display()),
        format!("output_dir={}", b.out_dir().display()),
    ]
    .map(|v| format!("-var={v}"));
    let started = Instant::now();
    let mut packer = b.spawn_interactive(&template, &vars);
    let serial = b.out_dir().join("serial.log");
    let plugin_log = b.plugin_log_path();

    // The installer asks for the preseed file the boot command named, then, configured by it
    // (network, host name, mirror: priority=critical asks nothing), for the mirror's release files.
    let mut exited = None;
    let fetched = wait_until(Duration::from_secs(600), || {
        exited = packer.try_wait().expect("wait for packer");
        exited.is_some()
            || fs::read_to_string(&plugin_log).unwrap_or_default().contains("GET /preseed.cfg (http_content) 200")
                && console_text(&serial).contains("Downloading Release files")
    });
    assert!(
        exited.is_none(),
        "packer ended ({exited:?}) before the installer got going:\n{}\n{}",
        fs::read_to_string(b.env.path().join("packer.out")).unwrap_or_default(),
        b.diagnostics()
    );
    let console = console_text(&serial);
    let tail: String = console.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(
        fetched,
        "the installer did not fetch the preseed file and go on to the mirror within 10 minutes\n\
         serial console (tail):\n{tail}\n{}",
        b.diagnostics()
    );
    eprintln!("installer at the mirror {:.0} s after packer build started", started.elapsed().as_secs_f64());
    assert!(
        !console.contains("Failed to retrieve the preconfiguration file"),
        "the installer could not read the preseed file:\n{tail}"
    );

    ctrl_c(&packer);
    let outcome = b.wait_at_most(packer, started, started.elapsed() + Duration::from_secs(60));
    assert!(!outcome.success, "an interrupted build succeeded:\n{}", outcome.text);
    assert!(outcome.text.contains("cancelled"), "Packer does not report the cancel:\n{}", outcome.text);
    let out = b.out_dir().display().to_string();
    assert!(qemu_pids_mentioning(&out).is_empty(), "QEMU survived the Ctrl-C");
    assert!(!b.out_dir().exists(), "the output directory survived the Ctrl-C");
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());
}
