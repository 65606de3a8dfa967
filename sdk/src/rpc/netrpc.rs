//! Go `net/rpc` semantics over one stream (plugin-protocol.md §4.2).
//!
//! Server: one task reads requests; every call runs in its own task (so `Builder.Cancel` is
//! served while `Builder.Run` is pending); one writer task writes responses as calls complete.
//! A method error travels in the response header (`Error`) with an empty-map body (`0x80`).
//!
//! Client: calls carry increasing `Seq` numbers; any number of calls may be outstanding; a
//! reader task matches responses by `Seq`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::codec::{self, CodecError, RequestHeader, ResponseHeader, Value, ValueReader};

/// Errors of RPC calls and of serving a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The remote method failed; its error text.
    #[error("{0}")]
    Remote(String),
    /// The stream ended or broke before the reply arrived.
    #[error("the RPC connection to Packer was lost: {0}")]
    Disconnected(String),
    /// The peer sent bytes that are not a valid net/rpc message.
    #[error("protocol error on the RPC stream: {0}")]
    Protocol(String),
    /// The reply did not have the expected shape.
    #[error("unexpected reply to {method}: {detail}")]
    BadReply {
        /// The method called.
        method: String,
        /// What was wrong.
        detail: String,
    },
}

impl From<CodecError> for RpcError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Io(e) => RpcError::Disconnected(e.to_string()),
            CodecError::Truncated(_) => RpcError::Disconnected(e.to_string()),
            other => RpcError::Protocol(other.to_string()),
        }
    }
}

/// One RPC service (the part of `"Service.Method"` before the dot).
#[async_trait]
pub trait Service: Send + Sync {
    /// Runs `method` with the decoded request `body`; `Err(text)` becomes the header's `Error`.
    async fn call(&self, method: &str, body: Value) -> Result<Value, String>;
}

/// The services served on one stream, by name. Services can be added while serving (Packer
/// registers `Ui<id>` progress-bar services on the fly).
#[derive(Clone, Default)]
pub struct Registry {
    services: Arc<Mutex<HashMap<String, Arc<dyn Service>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = lock(&self.services).keys().cloned().collect();
        f.debug_struct("Registry").field("services", &names).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the service `name`.
    pub fn register(&self, name: impl Into<String>, service: Arc<dyn Service>) {
        lock(&self.services).insert(name.into(), service);
    }

    /// Removes the service `name`.
    pub fn unregister(&self, name: &str) {
        lock(&self.services).remove(name);
    }

    fn lookup(&self, name: &str) -> Option<Arc<dyn Service>> {
        lock(&self.services).get(name).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Encodes a response (header + body) as Go's server writes it.
pub fn encode_response(service_method: &str, seq: u64, result: &Result<Value, String>) -> Vec<u8> {
    let (error, body) = match result {
        Ok(v) => (String::new(), v.clone()),
        // Go's net/rpc sends `invalidRequest` (an empty struct) as the body of a failed call.
        Err(e) => (e.clone(), Value::Map(Vec::new())),
    };
    let mut out = codec::encode(&ResponseHeader { service_method: service_method.to_string(), seq, error }.to_value());
    codec::encode_into(&mut out, &body);
    out
}

/// Encodes a request (header + body) as Go's client writes it.
pub fn encode_request(service_method: &str, seq: u64, body: &Value) -> Vec<u8> {
    let mut out = codec::encode(&RequestHeader { service_method: service_method.to_string(), seq }.to_value());
    codec::encode_into(&mut out, body);
    out
}

/// Serves `registry` on `stream` until the peer closes it (then waits for running calls and
/// closes our side). Returns an error when the peer sent garbage; the stream is closed then too.
pub async fn serve<S>(stream: S, registry: Registry) -> Result<(), RpcError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(stream);
    let mut reader = ValueReader::new(rd);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        let mut failed = false;
        while let Some(bytes) = rx.recv().await {
            if failed {
                continue;
            }
            if let Err(e) = async {
                wr.write_all(&bytes).await?;
                wr.flush().await
            }
            .await
            {
                tracing::warn!("writing an RPC response failed: {e}");
                failed = true;
            }
        }
        let _ = wr.shutdown().await;
    });
    let result = loop {
        let header = match reader.next().await {
            Ok(Some(h)) => h,
            Ok(None) => break Ok(()),
            Err(e) => break Err(RpcError::from(e)),
        };
        let body = match reader.expect().await {
            Ok(b) => b,
            Err(e) => break Err(RpcError::from(e)),
        };
        let header = match RequestHeader::from_value(&header) {
            Ok(h) => h,
            Err(e) => break Err(RpcError::from(e)),
        };
        let tx = tx.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            let sm = header.service_method.as_str();
            let result = match sm.rfind('.') {
                None => Err(format!("rpc: service/method request ill-formed: {sm}")),
                Some(dot) => match registry.lookup(&sm[..dot]) {
                    None => Err(format!("rpc: can't find service {sm}")),
                    Some(service) => {
                        tracing::trace!("rpc call {sm} seq {}", header.seq);
                        service.call(&sm[dot + 1..], body).await
                    }
                },
            };
            if let Err(e) = &result {
                tracing::debug!("rpc {sm} failed: {e}");
            }
            let _ = tx.send(encode_response(sm, header.seq, &result));
        });
    };
    if let Err(e) = &result {
        tracing::error!("closing an RPC stream: {e}");
    }
    drop(tx);
    let _ = writer.await;
    result
}

type Pending = HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>;

struct ClientState {
    pending: Pending,
    closed: Option<String>,
}

struct ClientInner {
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    seq: AtomicU64,
    state: Arc<Mutex<ClientState>>,
    _stop_reader: DropGuard,
}

/// A `net/rpc` client on one stream. Cheap to clone; the stream is reset when the last clone
/// is dropped unless [`Client::close`] was called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("seq", &self.inner.seq.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a client on `stream` (spawns the reader task; needs a tokio runtime).
    pub fn new<S>(stream: S) -> Client
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(stream);
        let state = Arc::new(Mutex::new(ClientState { pending: HashMap::new(), closed: None }));
        let stop = CancellationToken::new();
        let reader_state = state.clone();
        let reader_stop = stop.clone();
        tokio::spawn(async move {
            let mut reader = ValueReader::new(rd);
            let reason = tokio::select! {
                r = read_responses(&mut reader, &reader_state) => r,
                _ = reader_stop.cancelled() => "the client was dropped".to_string(),
            };
            let pending = {
                let mut st = lock(&reader_state);
                st.closed = Some(reason.clone());
                std::mem::take(&mut st.pending)
            };
            for (_, tx) in pending {
                let _ = tx.send(Err(RpcError::Disconnected(reason.clone())));
            }
        });
        Client {
            inner: Arc::new(ClientInner {
                writer: tokio::sync::Mutex::new(Box::new(wr)),
                seq: AtomicU64::new(0),
                state,
                _stop_reader: stop.drop_guard(),
            }),
        }
    }

    /// Calls `service_method` with `args` and waits for the reply body.
    pub async fn call(&self, service_method: &str, args: Value) -> Result<Value, RpcError> {
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut st = lock(&self.inner.state);
            if let Some(reason) = &st.closed {
                return Err(RpcError::Disconnected(reason.clone()));
            }
            st.pending.insert(seq, tx);
        }
        let bytes = encode_request(service_method, seq, &args);
        let write = async {
            let mut w = self.inner.writer.lock().await;
            w.write_all(&bytes).await?;
            w.flush().await
        };
        if let Err(e) = write.await {
            lock(&self.inner.state).pending.remove(&seq);
            return Err(RpcError::Disconnected(format!("sending {service_method}: {e}")));
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Disconnected("the reply was lost".into())),
        }
    }

    /// Closes our side of the stream (yamux FIN); outstanding calls still get their replies.
    pub async fn close(&self) {
        let mut w = self.inner.writer.lock().await;
        let _ = w.shutdown().await;
    }
}

async fn read_responses<R: AsyncRead + Unpin>(reader: &mut ValueReader<R>, state: &Mutex<ClientState>) -> String {
    loop {
        let header = match reader.next().await {
            Ok(Some(h)) => h,
            Ok(None) => return "the stream was closed by the peer".into(),
            Err(e) => return e.to_string(),
        };
        let body = match reader.expect().await {
            Ok(b) => b,
            Err(e) => return e.to_string(),
        };
        let header = match ResponseHeader::from_value(&header) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("bad RPC response header: {e}");
                return e.to_string();
            }
        };
        let tx = lock(state).pending.remove(&header.seq);
        match tx {
            Some(tx) => {
                let r = if header.error.is_empty() { Ok(body) } else { Err(RpcError::Remote(header.error)) };
                let _ = tx.send(r);
            }
            None => tracing::warn!("RPC response for unknown seq {} ({})", header.seq, header.service_method),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Echo {
        gate: tokio::sync::Notify,
    }

    #[async_trait]
    impl Service for Echo {
        async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
            match method {
                "Echo" => Ok(body),
                "Fail" => Err("it failed".into()),
                "Block" => {
                    self.gate.notified().await;
                    Ok(Value::from("released"))
                }
                "Release" => {
                    self.gate.notify_one();
                    Ok(Value::Nil)
                }
                _ => Err(format!("rpc: can't find method Test.{method}")),
            }
        }
    }

    fn setup() -> Client {
        let (a, b) = tokio::io::duplex(4096);
        let reg = Registry::new();
        reg.register("Test", Arc::new(Echo::default()));
        tokio::spawn(serve(b, reg));
        Client::new(a)
    }

    #[tokio::test]
    async fn calls_errors_and_unknown_services() {
        let c = setup();
        assert_eq!(c.call("Test.Echo", Value::from(5)).await.unwrap(), Value::from(5));
        assert_eq!(c.call("Test.Fail", Value::Nil).await, Err(RpcError::Remote("it failed".into())));
        assert_eq!(c.call("Nope.X", Value::Nil).await, Err(RpcError::Remote("rpc: can't find service Nope.X".into())));
        assert!(matches!(c.call("NoDot", Value::Nil).await, Err(RpcError::Remote(e)) if e.contains("ill-formed")));
    }

    #[tokio::test]
    async fn concurrent_calls_are_matched_by_seq() {
        let c = setup();
        let blocked = tokio::spawn({
            let c = c.clone();
            async move { c.call("Test.Block", Value::Nil).await }
        });
        // other calls complete while the blocked one is outstanding
        for i in 0..20 {
            assert_eq!(c.call("Test.Echo", Value::from(i)).await.unwrap(), Value::from(i));
        }
        c.call("Test.Release", Value::Nil).await.unwrap();
        assert_eq!(blocked.await.unwrap().unwrap(), Value::from("released"));
    }

    #[test]
    fn error_response_has_empty_map_body() {
        let bytes = encode_response("Provisioner.Prepare", 1, &Err("x".into()));
        assert_eq!(*bytes.last().unwrap(), 0x80);
    }

    #[tokio::test]
    async fn garbage_ends_the_server_with_an_error() {
        let (mut a, b) = tokio::io::duplex(4096);
        let server = tokio::spawn(serve(b, Registry::new()));
        a.write_all(&[0xc1, 1, 2, 3]).await.unwrap();
        let r = server.await.unwrap();
        assert!(matches!(r, Err(RpcError::Protocol(_))), "{r:?}");
    }
}
