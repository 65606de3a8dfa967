//! Four builds at once with real Packer (1.6.6) and the test guest under TCG: two ISO builds and two
//! cloud-image builds (`images/testguest/testguest-{iso,disk}-qemu-rs.pkr.hcl`), all fetching their
//! media from one HTTP server of this test into one shared `PACKER_CACHE_DIR`. All succeed, each
//! file is downloaded once (the download lock), no two builds use the same port (HTTP server, VNC,
//! SSH forward) and each build's output directory and log only name its own files.
//!
//! The guest lock is taken once for the whole test: these are the only guests booting meanwhile.
//! `tests/chaos/run.py --parallel 8` (`make parallel`) does the same with eight builds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qemu_rs_tests::{guest_dir, guest_slot, workspace_root, PackerEnv};

/// Hang guard for the four builds together (one takes 20–40 s alone; four share two cores).
const DEADLINE: Duration = Duration::from_secs(1500);

/// Serves files of `dir` at `/NAME` over HTTP/1.0 and counts the GETs per name.
fn serve_counting(dir: PathBuf) -> (u16, Arc<Mutex<HashMap<String, usize>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the media server");
    let port = listener.local_addr().expect("local addr").port();
    let gets = Arc::new(Mutex::new(HashMap::new()));
    let counts = gets.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let dir = dir.clone();
            let counts = counts.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone the connection"));
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    return;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut parts = request.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let name = path.trim_start_matches('/');
                let body = (!name.contains('/')).then(|| std::fs::read(dir.join(name)).ok()).flatten();
                let Some(body) = body else {
                    let _ = conn.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                    return;
                };
                if method == "GET" {
                    *counts.lock().unwrap().entry(name.to_string()).or_insert(0) += 1;
                }
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = conn.write_all(head.as_bytes());
                if method == "GET" {
                    let _ = conn.write_all(&body);
                }
            });
        }
    });
    (port, gets)
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a sha256sum line").to_string()
}

/// One of the four builds.
struct Build {
    env: PackerEnv,
    kind: &'static str,
    child: Child,
}

impl Build {
    fn out_dir(&self) -> PathBuf {
        self.env.path().join("output")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.env.path().join("packer.log")).unwrap_or_default()
    }
    fn stdout(&self) -> String {
        std::fs::read_to_string(self.env.path().join("stdout.txt")).unwrap_or_default()
    }
    /// The ports this build's log names: HTTP server, VNC and SSH forward.
    fn ports(&self) -> Vec<u16> {
        let text = self.log();
        let mut ports = Vec::new();
        // (QEMU's `-vnc 127.0.0.1:0,to=100` is a range: the port taken is in the later messages)
        for marker in
            ["HTTP server on port ", "vnc://127.0.0.1:", "SSH forward 127.0.0.1:", "VNC server running on 127.0.0.1:"]
        {
            for piece in text.split(marker).skip(1) {
                let digits: String = piece.chars().take_while(|c| c.is_ascii_digit()).collect();
                if let Ok(p) = digits.parse::<u16>() {
                    ports.push(p);
                }
            }
        }
        ports.sort_unstable();
        ports.dedup();
        ports
    }
}

/// The test guest template of `kind` with its media fetched from `url` and checked by sha256.
fn template(kind: &str, url: &str, sha256: &str) -> String {
    let (file, media) = if kind == "iso" {
        ("testguest-iso-qemu-rs.pkr.hcl", "testguest.iso")
    } else {
        ("testguest-disk-qemu-rs.pkr.hcl", "testguest.qcow2")
    };
    let src = std::fs::read_to_string(workspace_root().join("images/testguest").join(file)).expect("read template");
    let old_url = format!("iso_url          = \"${{var.guest_dir}}/{media}\"");
    assert!(src.contains(&old_url), "{file} no longer has {old_url}");
    assert!(src.contains("iso_checksum     = \"none\""), "{file} no longer has iso_checksum none");
    // four TCG guests share the host's cores: they boot (and GRUB reads typed keys) several times
    // slower than one, so the templates' ssh_timeout of 5m is raised
    assert!(src.contains("ssh_timeout          = \"5m\""), "{file} no longer has ssh_timeout 5m");
    src.replace(&old_url, &format!("iso_url          = \"{url}\""))
        .replace("iso_checksum     = \"none\"", &format!("iso_checksum     = \"sha256:{sha256}\""))
        .replace("ssh_timeout          = \"5m\"", "ssh_timeout          = \"30m\"")
}

#[test]
fn four_builds_at_once_share_one_download_and_nothing_else() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let (port, gets) = serve_counting(guest.clone());
    let shared = tempfile::Builder::new().prefix("qemu-rs-parallel-cache-").tempdir().expect("cache dir");
    let mut builds = Vec::new();
    for (i, kind) in ["iso", "cloud", "iso", "cloud"].into_iter().enumerate() {
        let media = if kind == "iso" { "testguest.iso" } else { "testguest.qcow2" };
        let env = PackerEnv::new();
        let tpl = env.write(
            "build.pkr.hcl",
            &template(kind, &format!("http://127.0.0.1:{port}/{media}"), &sha256_of(&guest.join(media))),
        );
        let tmp = env.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("TMPDIR");
        let stdout = std::fs::File::create(env.path().join("stdout.txt")).expect("stdout file");
        let mut cmd = env.packer(&["build", "-color=false"]);
        cmd.arg(format!("-var=guest_dir={}", guest.display()))
            .arg(format!("-var=output_dir={}", env.path().join("output").display()))
            .arg(&tpl)
            .env("PACKER_CACHE_DIR", shared.path())
            .env("TMPDIR", &tmp)
            // GRUB reads keys several times slower with four guests on the host: typed at the
            // default pace they overflow the keyboard buffer and are lost
            .env("PACKER_KEY_INTERVAL", "500ms")
            .env("PACKER_LOG", "1")
            .env("PACKER_LOG_PATH", env.path().join("packer.log"))
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("dup"))
            .stderr(stdout);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start packer build {i}: {e}"));
        builds.push(Build { env, kind, child });
    }

    let start = Instant::now();
    let mut statuses = vec![None; builds.len()];
    while statuses.iter().any(Option::is_none) && start.elapsed() < DEADLINE {
        for (b, s) in builds.iter_mut().zip(statuses.iter_mut()) {
            if s.is_none() {
                *s = b.child.try_wait().expect("wait for packer");
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for (i, (b, s)) in builds.iter_mut().zip(&statuses).enumerate() {
        if s.is_none() {
            let _ = b.child.kill();
            let _ = b.child.wait();
            panic!("build {i} ({}) still ran after {DEADLINE:?}:\n{}", b.kind, b.stdout());
        }
    }
    for (i, (b, s)) in builds.iter().zip(&statuses).enumerate() {
        assert!(s.is_some_and(|s| s.success()), "build {i} ({}) failed:\n{}", b.kind, b.stdout());
        let artifact = if b.kind == "iso" { "testguest-iso.qcow2" } else { "testguest-disk.qcow2" };
        assert!(b.out_dir().join(artifact).is_file(), "build {i} has no {artifact}:\n{}", b.stdout());
    }

    // each file fetched once, whatever the number of builds using it
    let gets = gets.lock().unwrap().clone();
    assert_eq!(gets.get("testguest.iso"), Some(&1), "GETs per file: {gets:?}");
    assert_eq!(gets.get("testguest.qcow2"), Some(&1), "GETs per file: {gets:?}");

    // no port used by two builds
    let mut owner: HashMap<u16, usize> = HashMap::new();
    for (i, b) in builds.iter().enumerate() {
        let ports = b.ports();
        assert!(ports.len() >= 2, "build {i}: expected its VNC and SSH ports in its log, found {ports:?}");
        for p in ports {
            if let Some(j) = owner.insert(p, i) {
                panic!("port {p} used by builds {j} and {i}");
            }
        }
    }

    // outputs and logs stay apart
    for (i, b) in builds.iter().enumerate() {
        let log = b.log();
        for (j, other) in builds.iter().enumerate() {
            if i != j {
                let theirs = other.env.path().display().to_string();
                assert!(!log.contains(&theirs), "the log of build {i} names build {j}'s directory {theirs}");
            }
        }
    }
}
