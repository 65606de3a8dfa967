//! Streaming a remote command's output to Packer's UI line by line, as it arrives.
//!
//! [`LineWriter`] is an `AsyncWrite` that cuts what it receives into lines and sends each
//! complete line into a channel; [`forward_lines`] drains that channel into the [`Ui`]
//! (stdout → `Ui::message`, stderr → `Ui::error`, as Packer's `RunWithUi` does).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use packer_sdk::ui::Ui;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
}

/// One line of output, without its line terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where it came from.
    pub stream: Stream,
    /// The text (invalid UTF-8 replaced by U+FFFD).
    pub text: String,
}

/// An `AsyncWrite` sending every complete line to a channel. The last, unterminated line is
/// sent on `shutdown` or when the writer is dropped.
#[derive(Debug)]
pub struct LineWriter {
    stream: Stream,
    buf: Vec<u8>,
    tx: mpsc::UnboundedSender<Line>,
}

impl LineWriter {
    /// A writer for `stream` sending into `tx`.
    pub fn new(stream: Stream, tx: mpsc::UnboundedSender<Line>) -> Self {
        LineWriter { stream, buf: Vec::new(), tx }
    }

    fn send(&self, raw: &[u8]) {
        let text = clean_line(&String::from_utf8_lossy(raw));
        // A closed receiver means nobody shows output any more (cancelled): drop the line.
        let _ = self.tx.send(Line { stream: self.stream, text });
    }

    fn flush_partial(&mut self) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.send(&rest);
        }
    }
}

/// Drops the line terminator and, for progress output that redraws a line with `\r`, keeps
/// only the last version of the line.
fn clean_line(line: &str) -> String {
    let line = line.trim_end_matches(['\r', '\n']);
    match line.rfind('\r') {
        Some(i) => line[i + 1..].to_string(),
        None => line.to_string(),
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            if this.buf.is_empty() {
                this.send(&rest[..nl]);
            } else {
                this.buf.extend_from_slice(&rest[..nl]);
                let line = std::mem::take(&mut this.buf);
                this.send(&line);
            }
            rest = &rest[nl + 1..];
        }
        this.buf.extend_from_slice(rest);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

/// A stdout and a stderr writer for a remote command, plus the receiver of their lines.
pub fn line_writers() -> (LineWriter, LineWriter, mpsc::UnboundedReceiver<Line>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (LineWriter::new(Stream::Stdout, tx.clone()), LineWriter::new(Stream::Stderr, tx), rx)
}

/// Shows every line received on `rx` in `ui`, in order, until both writers are gone.
pub async fn forward_lines(mut rx: mpsc::UnboundedReceiver<Line>, ui: Arc<dyn Ui>) {
    while let Some(line) = rx.recv().await {
        match line.stream {
            Stream::Stdout => ui.message(&line.text).await,
            Stream::Stderr => ui.error(&line.text).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn drain(rx: &mut mpsc::UnboundedReceiver<Line>) -> Vec<(Stream, String)> {
        let mut v = Vec::new();
        while let Ok(l) = rx.try_recv() {
            v.push((l.stream, l.text));
        }
        v
    }

    #[tokio::test]
    async fn lines_are_sent_as_soon_as_complete() {
        let (mut out, mut err, mut rx) = line_writers();
        out.write_all(b"hel").await.unwrap();
        assert!(drain(&mut rx).is_empty(), "no complete line yet");
        out.write_all(b"lo\nwor").await.unwrap();
        assert_eq!(drain(&mut rx), vec![(Stream::Stdout, "hello".to_string())]);
        err.write_all(b"oops\r\n\n").await.unwrap();
        assert_eq!(drain(&mut rx), vec![(Stream::Stderr, "oops".to_string()), (Stream::Stderr, String::new())]);
        out.write_all(b"ld").await.unwrap();
        out.shutdown().await.unwrap();
        assert_eq!(drain(&mut rx), vec![(Stream::Stdout, "world".to_string())]);
    }

    #[tokio::test]
    async fn partial_line_is_sent_on_drop_and_progress_is_collapsed() {
        let (mut out, err, mut rx) = line_writers();
        out.write_all(b"10%\r50%\r100%\nlast").await.unwrap();
        drop(out);
        drop(err);
        assert_eq!(drain(&mut rx), vec![(Stream::Stdout, "100%".to_string()), (Stream::Stdout, "last".to_string())]);
        assert!(rx.recv().await.is_none(), "channel closes when both writers are gone");
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced() {
        let (mut out, _err, mut rx) = line_writers();
        out.write_all(b"a\xffb\n").await.unwrap();
        assert_eq!(drain(&mut rx), vec![(Stream::Stdout, "a\u{fffd}b".to_string())]);
    }
}
