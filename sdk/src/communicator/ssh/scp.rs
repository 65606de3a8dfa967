//! The scp protocol (`scp -t` sink, `scp -f` source) spoken over an exec channel, as Packer's
//! default file transfer does. The machine needs an `scp` binary.
//!
//! Records: `C<mode> <size> <name>\n` + data + `\0` (a file), `D<mode> 0 <name>\n` (enter a
//! directory), `E\n` (leave it), `T…\n` (times, ignored). Every record is acknowledged with one
//! byte: `0` ok, `1` warning or `2` error followed by a message line.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::channel::{ChannelIo, Exit};
use super::walk::{check_name, is_excluded, join_rel, Op};
use crate::communicator::CommError;

/// Longest protocol line accepted from the remote scp.
const MAX_LINE: usize = 64 * 1024;

/// Explains why the remote scp ended without a reply.
fn ended_early(io: &ChannelIo, exit: Option<Exit>) -> CommError {
    let stderr = io.stderr_text();
    let status = match exit {
        Some(Exit::Status(127)) => {
            return CommError::Transfer(format!(
                "there is no `scp` on the machine ({stderr}); install it (openssh-client) or set \
                 ssh_file_transfer_method = \"sftp\""
            ))
        }
        Some(Exit::Status(n)) => format!("exit status {n}"),
        Some(Exit::Signal(s)) => format!("signal {s}"),
        None => "no exit status".to_string(),
    };
    let detail = if stderr.is_empty() { String::new() } else { format!(": {stderr}") };
    CommError::Transfer(format!("the remote scp ended unexpectedly ({status}){detail}"))
}

/// Reads one acknowledgement of the remote sink or source.
async fn ack(io: &mut ChannelIo, what: &str) -> Result<(), CommError> {
    match io.read_byte().await {
        Some(0) => Ok(()),
        Some(code @ (1 | 2)) => {
            let msg = io.read_line(MAX_LINE).await?.unwrap_or_default();
            let kind = if code == 1 { "warning" } else { "error" };
            Err(CommError::Transfer(format!("scp on the machine reported an {kind} for {what}: {}", msg.trim())))
        }
        Some(other) => {
            let rest = io.read_line(MAX_LINE).await?.unwrap_or_default();
            Err(CommError::Transfer(format!(
                "unexpected reply from scp on the machine for {what}: {:?} (is the login shell printing \
                 text for non-interactive sessions? it must not)",
                format!("{}{}", other as char, rest)
            )))
        }
        None => {
            let exit = io.finish().await;
            Err(ended_early(io, exit))
        }
    }
}

/// Closes stdin and checks that the remote scp exited with status 0.
async fn finish(io: &mut ChannelIo) -> Result<(), CommError> {
    io.eof().await;
    match io.finish().await {
        Some(Exit::Status(0)) => Ok(()),
        exit => Err(ended_early(io, exit)),
    }
}

/// Sends one file record and its data, `size` bytes read from `data`.
async fn send_file<R: AsyncRead + Unpin + ?Sized>(
    io: &mut ChannelIo,
    name: &str,
    mode: u32,
    size: u64,
    data: &mut R,
) -> Result<(), CommError> {
    check_name(name)?;
    io.send(format!("C{:04o} {size} {name}\n", mode & 0o7777).as_bytes()).await?;
    ack(io, &format!("the file {name:?}")).await?;
    let sent = io.send_from(data, Some(size)).await?;
    if sent != size {
        return Err(CommError::Transfer(format!(
            "the data for {name:?} ended after {sent} of the announced {size} bytes (did the file change \
             during the upload?)"
        )));
    }
    io.send(&[0]).await?;
    ack(io, &format!("the data of {name:?}")).await
}

/// Uploads `size` bytes of `data` as `name` into the directory the sink (`scp -t DIR`) runs in.
pub(crate) async fn upload<R: AsyncRead + Unpin + ?Sized>(
    io: &mut ChannelIo,
    name: &str,
    mode: u32,
    size: u64,
    data: &mut R,
) -> Result<(), CommError> {
    ack(io, "the start of the upload").await?;
    send_file(io, name, mode, size, data).await?;
    finish(io).await
}

/// Performs a planned directory upload into a recursive sink (`scp -rt DIR`).
pub(crate) async fn upload_dir(io: &mut ChannelIo, ops: &[Op]) -> Result<(), CommError> {
    ack(io, "the start of the upload").await?;
    for op in ops {
        match op {
            Op::EnterDir { name, mode, .. } => {
                check_name(name)?;
                io.send(format!("D{:04o} 0 {name}\n", mode & 0o7777).as_bytes()).await?;
                ack(io, &format!("the directory {name:?}")).await?;
            }
            Op::File { name, local, mode, size, .. } => {
                let mut f = tokio::fs::File::open(local)
                    .await
                    .map_err(|e| CommError::Transfer(format!("cannot open {}: {e}", local.display())))?;
                send_file(io, name, *mode, *size, &mut f).await?;
            }
            Op::LeaveDir => {
                io.send(b"E\n").await?;
                ack(io, "the end of a directory").await?;
            }
        }
    }
    finish(io).await
}

/// A parsed `C` or `D` record.
struct Record {
    mode: u32,
    size: u64,
    name: String,
}

fn parse_record(line: &str) -> Result<Record, CommError> {
    let bad = || CommError::Transfer(format!("scp on the machine sent a malformed record: {line:?}"));
    let body = line.get(1..).ok_or_else(bad)?;
    let mut parts = body.splitn(3, ' ');
    let mode = u32::from_str_radix(parts.next().ok_or_else(bad)?, 8).map_err(|_| bad())?;
    let size = parts.next().ok_or_else(bad)?.parse::<u64>().map_err(|_| bad())?;
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok(Record { mode, size, name })
}

/// Reads the next record line; `Ok(None)` if the source ended.
async fn next_record(io: &mut ChannelIo) -> Result<Option<(u8, String)>, CommError> {
    let Some(kind) = io.read_byte().await else { return Ok(None) };
    let rest = io.read_line(MAX_LINE).await?.unwrap_or_default();
    match kind {
        1 | 2 => Err(CommError::Transfer(format!("scp on the machine reported: {}", rest.trim()))),
        b'C' | b'D' | b'E' | b'T' => Ok(Some((kind, format!("{}{rest}", kind as char)))),
        other => Err(CommError::Transfer(format!(
            "unexpected output from scp on the machine: {:?}",
            format!("{}{rest}", other as char)
        ))),
    }
}

/// Downloads the single file a source (`scp -f PATH`) sends into `out`.
pub(crate) async fn download<W: AsyncWrite + Unpin + ?Sized>(io: &mut ChannelIo, out: &mut W) -> Result<(), CommError> {
    io.send(&[0]).await?;
    loop {
        let Some((kind, line)) = next_record(io).await? else {
            let exit = io.finish().await;
            return Err(ended_early(io, exit));
        };
        match kind {
            b'T' => io.send(&[0]).await?,
            b'C' => {
                let rec = parse_record(&line)?;
                io.send(&[0]).await?;
                let got = io.copy_to(out, rec.size).await?;
                if got != rec.size {
                    let exit = io.finish().await;
                    return Err(ended_early(io, exit));
                }
                ack(io, "the end of the file data").await?;
                io.send(&[0]).await?;
                out.flush().await.map_err(|e| CommError::Transfer(format!("writing the download failed: {e}")))?;
                return finish(io).await;
            }
            _ => {
                return Err(CommError::Transfer(
                    "the remote path is a directory; use download_dir for directories".to_string(),
                ))
            }
        }
    }
}

/// Where a received entry goes: `None` for excluded ones (their data is read and dropped).
struct Level {
    local: Option<PathBuf>,
    src_rel: String,
}

/// Receives a recursive source (`scp -rf SRC`) into the local directory `dst`. With
/// `contents_only`, the top-level directory's contents land directly in `dst`, otherwise in
/// `dst/<name>`. Entries matching `exclude` (relative to the source directory) are skipped.
pub(crate) async fn download_dir(
    io: &mut ChannelIo,
    dst: &Path,
    contents_only: bool,
    exclude: &[String],
) -> Result<(), CommError> {
    let local_err = |p: &Path, e: std::io::Error| CommError::Transfer(format!("cannot write {}: {e}", p.display()));
    tokio::fs::create_dir_all(dst).await.map_err(|e| local_err(dst, e))?;
    let mut stack: Vec<Level> = Vec::new();
    io.send(&[0]).await?;
    loop {
        let Some((kind, line)) = next_record(io).await? else {
            if stack.is_empty() {
                break;
            }
            let exit = io.finish().await;
            return Err(ended_early(io, exit));
        };
        match kind {
            b'T' => io.send(&[0]).await?,
            b'E' => {
                if stack.pop().is_none() {
                    return Err(CommError::Transfer("scp on the machine left more directories than it entered".into()));
                }
                io.send(&[0]).await?;
                if stack.is_empty() {
                    break;
                }
            }
            b'D' => {
                let rec = parse_record(&line)?;
                check_name(&rec.name)?;
                let level = match stack.last() {
                    None => Level {
                        local: Some(if contents_only { dst.to_path_buf() } else { dst.join(&rec.name) }),
                        src_rel: String::new(),
                    },
                    Some(parent) => {
                        let src_rel = join_rel(&parent.src_rel, &rec.name);
                        let local = match &parent.local {
                            Some(p) if !is_excluded(&src_rel, exclude) => Some(p.join(&rec.name)),
                            _ => None,
                        };
                        Level { local, src_rel }
                    }
                };
                if let Some(p) = &level.local {
                    tokio::fs::create_dir_all(p).await.map_err(|e| local_err(p, e))?;
                    set_mode(p, rec.mode | 0o700).await;
                }
                stack.push(level);
                io.send(&[0]).await?;
            }
            _ => {
                let rec = parse_record(&line)?;
                check_name(&rec.name)?;
                let (target, src_rel) = match stack.last() {
                    None => (Some(dst.join(&rec.name)), rec.name.clone()),
                    Some(parent) => {
                        let src_rel = join_rel(&parent.src_rel, &rec.name);
                        let t = match &parent.local {
                            Some(p) if !is_excluded(&src_rel, exclude) => Some(p.join(&rec.name)),
                            _ => None,
                        };
                        (t, src_rel)
                    }
                };
                io.send(&[0]).await?;
                let got = match &target {
                    Some(path) => {
                        let mut f = tokio::fs::File::create(path).await.map_err(|e| local_err(path, e))?;
                        let got = io.copy_to(&mut f, rec.size).await?;
                        f.flush().await.map_err(|e| local_err(path, e))?;
                        drop(f);
                        set_mode(path, rec.mode).await;
                        got
                    }
                    None => {
                        tracing::debug!(path = %src_rel, "excluded from the directory download");
                        io.copy_to(&mut tokio::io::sink(), rec.size).await?
                    }
                };
                if got != rec.size {
                    let exit = io.finish().await;
                    return Err(ended_early(io, exit));
                }
                ack(io, &format!("the data of {:?}", rec.name)).await?;
                io.send(&[0]).await?;
                if stack.is_empty() {
                    // A plain file as the source: it is the whole transfer.
                    break;
                }
            }
        }
    }
    finish(io).await
}

/// Applies permission bits to a downloaded entry; failures only warn (the data is there).
async fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777)).await {
        tracing::warn!(path = %path.display(), "could not set the mode of a downloaded entry: {e}");
    }
}
