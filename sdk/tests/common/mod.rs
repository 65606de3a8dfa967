//! Shared pieces of the protocol tests: a real local communicator (runs `sh -c` and moves files
//! on this machine) and the core-side services Packer core would serve.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use packer_sdk::communicator::{CommError, CommandHandle, Communicator, FileInfo, Reader, RemoteCommand, Writer};
use packer_sdk::rpc::codec::{self, Value};
use packer_sdk::rpc::communicator::{CommunicatorClient, CommunicatorServer};
use packer_sdk::rpc::mux::Session;
use packer_sdk::rpc::netrpc::{serve, Client, Registry, Service};
use packer_sdk::rpc::ui::{RecordingUi, UiClient, UiServer};
use packer_sdk::ui::Ui;
use tokio::io::AsyncWriteExt;

/// Runs commands with `sh -c` and transfers files on the local machine.
#[derive(Debug, Default)]
pub struct LocalCommunicator;

#[async_trait]
impl Communicator for LocalCommunicator {
    async fn start(&self, cmd: RemoteCommand) -> Result<CommandHandle, CommError> {
        let RemoteCommand { command, stdin, stdout, stderr } = cmd;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CommError::Other(format!("spawning sh: {e}")))?;
        let mut cin = child.stdin.take();
        let mut cout = child.stdout.take();
        let mut cerr = child.stderr.take();
        let (handle, done) = CommandHandle::new();
        tokio::spawn(async move {
            let feed = async {
                if let (Some(mut input), Some(mut ci)) = (stdin, cin.take()) {
                    let _ = tokio::io::copy(&mut input, &mut ci).await;
                }
            };
            let out = async {
                if let Some(mut w) = stdout {
                    if let Some(mut o) = cout.take() {
                        let _ = tokio::io::copy(&mut o, &mut w).await;
                    }
                    let _ = w.shutdown().await;
                }
            };
            let err = async {
                if let Some(mut w) = stderr {
                    if let Some(mut o) = cerr.take() {
                        let _ = tokio::io::copy(&mut o, &mut w).await;
                    }
                    let _ = w.shutdown().await;
                }
            };
            tokio::join!(feed, out, err);
            let status =
                child.wait().await.map(|s| s.code().unwrap_or(-1)).map_err(|e| CommError::Other(e.to_string()));
            let _ = done.send(status);
        });
        Ok(handle)
    }

    async fn upload(&self, path: &str, mut data: Reader, info: Option<FileInfo>) -> Result<(), CommError> {
        let mut f = tokio::fs::File::create(path).await.map_err(|e| CommError::Transfer(format!("{path}: {e}")))?;
        tokio::io::copy(&mut data, &mut f).await.map_err(|e| CommError::Transfer(format!("{path}: {e}")))?;
        f.flush().await.map_err(|e| CommError::Transfer(e.to_string()))?;
        if let Some(fi) = info {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(fi.mode & 0o7777));
        }
        Ok(())
    }

    async fn upload_dir(&self, dst: &str, src: &Path, _exclude: &[String]) -> Result<(), CommError> {
        let st = tokio::process::Command::new("cp").arg("-r").arg(src).arg(dst).status().await;
        match st {
            Ok(s) if s.success() => Ok(()),
            other => Err(CommError::Transfer(format!("cp -r failed: {other:?}"))),
        }
    }

    async fn download(&self, path: &str, mut out: Writer) -> Result<(), CommError> {
        let mut f = tokio::fs::File::open(path).await.map_err(|e| CommError::Transfer(format!("{path}: {e}")))?;
        tokio::io::copy(&mut f, &mut out).await.map_err(|e| CommError::Transfer(e.to_string()))?;
        out.shutdown().await.map_err(|e| CommError::Transfer(e.to_string()))?;
        Ok(())
    }

    async fn download_dir(&self, src: &str, dst: &Path, exclude: &[String]) -> Result<(), CommError> {
        self.upload_dir(&dst.to_string_lossy(), Path::new(src), exclude).await
    }
}

/// Core's side of `Provisioner.Provision` / `Builder.Run`: allocates an id, accepts it and
/// serves `Ui` (recording) and `Communicator` (local) on it. Returns the id and the recorder.
pub fn serve_ui_and_comm(session: &Session, extra: Option<(&str, Arc<dyn Service>)>) -> (u32, Arc<RecordingUi>) {
    let id = session.next_id();
    let accept = session.accept(id);
    let rec = Arc::new(RecordingUi::default());
    let registry = Registry::new();
    UiServer::register(&registry, rec.clone());
    registry.register("Communicator", Arc::new(CommunicatorServer::new(Arc::new(LocalCommunicator), session.clone())));
    if let Some((name, svc)) = extra {
        registry.register(name, svc);
    }
    tokio::spawn(async move {
        if let Ok(s) = accept.await {
            let _ = serve(s, registry).await;
        }
    });
    (id, rec)
}

/// Core's `Hook` service: on `Hook.Run{StreamId}` it dials the builder's stream and acts like
/// a provisioner would through core: says something, runs a command, moves a file.
pub struct CoreHook {
    pub session: Session,
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    pub scratch: std::path::PathBuf,
}

#[async_trait]
impl Service for CoreHook {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        match method {
            "Run" => {
                let name = codec::string_of(codec::get(&body, "Name").unwrap_or(&Value::Nil), "Name").unwrap();
                let id = codec::u32_of(codec::get(&body, "StreamId").unwrap_or(&Value::Nil), "StreamId")
                    .map_err(|e| e.to_string())?;
                let stream = self.session.dial(id).await.map_err(|e| e.to_string())?;
                let client = Client::new(stream);
                let ui = UiClient::new(client.clone());
                ui.say(&format!("hook {name} via builder")).await;
                let comm = CommunicatorClient::new(client.clone(), self.session.clone());
                let (w, mut r) = tokio::io::duplex(1024);
                let mut cmd = RemoteCommand::new("echo out-$((40+2)); echo err >&2; exit 3");
                cmd.stdout = Some(Box::new(w));
                let handle = comm.start(cmd).await.map_err(|e| e.to_string())?;
                let mut out = String::new();
                tokio::io::AsyncReadExt::read_to_string(&mut r, &mut out).await.map_err(|e| e.to_string())?;
                let code = handle.wait().await.map_err(|e| e.to_string())?;
                let target = self.scratch.join("hook-upload");
                comm.upload(&target.to_string_lossy(), Box::new(&b"via-hook"[..]), None)
                    .await
                    .map_err(|e| e.to_string())?;
                let uploaded = std::fs::read_to_string(&target).map_err(|e| e.to_string())?;
                self.log.lock().unwrap().push(format!("{name} stdout={} exit={code} file={uploaded}", out.trim()));
                client.close().await;
                Ok(Value::Nil)
            }
            "Cancel" => {
                self.log.lock().unwrap().push("hook cancelled".into());
                Ok(Value::Nil)
            }
            other => Err(format!("rpc: can't find method Hook.{other}")),
        }
    }
}
