//! The transport: a hashicorp-compatible yamux session plus Packer's mux broker
//! (plugin-protocol.md §3).
//!
//! [`Session`] drives a `yamux::Connection` in a background task. The broker part names streams
//! by `u32` ids: the opener of a stream writes the id (little-endian) and the acceptor echoes it.
//! [`Session::accept`] registers interest in an id *synchronously* (so it can be done before the
//! RPC carrying the id is sent) and waits up to [`ACCEPT_TIMEOUT`] for the peer to dial it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};
use tokio_util::sync::CancellationToken;

/// One multiplexed stream, usable with tokio's I/O traits.
pub type MuxStream = Compat<yamux::Stream>;

/// How long an accepted id waits for the peer to dial it (Go's broker uses 5 s).
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Per-stream receive window of hashicorp/yamux (256 KiB); we never grow beyond it.
pub const STREAM_WINDOW: usize = 256 * 1024;

/// Maximum number of concurrent streams of one session.
pub const MAX_STREAMS: usize = 256;

/// Which end of the yamux session we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Packer core's side: opens odd stream ids.
    Client,
    /// The plugin's side: opens even stream ids.
    Server,
}

/// Errors of the yamux session and the broker.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// The session is closed (the peer went away or sent garbage).
    #[error("the plugin connection is closed{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Closed(Option<String>),
    /// Opening a yamux stream failed.
    #[error("opening a stream failed: {0}")]
    Open(String),
    /// I/O on a stream failed while exchanging the broker id.
    #[error("broker handshake on stream id {id} failed: {source}")]
    Io {
        /// The broker id.
        id: u32,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The peer acknowledged a different id than the one dialled.
    #[error("bad ack dialling stream id {expected}: the peer answered {got}")]
    BadAck {
        /// The id dialled.
        expected: u32,
        /// The id the peer echoed.
        got: u32,
    },
    /// Nobody dialled an accepted id in time.
    #[error("timeout waiting for the peer to connect to stream id {0} (waited {ACCEPT_TIMEOUT:?})")]
    AcceptTimeout(u32),
    /// Two accepts for the same id.
    #[error("stream id {0} is already being accepted")]
    AlreadyAccepting(u32),
}

enum Slot {
    Waiting { gen: u64, tx: oneshot::Sender<MuxStream> },
    Arrived { gen: u64, stream: MuxStream },
}

type OpenReply = oneshot::Sender<Result<yamux::Stream, MuxError>>;

struct Inner {
    open_tx: mpsc::UnboundedSender<OpenReply>,
    next_id: AtomicU32,
    gen: AtomicU64,
    table: Mutex<HashMap<u32, Slot>>,
    closed: CancellationToken,
    close_requested: CancellationToken,
    error: Mutex<Option<String>>,
}

/// A yamux session with the mux broker on top. Cheap to clone; all clones share the session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("closed", &self.inner.closed.is_cancelled()).finish_non_exhaustive()
    }
}

/// The yamux configuration compatible with hashicorp/yamux's defaults: 256 KiB windows that
/// never grow, at most [`MAX_STREAMS`] streams.
pub fn yamux_config() -> yamux::Config {
    let mut cfg = yamux::Config::default();
    // Lower the stream count first: the window setter asserts window >= streams * 256 KiB.
    cfg.set_max_num_streams(MAX_STREAMS);
    cfg.set_max_connection_receive_window(Some(MAX_STREAMS * STREAM_WINDOW));
    cfg
}

impl Session {
    /// Starts a session over `io` (a connected socket). Must be called inside a tokio runtime.
    pub fn new<T>(io: T, role: Role) -> Session
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mode = match role {
            Role::Client => yamux::Mode::Client,
            Role::Server => yamux::Mode::Server,
        };
        let conn = yamux::Connection::new(io.compat(), yamux_config(), mode);
        let (open_tx, open_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            open_tx,
            next_id: AtomicU32::new(0),
            gen: AtomicU64::new(0),
            table: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
            close_requested: CancellationToken::new(),
            error: Mutex::new(None),
        });
        let session = Session { inner: inner.clone() };
        let weak = Arc::downgrade(&inner);
        let closed = inner.closed.clone();
        let close_requested = inner.close_requested.clone();
        tokio::spawn(async move {
            // `closed` is cancelled however the driver ends, and a panic inside yamux on bytes
            // from the peer (with overflow checks on, yamux 0.13 adds the credit of a SYN window
            // update unchecked) fails the session instead of leaving every waiter hanging.
            let _closed_on_exit = closed.drop_guard();
            let result = AssertUnwindSafe(drive(conn, open_rx, weak.clone(), close_requested))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err("the yamux connection panicked on data from the peer".to_string()));
            if let Some(inner) = weak.upgrade() {
                match &result {
                    Ok(()) => tracing::debug!("yamux session ended"),
                    Err(e) => {
                        tracing::error!("yamux session failed: {e}");
                        *lock(&inner.error) = Some(e.clone());
                    }
                }
                lock(&inner.table).clear();
            }
        });
        session
    }

    /// Allocates the next broker id of this side (1, 2, 3, …).
    pub fn next_id(&self) -> u32 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Resolves when the session has ended.
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await
    }

    /// Why the session ended, if it failed.
    pub fn error(&self) -> Option<String> {
        lock(&self.inner.error).clone()
    }

    /// Closes the session (yamux GoAway) and waits until it has ended.
    pub async fn close(&self) {
        self.inner.close_requested.cancel();
        self.closed().await
    }

    fn closed_error(&self) -> MuxError {
        MuxError::Closed(self.error())
    }

    /// Opens a raw yamux stream (no broker id).
    pub async fn open_raw(&self) -> Result<MuxStream, MuxError> {
        let (tx, rx) = oneshot::channel();
        if self.is_closed() || self.inner.open_tx.send(tx).is_err() {
            return Err(self.closed_error());
        }
        match rx.await {
            Ok(Ok(s)) => Ok(s.compat()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Dials the peer's broker id `id`: opens a stream, sends the id, checks the ack.
    pub async fn dial(&self, id: u32) -> Result<MuxStream, MuxError> {
        let mut s = self.open_raw().await?;
        let io_err = |source| MuxError::Io { id, source };
        s.write_all(&id.to_le_bytes()).await.map_err(io_err)?;
        s.flush().await.map_err(io_err)?;
        let mut ack = [0u8; 4];
        tokio::select! {
            r = s.read_exact(&mut ack) => { r.map_err(io_err)?; }
            _ = self.inner.closed.cancelled() => return Err(self.closed_error()),
        }
        let got = u32::from_le_bytes(ack);
        if got != id {
            return Err(MuxError::BadAck { expected: id, got });
        }
        tracing::trace!("dialled stream id {id}");
        Ok(s)
    }

    /// Registers `id` as accepted now and returns a future that waits (at most
    /// [`ACCEPT_TIMEOUT`]) for the peer to dial it, then acknowledges it.
    pub fn accept(&self, id: u32) -> impl Future<Output = Result<MuxStream, MuxError>> + Send + 'static {
        let session = self.clone();
        let gen = self.inner.gen.fetch_add(1, Ordering::Relaxed);
        let early: Result<Result<MuxStream, oneshot::Receiver<MuxStream>>, MuxError> = {
            let mut table = lock(&self.inner.table);
            if self.is_closed() {
                Err(self.closed_error())
            } else {
                match table.remove(&id) {
                    Some(Slot::Arrived { stream, .. }) => Ok(Ok(stream)),
                    Some(w @ Slot::Waiting { .. }) => {
                        table.insert(id, w);
                        Err(MuxError::AlreadyAccepting(id))
                    }
                    None => {
                        let (tx, rx) = oneshot::channel();
                        table.insert(id, Slot::Waiting { gen, tx });
                        Ok(Err(rx))
                    }
                }
            }
        };
        async move {
            let mut stream = match early? {
                Ok(s) => s,
                Err(rx) => {
                    enum Waited {
                        Got(MuxStream),
                        Lost,
                        Timeout,
                    }
                    let w = tokio::select! {
                        r = tokio::time::timeout(ACCEPT_TIMEOUT, rx) => match r {
                            Ok(Ok(s)) => Waited::Got(s),
                            Ok(Err(_)) => Waited::Lost,
                            Err(_) => Waited::Timeout,
                        },
                        _ = session.inner.closed.cancelled() => Waited::Lost,
                    };
                    match w {
                        Waited::Got(s) => s,
                        Waited::Lost => return Err(session.closed_error()),
                        Waited::Timeout => {
                            let mut table = lock(&session.inner.table);
                            if matches!(table.get(&id), Some(Slot::Waiting { gen: g, .. }) if *g == gen) {
                                table.remove(&id);
                            }
                            return Err(MuxError::AcceptTimeout(id));
                        }
                    }
                }
            };
            let io_err = |source| MuxError::Io { id, source };
            stream.write_all(&id.to_le_bytes()).await.map_err(io_err)?;
            stream.flush().await.map_err(io_err)?;
            tracing::trace!("accepted stream id {id}");
            Ok(stream)
        }
    }

    fn deliver(inner: &Arc<Inner>, id: u32, stream: MuxStream) {
        let mut table = lock(&inner.table);
        let stream = match table.remove(&id) {
            Some(Slot::Waiting { tx, .. }) => match tx.send(stream) {
                Ok(()) => return,
                Err(s) => s,
            },
            Some(Slot::Arrived { stream: old, .. }) => {
                tracing::warn!("a second stream arrived for id {id} before the first was accepted; dropping the first");
                drop(old);
                stream
            }
            None => stream,
        };
        let gen = inner.gen.fetch_add(1, Ordering::Relaxed);
        table.insert(id, Slot::Arrived { gen, stream });
        drop(table);
        let weak = Arc::downgrade(inner);
        tokio::spawn(async move {
            tokio::time::sleep(ACCEPT_TIMEOUT).await;
            if let Some(inner) = weak.upgrade() {
                let mut table = lock(&inner.table);
                if matches!(table.get(&id), Some(Slot::Arrived { gen: g, .. }) if *g == gen) {
                    table.remove(&id);
                    tracing::warn!("nobody accepted stream id {id} within {ACCEPT_TIMEOUT:?}; closed it");
                }
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn drive<T>(
    mut conn: yamux::Connection<T>,
    mut open_rx: mpsc::UnboundedReceiver<OpenReply>,
    inner: std::sync::Weak<Inner>,
    close_requested: CancellationToken,
) -> Result<(), String>
where
    T: futures::AsyncRead + futures::AsyncWrite + Unpin,
{
    let mut pending: VecDeque<OpenReply> = VecDeque::new();
    let mut closing = Box::pin(close_requested.cancelled_owned());
    let result = std::future::poll_fn(|cx| loop {
        if closing.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(true));
        }
        loop {
            match open_rx.poll_recv(cx) {
                Poll::Ready(Some(req)) => pending.push_back(req),
                // Every handle of the session was dropped: close it.
                Poll::Ready(None) => return Poll::Ready(Ok(true)),
                Poll::Pending => break,
            }
        }
        while !pending.is_empty() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(Ok(s)) => {
                    if let Some(tx) = pending.pop_front() {
                        let _ = tx.send(Ok(s));
                    }
                }
                Poll::Ready(Err(e)) => {
                    if let Some(tx) = pending.pop_front() {
                        let _ = tx.send(Err(MuxError::Open(e.to_string())));
                    }
                }
                Poll::Pending => break,
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(stream))) => {
                let Some(inner) = inner.upgrade() else { return Poll::Ready(Ok(false)) };
                tokio::spawn(read_broker_id(inner, stream));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.to_string())),
            Poll::Ready(None) => return Poll::Ready(Ok(false)),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    for tx in pending.drain(..) {
        let _ = tx.send(Err(MuxError::Closed(None)));
    }
    if let Ok(true) = result {
        let _ = std::future::poll_fn(|cx| conn.poll_close(cx)).await;
    }
    result.map(|_| ())
}

async fn read_broker_id(inner: Arc<Inner>, stream: yamux::Stream) {
    let mut stream = stream.compat();
    let mut id = [0u8; 4];
    match tokio::time::timeout(ACCEPT_TIMEOUT, stream.read_exact(&mut id)).await {
        Ok(Ok(_)) => {
            let id = u32::from_le_bytes(id);
            tracing::trace!("incoming stream for id {id}");
            Session::deliver(&inner, id, stream);
        }
        Ok(Err(e)) => tracing::warn!("incoming stream closed before sending its broker id: {e}"),
        Err(_) => tracing::warn!("incoming stream sent no broker id within {ACCEPT_TIMEOUT:?}; dropped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (Session, Session) {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        (Session::new(a, Role::Client), Session::new(b, Role::Server))
    }

    /// Found by `cargo fuzz` (target `yamux_broker`): a SYN window update with credit near
    /// u32::MAX overflows inside yamux (a panic in debug builds); the driver task died without
    /// closing the session, so everything waiting on it hung.
    #[tokio::test]
    async fn peer_data_that_panics_yamux_ends_the_session() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let s = Session::new(ours, Role::Server);
        // version 0, window update, SYN, stream 0x00ffffff, credit 0xffffffff
        theirs.write_all(&[0, 1, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
        theirs.shutdown().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), s.closed()).await.expect("the session ended");
        if cfg!(debug_assertions) {
            let e = s.error().expect("an error");
            assert!(e.contains("panicked on data from the peer"), "{e}");
        }
        assert!(matches!(s.dial(1).await, Err(MuxError::Closed(_))));
    }

    #[tokio::test]
    async fn dial_and_accept_both_orders() {
        let (core, plugin) = pair().await;
        // accept first
        let acc = plugin.accept(0);
        let (d, a) = tokio::join!(core.dial(0), acc);
        let (mut d, mut a) = (d.unwrap(), a.unwrap());
        d.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        // dial first: the stream waits in the table until accepted
        let dial = tokio::spawn({
            let core = core.clone();
            async move { core.dial(7).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut a = plugin.accept(7).await.unwrap();
        let mut d = dial.await.unwrap().unwrap();
        a.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        d.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }

    #[tokio::test]
    async fn ids_are_per_side() {
        let (core, plugin) = pair().await;
        assert_eq!(core.next_id(), 1);
        assert_eq!(plugin.next_id(), 1);
        assert_eq!(plugin.next_id(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn accept_times_out() {
        let (_core, plugin) = pair().await;
        let r = plugin.accept(3).await;
        assert!(matches!(r, Err(MuxError::AcceptTimeout(3))), "{r:?}");
        // the id can be accepted again afterwards
        let r = plugin.accept(3).await;
        assert!(matches!(r, Err(MuxError::AcceptTimeout(3))), "{r:?}");
    }

    #[tokio::test]
    async fn double_accept_is_an_error() {
        let (_core, plugin) = pair().await;
        let _first = plugin.accept(4);
        assert!(matches!(plugin.accept(4).await, Err(MuxError::AlreadyAccepting(4))));
    }

    #[tokio::test]
    async fn session_closes_when_peer_goes_away() {
        let (core, plugin) = pair().await;
        let acc = plugin.accept(9);
        drop(core);
        // dropping every handle of the client ends its driver and the socket
        let r = acc.await;
        assert!(r.is_err());
        plugin.closed().await;
    }

    /// A hashicorp/yamux keepalive (PING with SYN) must be answered with a PING ACK carrying the
    /// same opaque value, or Go closes the session after its write timeout.
    #[tokio::test]
    async fn keepalive_ping_is_answered() {
        let (mut raw, b) = tokio::net::UnixStream::pair().unwrap();
        let plugin = Session::new(b, Role::Server);
        // version 0, type PING (2), flags SYN (1), stream 0, opaque 0x01020304
        raw.write_all(&[0, 2, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4]).await.unwrap();
        loop {
            let mut hdr = [0u8; 12];
            raw.read_exact(&mut hdr).await.unwrap();
            let flags = u16::from_be_bytes([hdr[2], hdr[3]]);
            let len = u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
            if hdr[1] == 0 {
                let mut skip = vec![0u8; len as usize];
                raw.read_exact(&mut skip).await.unwrap();
            }
            if hdr[1] == 2 && flags & 2 != 0 {
                assert_eq!(len, 0x01020304, "the ACK must echo the ping value");
                assert_eq!(&hdr[4..8], &[0, 0, 0, 0]);
                break;
            }
        }
        assert!(!plugin.is_closed());
    }
}
