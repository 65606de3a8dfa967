//! End-to-end builds with real Packer (1.6.6) and QEMU (TCG) of the machine, disk and media
//! options taken over from Packer's qemu builder:
//!
//! - UEFI through `firmware` + `use_pflash` (OVMF's code image alone), an SMP topology and `vga`,
//!   the base image read over HTTP in place (`iso_skip_cache`) — the guest sees EFI and 2 CPUs,
//!   and nothing lands in the Packer cache;
//! - `disk_additional_size` disks the guest writes to, in the artifact with the user's
//!   `qemu_img_args.convert`, the base image downloaded to `iso_target_path` with
//!   `iso_target_extension`.
//!
//! The base image is served by a small HTTP server of this file that answers byte ranges (the
//! SDK's seed server does not, and QEMU's curl driver needs them). Guests boot one at a time.

use std::fs;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qemu_rs_tests::{guest_dir, guest_slot, hcl_str, qcow2_to_raw, run_with_deadline, PackerEnv};

/// Hang guard for one `packer build` (a healthy one takes 20–40 s under TCG).
const PACKER_DEADLINE: Duration = Duration::from_secs(600);

/// A static file server on 127.0.0.1 answering `GET`/`HEAD` with `Accept-Ranges: bytes` and single
/// `Range: bytes=a-b` requests (what QEMU's curl driver sends). Written here because no crate of
/// the workspace serves ranges; it runs on a thread for the life of the test process.
struct RangeServer {
    port: u16,
    range_requests: Arc<AtomicUsize>,
}

impl RangeServer {
    fn start(root: PathBuf) -> RangeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test HTTP server");
        let port = listener.local_addr().expect("local addr").port();
        let range_requests = Arc::new(AtomicUsize::new(0));
        let counter = range_requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &root, &counter);
                });
            }
        });
        RangeServer { port, range_requests }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

/// Serves requests on one connection (keep-alive) until the client closes it.
fn serve(stream: TcpStream, root: &Path, ranges: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(());
        }
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("range") {
                    range = v
                        .trim()
                        .strip_prefix("bytes=")
                        .and_then(|r| r.split_once('-'))
                        .map(|(a, b)| (a.parse::<u64>().unwrap_or(0), b.trim().parse::<u64>().ok()));
                }
            }
        }
        let mut parts = request.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let file = root.join(path.trim_start_matches('/'));
        let Ok(mut f) = fs::File::open(&file) else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let len = f.metadata()?.len();
        let (start, end, status) = match range {
            Some((a, b)) => {
                ranges.fetch_add(1, Ordering::SeqCst);
                (a, b.unwrap_or(len - 1).min(len - 1), "206 Partial Content")
            }
            None => (0, len.saturating_sub(1), "200 OK"),
        };
        let n = end + 1 - start;
        let mut head = format!(
            "HTTP/1.1 {status}\r\nAccept-Ranges: bytes\r\nContent-Length: {n}\r\nContent-Type: application/octet-stream\r\n"
        );
        if range.is_some() {
            head.push_str(&format!("Content-Range: bytes {start}-{end}/{len}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if method == "GET" {
            f.seek(SeekFrom::Start(start))?;
            std::io::copy(&mut (&mut f).take(n), &mut out)?;
        }
    }
}

/// Runs `packer build` on `template` in `env` and fails with Packer's output and log tail on failure.
fn build_ok(env: &PackerEnv, template: &str) -> String {
    let path = env.write("build.pkr.hcl", template);
    let log = env.path().join("packer.log");
    let tmp = env.path().join("tmp");
    fs::create_dir_all(&tmp).expect("TMPDIR");
    let mut cmd = env.packer(&["build", "-color=false"]);
    cmd.arg(&path).env("TMPDIR", &tmp).env("PACKER_LOG", "1").env("PACKER_LOG_PATH", &log);
    let out = run_with_deadline(&mut cmd, PACKER_DEADLINE);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let log = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("packer build failed:\n{text}\nPACKER_LOG (tail):\n{}", tail.join("\n"));
    }
    text
}

/// `qemu-img info --output=json` of `image`.
fn image_info(image: &Path) -> serde_json::Value {
    let out = Command::new("qemu-img").args(["info", "--output=json"]).arg(image).output().expect("qemu-img info");
    assert!(out.status.success(), "qemu-img info {}: {}", image.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("qemu-img info JSON")
}

/// The cidata seed of the test guest as `cd_content`, and the SSH settings for its key.
fn cidata_and_ssh(guest: &Path) -> String {
    let pubkey = fs::read_to_string(guest.join("id_ed25519.pub")).expect("test key").trim().to_string();
    format!(
        r##"
  cd_label = "cidata"
  cd_content = {{
    "meta-data" = "local-hostname: e2e-machine\n"
    "user-data" = "#cloud-config\nssh_authorized_keys:\n  - {pubkey}\n"
  }}
  ssh_username         = "root"
  ssh_private_key_file = {key}
  ssh_timeout          = "5m"
  shutdown_command     = "poweroff"
"##,
        key = hcl_str(&guest.join("id_ed25519"))
    )
}

#[test]
fn uefi_through_firmware_pflash_with_smp_and_the_image_read_in_place() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let server = RangeServer::start(guest.clone());
    let env = PackerEnv::new();
    let out = env.path().join("output");
    let template = format!(
        r##"
source "qemu-rs" "uefi" {{
  iso_url          = "{url}"
  iso_checksum     = "none"
  iso_skip_cache   = true
  disk_image       = true
  disk_size        = "128M"
  output_directory = {out}
  vm_name          = "uefi.qcow2"
  accelerator      = "tcg"
  memory           = 512
  firmware         = "/usr/share/OVMF/OVMF_CODE.fd"
  use_pflash       = true
  sockets          = 1
  cores            = 2
  vga              = "std"
{ssh}
}}
build {{
  sources = ["source.qemu-rs.uefi"]
  provisioner "qemu-rs-shell" {{
    inline = [
      "echo \"efi: $(ls -d /sys/firmware/efi 2>/dev/null || echo none)\"",
      "echo \"cpus online: $(cat /sys/devices/system/cpu/online)\"",
    ]
  }}
}}
"##,
        url = server.url("testguest.qcow2"),
        out = hcl_str(&out),
        ssh = cidata_and_ssh(&guest),
    );
    let t = build_ok(&env, &template);
    assert!(t.contains("efi: /sys/firmware/efi"), "the guest did not boot through UEFI:\n{t}");
    assert!(t.contains("cpus online: 0-1"), "the guest does not see the 2 vCPUs of the topology:\n{t}");
    assert!(t.contains("in place") && t.contains("nothing is downloaded"), "{t}");
    assert!(server.range_requests.load(Ordering::SeqCst) > 0, "nothing was read from the server by byte ranges");
    let cache = env.path().join("packer_cache");
    let cached: Vec<_> =
        fs::read_dir(&cache).map(|rd| rd.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(cached.is_empty(), "iso_skip_cache still cached {cached:?}");
    let serial = fs::read_to_string(out.join("serial.log")).expect("serial.log");
    assert!(serial.contains("efi: EFI v2"), "no EFI boot on the serial console");
    assert_eq!(image_info(&out.join("uefi.qcow2"))["format"], "qcow2");
}

#[test]
fn additional_disks_are_written_by_the_guest_and_in_the_artifact() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let server = RangeServer::start(guest.clone());
    let env = PackerEnv::new();
    let out = env.path().join("output");
    let downloads = env.path().join("isos");
    let manifest = env.path().join("manifest.json");
    let template = format!(
        r##"
source "qemu-rs" "disks" {{
  iso_url              = "{url}"
  iso_checksum         = "file:{sums}"
  iso_target_path      = {downloads}
  iso_target_extension = "qcow2"
  disk_image           = true
  disk_size            = "128M"
  output_directory     = {out}
  vm_name              = "disks"
  accelerator          = "tcg"
  memory               = 512
  disk_additional_size = ["64M", "32M"]
  disk_cache           = "unsafe"
  qemu_img_args {{
    convert = ["-o", "cluster_size=131072"]
  }}
{ssh}
}}
build {{
  sources = ["source.qemu-rs.disks"]
  provisioner "qemu-rs-shell" {{
    inline = [
      "echo \"sizes: $(cat /sys/block/vdb/size) $(cat /sys/block/vdc/size)\"",
      "echo B1-EXTRA-DISK-MARKER | dd of=/dev/vdb bs=512 seek=2048 conv=notrunc 2>/dev/null",
      "sync",
    ]
  }}
  post-processor "manifest" {{
    output = {manifest}
  }}
}}
"##,
        url = server.url("testguest.qcow2"),
        sums = server.url("SHA256SUMS"),
        downloads = hcl_str(&downloads),
        manifest = hcl_str(&manifest),
        out = hcl_str(&out),
        ssh = cidata_and_ssh(&guest),
    );
    let t = build_ok(&env, &template);
    // 64M and 32M in 512-byte sectors, as the guest sees them
    assert!(t.contains("sizes: 131072 65536"), "the guest does not see the additional disks:\n{t}");
    // the download went to iso_target_path with iso_target_extension
    let got: Vec<PathBuf> = fs::read_dir(&downloads).expect("iso_target_path").flatten().map(|e| e.path()).collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].extension().and_then(|e| e.to_str()), Some("qcow2"));
    for (name, size) in [("disks", 128u64 << 20), ("disks-1", 64 << 20), ("disks-2", 32 << 20)] {
        let info = image_info(&out.join(name));
        assert_eq!(info["format"], "qcow2", "{name}");
        assert_eq!(info["virtual-size"], size, "{name}");
        assert_eq!(info["cluster-size"], 131072, "qemu_img_args.convert did not reach {name}");
    }
    let raw = qcow2_to_raw(env.path(), &out.join("disks-1"));
    let bytes = fs::read(&raw).expect("raw copy");
    assert_eq!(&bytes[2048 * 512..2048 * 512 + 20], b"B1-EXTRA-DISK-MARKER", "the guest's write is not in disks-1");
    // every disk is a file of the artifact (what post-processors get)
    let m: serde_json::Value = serde_json::from_str(&fs::read_to_string(&manifest).expect("manifest")).unwrap();
    let files: Vec<&str> =
        m["builds"][0]["files"].as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
    for name in ["disks", "disks-1", "disks-2"] {
        assert!(files.iter().any(|f| f.ends_with(&format!("/{name}"))), "{name} is not in the artifact: {files:?}");
    }
}
