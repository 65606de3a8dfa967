//! The `Communicator` service (plugin-protocol.md §5.5).
//!
//! [`CommunicatorServer`] serves any [`Communicator`] (the builder serves its SSH communicator
//! to core on the hook stream); [`CommunicatorClient`] implements [`Communicator`] over RPC
//! (a provisioner uses the communicator core hands it). Byte streams (stdin/stdout/stderr,
//! upload and download data) travel on separate broker streams: the caller allocates and
//! accepts the ids, the server dials them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::codec::{self, map, Value};
use super::gob;
use super::mux::{MuxStream, Session};
use super::netrpc::{Client, RpcError, Service};
use crate::communicator::{CommError, CommandHandle, Communicator, FileInfo, Reader, RemoteCommand, Writer};

/// Exit status Go's client reports when the response stream breaks.
pub const EXIT_BROKEN_RESPONSE: i32 = 123;

/// Exit status the server reports when the command's outcome is unknown (Go's
/// `packersdk.CmdDisconnect`).
pub const EXIT_DISCONNECTED: i64 = 2_300_218;

/// The largest response stream accepted (a `CommandFinished` is ~50 bytes).
const MAX_RESPONSE: u64 = 64 * 1024;

/// Serves a [`Communicator`] as `Communicator.*`.
pub struct CommunicatorServer {
    comm: Arc<dyn Communicator>,
    session: Session,
}

impl CommunicatorServer {
    /// Serves `comm`; streams named in the calls are dialled on `session`.
    pub fn new(comm: Arc<dyn Communicator>, session: Session) -> Self {
        CommunicatorServer { comm, session }
    }
}

/// Stands in for `communicator = "none"`: every call fails with an explanation.
pub struct NoCommunicator;

#[async_trait]
impl Service for NoCommunicator {
    async fn call(&self, method: &str, _body: Value) -> Result<Value, String> {
        Err(format!(
            "Communicator.{method}: this build has no communicator (communicator = \"none\"); \
             configure a communicator to use provisioners that reach the machine"
        ))
    }
}

fn field<'a>(body: &'a Value, key: &str) -> &'a Value {
    static NIL: Value = Value::Nil;
    codec::get(body, key).unwrap_or(&NIL)
}

fn s(body: &Value, key: &str) -> Result<String, String> {
    codec::string_of(field(body, key), key).map_err(|e| e.to_string())
}

fn id(body: &Value, key: &str) -> Result<u32, String> {
    codec::u32_of(field(body, key), key).map_err(|e| e.to_string())
}

fn strings(body: &Value, key: &str) -> Result<Vec<String>, String> {
    codec::strings_of(field(body, key), key).map_err(|e| e.to_string())
}

/// Copies everything from `from` into the yamux stream `to`, then closes it (FIN).
async fn pump_into_stream(mut from: tokio::io::DuplexStream, mut to: MuxStream, what: &str) {
    if let Err(e) = tokio::io::copy(&mut from, &mut to).await {
        tracing::warn!("copying {what} failed: {e}");
    }
    let _ = to.shutdown().await;
}

impl CommunicatorServer {
    async fn start(&self, body: Value) -> Result<Value, String> {
        let command = s(&body, "Command")?;
        let (stdin_id, stdout_id, stderr_id, resp_id) = (
            id(&body, "StdinStreamId")?,
            id(&body, "StdoutStreamId")?,
            id(&body, "StderrStreamId")?,
            id(&body, "ResponseStreamId")?,
        );
        let dial = |i: u32| async move {
            self.session.dial(i).await.map_err(|e| format!("Communicator.Start: connecting stream {i}: {e}"))
        };
        let mut cmd = RemoteCommand::new(command.clone());
        let mut pumps = Vec::new();
        if stdin_id > 0 {
            cmd.stdin = Some(Box::new(dial(stdin_id).await?));
        }
        for (sid, name) in [(stdout_id, "stdout"), (stderr_id, "stderr")] {
            if sid > 0 {
                let stream = dial(sid).await?;
                let (w, r) = tokio::io::duplex(64 * 1024);
                pumps.push(tokio::spawn(pump_into_stream(r, stream, name)));
                let w: Writer = Box::new(w);
                if name == "stdout" {
                    cmd.stdout = Some(w);
                } else {
                    cmd.stderr = Some(w);
                }
            }
        }
        let mut response = dial(resp_id).await?;
        let handle = match self.comm.start(cmd).await {
            Ok(h) => h,
            Err(e) => {
                for p in pumps {
                    p.abort();
                }
                let _ = response.shutdown().await;
                return Err(e.to_string());
            }
        };
        tokio::spawn(async move {
            let exit = match handle.wait().await {
                Ok(code) => i64::from(code),
                Err(e) => {
                    // not the command line: it may carry sensitive environment values
                    tracing::warn!("a remote command ended without an exit status: {e}");
                    EXIT_DISCONNECTED
                }
            };
            tracing::info!("RPC endpoint: Communicator ended with: {exit}");
            for p in pumps {
                // The writers are closed when the command ends; give the copies time to drain.
                if tokio::time::timeout(Duration::from_secs(30), p).await.is_err() {
                    tracing::warn!("command output was still open 30 s after the command ended");
                }
            }
            let bytes = gob::encode_command_finished(exit);
            if let Err(e) = response.write_all(&bytes).await {
                tracing::warn!("sending the exit status failed: {e}");
            }
            let _ = response.shutdown().await;
        });
        Ok(Value::Nil)
    }

    async fn upload(&self, body: Value) -> Result<Value, String> {
        let path = s(&body, "Path")?;
        let sid = id(&body, "ReaderStreamId")?;
        let info = match field(&body, "FileInfo") {
            Value::Nil => None,
            fi => Some(FileInfo {
                name: s(fi, "N")?,
                size: codec::int_of(field(fi, "S"), "S").map_err(|e| e.to_string())?,
                mode: codec::uint_of(field(fi, "M"), "M").map_err(|e| e.to_string())? as u32,
            }),
        };
        let stream = self.session.dial(sid).await.map_err(|e| format!("Communicator.Upload {path}: {e}"))?;
        self.comm.upload(&path, Box::new(stream), info).await.map_err(|e| e.to_string())?;
        Ok(Value::Nil)
    }

    async fn download(&self, body: Value) -> Result<Value, String> {
        let path = s(&body, "Path")?;
        let sid = id(&body, "WriterStreamId")?;
        let stream = self.session.dial(sid).await.map_err(|e| format!("Communicator.Download {path}: {e}"))?;
        let (w, r) = tokio::io::duplex(64 * 1024);
        let pump = tokio::spawn(pump_into_stream(r, stream, "download data"));
        let result = self.comm.download(&path, Box::new(w)).await;
        let _ = pump.await;
        result.map_err(|e| e.to_string())?;
        Ok(Value::Nil)
    }
}

#[async_trait]
impl Service for CommunicatorServer {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        match method {
            "Start" => self.start(body).await,
            "Upload" => self.upload(body).await,
            "Download" => self.download(body).await,
            "UploadDir" => {
                let (dst, src, ex) = (s(&body, "Dst")?, s(&body, "Src")?, strings(&body, "Exclude")?);
                self.comm.upload_dir(&dst, Path::new(&src), &ex).await.map_err(|e| e.to_string())?;
                Ok(Value::Nil)
            }
            "DownloadDir" => {
                let (dst, src, ex) = (s(&body, "Dst")?, s(&body, "Src")?, strings(&body, "Exclude")?);
                self.comm.download_dir(&src, Path::new(&dst), &ex).await.map_err(|e| e.to_string())?;
                Ok(Value::Nil)
            }
            other => Err(format!("rpc: can't find method Communicator.{other}")),
        }
    }
}

/// A [`Communicator`] reached over RPC (`Communicator.*` served by the peer).
#[derive(Debug, Clone)]
pub struct CommunicatorClient {
    client: Client,
    session: Session,
}

impl CommunicatorClient {
    /// A communicator client calling through `client`, with data streams on `session`.
    pub fn new(client: Client, session: Session) -> Self {
        CommunicatorClient { client, session }
    }
}

fn comm_err(e: RpcError) -> CommError {
    match e {
        RpcError::Remote(m) => CommError::Other(m),
        other => CommError::Disconnected(other.to_string()),
    }
}

#[async_trait]
impl Communicator for CommunicatorClient {
    async fn start(&self, cmd: RemoteCommand) -> Result<CommandHandle, CommError> {
        let RemoteCommand { command, stdin, stdout, stderr } = cmd;
        let mut ids = [0u32; 3];
        let mut outputs = Vec::new();
        if let Some(mut input) = stdin {
            ids[0] = self.session.next_id();
            let acc = self.session.accept(ids[0]);
            tokio::spawn(async move {
                match acc.await {
                    Ok(mut stream) => {
                        if let Err(e) = tokio::io::copy(&mut input, &mut stream).await {
                            tracing::debug!("copying stdin ended: {e}");
                        }
                        let _ = stream.shutdown().await;
                    }
                    Err(e) => tracing::warn!("stdin stream: {e}"),
                }
            });
        }
        for (slot, out) in [(1usize, stdout), (2, stderr)] {
            if let Some(mut out) = out {
                ids[slot] = self.session.next_id();
                let acc = self.session.accept(ids[slot]);
                outputs.push(tokio::spawn(async move {
                    match acc.await {
                        Ok(mut stream) => {
                            if let Err(e) = tokio::io::copy(&mut stream, &mut out).await {
                                tracing::debug!("copying command output ended: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("output stream: {e}"),
                    }
                    let _ = out.shutdown().await;
                }));
            }
        }
        let resp_id = self.session.next_id();
        let acc = self.session.accept(resp_id);
        let (handle, done) = CommandHandle::new();
        tokio::spawn(async move {
            let status = match acc.await {
                Ok(stream) => {
                    let mut buf = Vec::new();
                    let read = stream.take(MAX_RESPONSE).read_to_end(&mut buf).await;
                    match read
                        .map_err(|e| e.to_string())
                        .and_then(|_| gob::decode_command_finished(&buf).map_err(|e| e.to_string()))
                    {
                        Ok(code) => i32::try_from(code).unwrap_or(EXIT_BROKEN_RESPONSE),
                        Err(e) => {
                            tracing::warn!("reading the command's exit status failed: {e}");
                            EXIT_BROKEN_RESPONSE
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("the command's response stream never connected: {e}");
                    EXIT_BROKEN_RESPONSE
                }
            };
            for o in outputs {
                let _ = o.await;
            }
            let _ = done.send(Ok(status));
        });
        let args = map(vec![
            ("Command", Value::from(command.as_str())),
            ("StdinStreamId", Value::from(ids[0])),
            ("StdoutStreamId", Value::from(ids[1])),
            ("StderrStreamId", Value::from(ids[2])),
            ("ResponseStreamId", Value::from(resp_id)),
        ]);
        self.client.call("Communicator.Start", args).await.map_err(comm_err)?;
        Ok(handle)
    }

    async fn upload(&self, path: &str, mut data: Reader, info: Option<FileInfo>) -> Result<(), CommError> {
        let sid = self.session.next_id();
        let acc = self.session.accept(sid);
        let pump = tokio::spawn(async move {
            let mut stream = acc.await.map_err(|e| e.to_string())?;
            let r = tokio::io::copy(&mut data, &mut stream).await.map_err(|e| e.to_string());
            let _ = stream.shutdown().await;
            r
        });
        let fi = match info {
            None => Value::Nil,
            Some(fi) => map(vec![
                ("N", Value::from(fi.name.as_str())),
                ("S", Value::from(fi.size)),
                ("M", Value::from(fi.mode)),
                ("T", Value::Nil),
            ]),
        };
        let args = map(vec![("Path", Value::from(path)), ("ReaderStreamId", Value::from(sid)), ("FileInfo", fi)]);
        let result = self.client.call("Communicator.Upload", args).await.map_err(comm_err);
        if result.is_err() {
            pump.abort();
        }
        result?;
        match pump.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(CommError::Transfer(format!("uploading {path}: {e}"))),
            Err(e) => Err(CommError::Transfer(format!("uploading {path}: {e}"))),
        }
    }

    async fn upload_dir(&self, dst: &str, src: &Path, exclude: &[String]) -> Result<(), CommError> {
        let args = map(vec![
            ("Dst", Value::from(dst)),
            ("Src", Value::from(src.to_string_lossy().as_ref())),
            ("Exclude", Value::Array(exclude.iter().map(|e| Value::from(e.as_str())).collect())),
        ]);
        self.client.call("Communicator.UploadDir", args).await.map_err(comm_err)?;
        Ok(())
    }

    async fn download(&self, path: &str, mut out: Writer) -> Result<(), CommError> {
        let sid = self.session.next_id();
        let acc = self.session.accept(sid);
        let pump = tokio::spawn(async move {
            let mut stream = acc.await.map_err(|e| e.to_string())?;
            let r = tokio::io::copy(&mut stream, &mut out).await.map_err(|e| e.to_string());
            let _ = out.shutdown().await;
            r
        });
        let args = map(vec![("Path", Value::from(path)), ("WriterStreamId", Value::from(sid))]);
        let result = self.client.call("Communicator.Download", args).await.map_err(comm_err);
        if result.is_err() {
            pump.abort();
        }
        result?;
        match pump.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(CommError::Transfer(format!("downloading {path}: {e}"))),
            Err(e) => Err(CommError::Transfer(format!("downloading {path}: {e}"))),
        }
    }

    async fn download_dir(&self, src: &str, dst: &Path, exclude: &[String]) -> Result<(), CommError> {
        let args = map(vec![
            ("Dst", Value::from(dst.to_string_lossy().as_ref())),
            ("Src", Value::from(src)),
            ("Exclude", Value::Array(exclude.iter().map(|e| Value::from(e.as_str())).collect())),
        ]);
        self.client.call("Communicator.DownloadDir", args).await.map_err(comm_err)?;
        Ok(())
    }
}
