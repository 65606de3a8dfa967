//! A byte-level view of one exec/subsystem channel, for protocols spoken over stdin/stdout (scp).
//!
//! [`ChannelIo`] buffers the channel's stdout, keeps the tail of its stderr for error messages and
//! remembers how the remote program ended.

use russh::client::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::communicator::CommError;

/// How much of a remote program's stderr is kept for error messages.
const STDERR_KEEP: usize = 8 * 1024;
/// Chunk size for data sent to the channel.
const CHUNK: usize = 32 * 1024;

/// How a remote program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this status.
    Status(u32),
    /// It was killed by this signal (name without `SIG`).
    Signal(String),
}

/// The two halves of a channel plus read buffering.
pub(crate) struct ChannelIo {
    rx: ChannelReadHalf,
    tx: ChannelWriteHalf<Msg>,
    buf: Vec<u8>,
    pos: usize,
    stderr: Vec<u8>,
    exit: Option<Exit>,
    closed: bool,
}

impl ChannelIo {
    /// Wraps an opened channel whose program is already running.
    pub(crate) fn new(rx: ChannelReadHalf, tx: ChannelWriteHalf<Msg>) -> Self {
        ChannelIo { rx, tx, buf: Vec::new(), pos: 0, stderr: Vec::new(), exit: None, closed: false }
    }

    /// The remote program's stderr seen so far (its last few KiB), trimmed, lossily decoded.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }

    /// Pulls one message from the channel. Returns `false` once the channel is closed.
    async fn pump(&mut self) -> bool {
        if self.closed {
            return false;
        }
        match self.rx.wait().await {
            Some(ChannelMsg::Data { data }) => {
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                self.buf.extend_from_slice(&data);
            }
            Some(ChannelMsg::ExtendedData { data, .. }) => {
                self.stderr.extend_from_slice(&data);
                if self.stderr.len() > STDERR_KEEP {
                    let cut = self.stderr.len() - STDERR_KEEP;
                    self.stderr.drain(..cut);
                }
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => self.exit = Some(Exit::Status(exit_status)),
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                self.exit = Some(Exit::Signal(super::signal_name(&signal_name)));
            }
            Some(ChannelMsg::Close) | None => self.closed = true,
            Some(_) => {}
        }
        true
    }

    /// Reads one byte of stdout; `None` at end of stream.
    pub(crate) async fn read_byte(&mut self) -> Option<u8> {
        loop {
            if self.pos < self.buf.len() {
                let b = self.buf[self.pos];
                self.pos += 1;
                return Some(b);
            }
            if !self.pump().await {
                return None;
            }
        }
    }

    /// Reads stdout up to and including `\n` (at most `max` bytes); returns the line without the
    /// newline, or `None` if the stream ended first.
    pub(crate) async fn read_line(&mut self, max: usize) -> Result<Option<String>, CommError> {
        let mut line = Vec::new();
        loop {
            match self.read_byte().await {
                None => return Ok(None),
                Some(b'\n') => return Ok(Some(String::from_utf8_lossy(&line).into_owned())),
                Some(b) => {
                    line.push(b);
                    if line.len() > max {
                        return Err(CommError::Transfer(format!(
                            "the remote side sent a protocol line longer than {max} bytes"
                        )));
                    }
                }
            }
        }
    }

    /// Copies exactly `n` bytes of stdout to `out`. Returns how many bytes were copied (fewer than
    /// `n` only if the stream ended).
    pub(crate) async fn copy_to<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        out: &mut W,
        n: u64,
    ) -> Result<u64, CommError> {
        let mut left = n;
        while left > 0 {
            if self.pos == self.buf.len() && !self.pump().await {
                break;
            }
            let avail = (self.buf.len() - self.pos) as u64;
            if avail == 0 {
                continue;
            }
            let take = avail.min(left) as usize;
            out.write_all(&self.buf[self.pos..self.pos + take])
                .await
                .map_err(|e| CommError::Transfer(format!("writing the downloaded data failed: {e}")))?;
            self.pos += take;
            left -= take as u64;
        }
        Ok(n - left)
    }

    /// Sends `bytes` to the program's stdin.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), CommError> {
        self.tx.data_bytes(bytes.to_vec()).await.map_err(|e| send_error(&e))
    }

    /// Sends up to `limit` bytes read from `src` (all of it if `None`) to stdin, without buffering
    /// more than one chunk. Returns how many bytes were sent.
    pub(crate) async fn send_from<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        src: &mut R,
        limit: Option<u64>,
    ) -> Result<u64, CommError> {
        let mut sent = 0u64;
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let want = match limit {
                Some(l) if l - sent == 0 => break,
                Some(l) => ((l - sent) as usize).min(CHUNK),
                None => CHUNK,
            };
            let n = src
                .read(&mut chunk[..want])
                .await
                .map_err(|e| CommError::Transfer(format!("reading the data to upload failed: {e}")))?;
            if n == 0 {
                break;
            }
            self.tx.data_bytes(chunk[..n].to_vec()).await.map_err(|e| send_error(&e))?;
            sent += n as u64;
        }
        Ok(sent)
    }

    /// Closes the program's stdin.
    pub(crate) async fn eof(&mut self) {
        let _ = self.tx.eof().await;
    }

    /// Waits for the channel to close and returns how the program ended (`None`: no status sent).
    pub(crate) async fn finish(&mut self) -> Option<Exit> {
        while self.pump().await {}
        self.exit.clone()
    }
}

/// Maps a failure to send on a channel.
pub(crate) fn send_error(e: &russh::Error) -> CommError {
    CommError::Disconnected(format!("could not send on the SSH channel: {e}"))
}

/// Copies everything from `src` to `dst` in 32 KiB chunks (used where `tokio::io::copy`'s
/// buffering is not wanted). Returns the byte count.
#[allow(dead_code)]
pub(crate) async fn copy_all<R, W>(src: &mut R, dst: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut chunk = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut chunk).await?;
        if n == 0 {
            return Ok(total);
        }
        dst.write_all(&chunk[..n]).await?;
        total += n as u64;
    }
}
