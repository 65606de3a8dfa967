//! Core-side tests of the real plugin binary `packer-plugin-qemu-rs`: started like Packer
//! starts it (magic cookie, TMPDIR), handshake line parsed, one yamux connection over the unix
//! socket, RPC driven from Rust.
//!
//! The binary is built on demand with `cargo build --workspace --all-targets` (what `make test`
//! builds: a no-op when up to date) and found next to this test's own target directory.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use common::serve_ui_and_comm;
use packer_sdk::hcl::{GobFlavor, ObjectSpec};
use packer_sdk::plugin::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, NOT_BY_PACKER_MESSAGE};
use packer_sdk::rpc::codec::{self, map, Value};
use packer_sdk::rpc::mux::{Role, Session};
use packer_sdk::rpc::netrpc::{Client, RpcError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        // The whole workspace with all targets, as `make test` builds it: a build of the plugin
        // package alone unifies the dependencies' features differently and compiles ~20 crates
        // (regex, tokio, hyper, russh …) anew in a fresh clone (75 s) — a no-op after `make test`'s build.
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args(["build", "-q", "--locked", "--workspace", "--all-targets", "--manifest-path"]).arg(&manifest);
        // `cargo test` gives this process the package's CARGO_MANIFEST_DIR, CARGO_PKG_* …; a build
        // that inherits them sees a changed environment for crates whose build scripts track one of
        // them (ring does) and recompiles them and the plugin.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            let set_by_cargo_test = key.starts_with("CARGO_PKG_")
                || matches!(
                    key.as_str(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_BIN_NAME"
                );
            if set_by_cargo_test {
                cargo.env_remove(&key);
            }
        }
        let status = cargo.status().expect("running cargo build");
        assert!(status.success(), "building the plugin binary failed");
        // target/debug/deps/protocol_binary-HASH -> target/debug/packer-plugin-qemu-rs
        let exe = std::env::current_exe().unwrap();
        let bin = exe.parent().unwrap().parent().unwrap().join("packer-plugin-qemu-rs");
        assert!(bin.exists(), "{} not found", bin.display());
        bin
    })
}

/// A started plugin process; killed with SIGKILL on drop, like Packer does.
struct Plugin {
    child: Child,
    line: String,
    socket: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Plugin {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env("TMPDIR", tmp.path())
        .env_remove("PACKER_RS_HANDSHAKE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let line = line.trim().to_string();
    let socket = PathBuf::from(line.rsplit('|').next().unwrap());
    assert!(socket.starts_with(tmp.path()), "socket {} not in TMPDIR", socket.display());
    let name = socket.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("packer-plugin"), "{name}");
    Plugin { child, line, socket, _tmp: tmp }
}

async fn connect(p: &Plugin) -> (Session, Client) {
    let stream = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
    let core = Session::new(stream, Role::Client);
    let root = Client::new(core.dial(0).await.unwrap());
    (core, root)
}

#[test]
fn describe_json() {
    let out = Command::new(binary()).arg("describe").output().unwrap();
    assert!(out.status.success());
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(d["api_version"], "x5.0");
    assert_eq!(d["protocol_version"], "v2");
    assert_eq!(d["post_processors"], serde_json::json!(["convert"]));
    assert_eq!(d["datasources"], serde_json::json!([]));
    assert!(d["provisioners"].as_array().unwrap().contains(&serde_json::json!("shell")));
    assert!(d["builders"].is_array());
}

#[test]
fn refuses_to_run_without_the_cookie() {
    let out =
        Command::new(binary()).args(["start", "provisioner", "shell"]).env_remove(MAGIC_COOKIE_KEY).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains(NOT_BY_PACKER_MESSAGE));
}

#[test]
fn usage_errors_exit_1() {
    let out = Command::new(binary()).args(["start", "provisioner", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown provisioner"));
}

fn shell_spec_fields(spec: &ObjectSpec) -> bool {
    spec.get("inline").is_some() && spec.get("packer_build_name").is_some()
}

/// Modern form: `start provisioner [--protobuf] shell` → `5|0|unix|PATH`, gob (module
/// flavour) or protobuf ConfigSpec; Prepare errors are method errors; Provision runs the shell
/// provisioner through the core-side Ui and Communicator; the process exits when the
/// connection closes and removes its socket.
#[tokio::test]
async fn modern_provisioner_session() {
    let mut p = start(binary(), &["start", "provisioner", "shell"], &[]);
    assert!(p.line.starts_with("5|0|unix|/"), "{}", p.line);
    let (core, root) = connect(&p).await;
    assert!(!p.socket.exists(), "the socket file is removed once connected");

    let spec = root.call("Provisioner.ConfigSpec", Value::Nil).await.unwrap();
    let bin = codec::get(&spec, "ConfigSpec").and_then(Value::as_slice).unwrap();
    let decoded = ObjectSpec::from_gob(bin).unwrap();
    assert!(shell_spec_fields(&decoded));

    let err = root.call("Provisioner.Prepare", map(vec![("Configs", Value::Array(vec![map(vec![])]))])).await;
    assert!(matches!(&err, Err(RpcError::Remote(m)) if m.contains("error(s) occurred")), "{err:?}");

    let scratch = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "inline": ["echo hello-from-$((6*7))"],
        "remote_folder": scratch.path().to_string_lossy(),
    });
    let args = map(vec![("Configs", Value::Array(vec![codec::from_json(&config)]))]);
    root.call("Provisioner.Prepare", args).await.unwrap();

    let (id, ui) = serve_ui_and_comm(&core, None);
    let args = map(vec![("GeneratedData", map(vec![("ID", Value::from("vm"))])), ("StreamID", Value::from(id))]);
    root.call("Provisioner.Provision", args).await.unwrap();
    let lines = ui.lines();
    assert!(lines.iter().any(|l| l.contains("hello-from-42")), "{lines:?}");

    // Closing the connection ends the process.
    core.close().await;
    let status = tokio::task::spawn_blocking(move || {
        let s = p.child.wait().unwrap();
        drop(p);
        s
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn protobuf_config_spec_and_forced_legacy_handshake() {
    let p = start(binary(), &["start", "provisioner", "--protobuf", "shell"], &[]);
    assert!(p.line.starts_with("5|0|unix|"));
    let (_core, root) = connect(&p).await;
    let spec = root.call("Provisioner.ConfigSpec", Value::Nil).await.unwrap();
    let bin = codec::get(&spec, "ConfigSpec").and_then(Value::as_slice).unwrap().to_vec();
    // protobuf Spec{object = 1}: field 1, wire type 2; not a gob stream.
    assert_eq!(bin[0], 0x0a);
    assert!(ObjectSpec::from_gob(&bin).is_err());

    let p = start(binary(), &["start", "provisioner", "shell"], &[("PACKER_RS_HANDSHAKE", "3")]);
    assert!(p.line.starts_with("5|unix|/"), "{}", p.line);
    assert_eq!(p.line.split('|').count(), 3);
}

/// Packer 1.6.6 form: started with no arguments under a legacy name → 3-field line and gob
/// with the Debian vendored ObjectSpec name.
#[tokio::test]
async fn legacy_name_session_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("packer-provisioner-qemu-rs-shell");
    std::os::unix::fs::symlink(binary(), &link).unwrap();
    let p = start(&link, &[], &[]);
    assert!(p.line.starts_with("5|unix|/"), "{}", p.line);
    assert_eq!(p.line.split('|').count(), 3);
    let (core, root) = connect(&p).await;
    let spec = root.call("Provisioner.ConfigSpec", Value::Nil).await.unwrap();
    let bin = codec::get(&spec, "ConfigSpec").and_then(Value::as_slice).unwrap().to_vec();
    let decoded = ObjectSpec::from_gob(&bin).unwrap();
    assert!(shell_spec_fields(&decoded));
    assert_eq!(bin, decoded.to_gob(GobFlavor::DebianVendored), "Debian 1.6.6 flavour");

    // Cancel while Provision is pending: the long command is interrupted and Provision fails.
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("started");
    let config = serde_json::json!({
        "inline": [format!("touch {}; sleep 600", marker.display())],
        "remote_folder": scratch.path().to_string_lossy(),
    });
    root.call("Provisioner.Prepare", map(vec![("Configs", Value::Array(vec![codec::from_json(&config)]))]))
        .await
        .unwrap();
    let (id, _ui) = serve_ui_and_comm(&core, None);
    let provision = tokio::spawn({
        let root = root.clone();
        async move {
            let args = map(vec![("GeneratedData", Value::Map(vec![])), ("StreamID", Value::from(id))]);
            root.call("Provisioner.Provision", args).await
        }
    });
    while !marker.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    root.call("Provisioner.Cancel", Value::Nil).await.unwrap();
    let r = provision.await.unwrap();
    assert!(matches!(r, Err(RpcError::Remote(_))), "{r:?}");
    drop(dir);
}

/// A raw yamux PING from "core" is answered with an ACK echoing its value, and SIGINT/SIGTERM
/// do not end the plugin.
#[tokio::test]
async fn keepalive_ping_answered_and_signals_ignored() {
    let p = start(binary(), &["start", "provisioner", "shell"], &[]);
    let pid = nix::unistd::Pid::from_raw(p.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut raw = tokio::net::UnixStream::connect(&p.socket).await.unwrap();
    raw.write_all(&[0, 2, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]).await.unwrap();
    loop {
        let mut hdr = [0u8; 12];
        raw.read_exact(&mut hdr).await.unwrap();
        let len = u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
        if hdr[1] == 0 {
            let mut skip = vec![0u8; len as usize];
            raw.read_exact(&mut skip).await.unwrap();
        }
        if hdr[1] == 2 && u16::from_be_bytes([hdr[2], hdr[3]]) & 2 != 0 {
            assert_eq!(len, 0xdeadbeef);
            break;
        }
    }
    // Garbage ends the connection (and the process) without a panic.
    raw.write_all(&[0xff; 64]).await.unwrap();
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest).await;
    let mut p = p;
    let status = tokio::task::spawn_blocking(move || {
        let s = p.child.wait().unwrap();
        drop(p);
        s
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1), "a failed connection exits 1, not a panic (101)");
}

/// The input artifact core serves to `PostProcessor.PostProcess` in the tests below.
struct InputDisk(std::path::PathBuf);

#[async_trait::async_trait]
impl packer_sdk::artifact::Artifact for InputDisk {
    fn builder_id(&self) -> String {
        "test.builder".into()
    }
    fn files(&self) -> Vec<String> {
        vec![self.0.display().to_string()]
    }
    fn id(&self) -> String {
        "disk".into()
    }
    fn string(&self) -> String {
        "a test disk".into()
    }
    fn state(&self, key: &str) -> Option<serde_json::Value> {
        (key == "diskPaths").then(|| serde_json::json!([self.0.display().to_string()]))
    }
    async fn destroy(&self) -> Result<(), String> {
        Ok(())
    }
}

/// `post-processor "qemu-rs-convert"` both ways Packer starts it (legacy file name
/// `packer-post-processor-qemu-rs-convert`, 3-field handshake and the Debian gob; `start
/// post-processor convert`, 4 fields): ConfigSpec, Configure errors as method errors naming the
/// option, PostProcess reading core's artifact and Ui on the stream it names and serving the new
/// artifact on the stream it answers.
#[tokio::test]
async fn post_processor_sessions_legacy_and_modern() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("packer-post-processor-qemu-rs-convert");
    std::os::unix::fs::symlink(binary(), &link).unwrap();
    let disk = dir.path().join("disk.qcow2");
    let out = Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("4M").status().unwrap();
    assert!(out.success());
    for (program, args, fields) in
        [(link.as_path(), &[][..], 3), (binary(), &["start", "post-processor", "convert"][..], 4)]
    {
        let p = start(program, args, &[]);
        assert_eq!(p.line.split('|').count(), fields, "{}", p.line);
        let (core, root) = connect(&p).await;
        let spec = root.call("PostProcessor.ConfigSpec", Value::Nil).await.unwrap();
        let bin = codec::get(&spec, "ConfigSpec").and_then(Value::as_slice).unwrap().to_vec();
        let decoded = ObjectSpec::from_gob(&bin).unwrap();
        assert!(decoded.get("formats").is_some() && decoded.get("packer_build_name").is_some());

        let bad = serde_json::json!({"formats": ["ova"]});
        let err = root
            .call("PostProcessor.Configure", map(vec![("Configs", Value::Array(vec![codec::from_json(&bad)]))]))
            .await;
        assert!(matches!(&err, Err(RpcError::Remote(m)) if m.contains("formats") && m.contains("ova")), "{err:?}");

        let target = dir.path().join(format!("out{fields}"));
        let config = serde_json::json!({"formats": ["raw"], "output_directory": target.display().to_string()});
        root.call("PostProcessor.Configure", map(vec![("Configs", Value::Array(vec![codec::from_json(&config)]))]))
            .await
            .unwrap();
        let artifact: std::sync::Arc<dyn packer_sdk::rpc::netrpc::Service> = std::sync::Arc::new(
            packer_sdk::rpc::artifact::ArtifactServer::new(std::sync::Arc::new(InputDisk(disk.clone()))),
        );
        let (id, ui) = serve_ui_and_comm(&core, Some(("Artifact", artifact)));
        let reply = root.call("PostProcessor.PostProcess", Value::from(id)).await.unwrap();
        assert_eq!(codec::get(&reply, "Err"), Some(&Value::Nil), "{reply:?}");
        assert_eq!(codec::get(&reply, "Keep"), Some(&Value::Boolean(false)));
        assert_eq!(codec::get(&reply, "ForceOverride"), Some(&Value::Boolean(false)));
        let sid = codec::u32_of(codec::get(&reply, "StreamId").unwrap(), "StreamId").unwrap();
        assert_ne!(sid, 0);
        let made = Client::new(core.dial(sid).await.unwrap());
        let builder_id = made.call("Artifact.BuilderId", Value::Nil).await.unwrap();
        assert_eq!(codec::string_of(&builder_id, "id").unwrap(), "qemu-rs.post-processor.convert");
        let files = codec::to_json(&made.call("Artifact.Files", Value::Nil).await.unwrap());
        let raw = target.join("disk.raw");
        assert_eq!(
            files,
            serde_json::json!([raw.display().to_string(), target.join("SHA256SUMS").display().to_string()])
        );
        assert_eq!(std::fs::metadata(&raw).unwrap().len(), 4 << 20);
        assert!(ui.lines().iter().any(|l| l.contains("Converting")), "{:?}", ui.lines());
        core.close().await;
    }
}
