//! File transfers over the SFTP subsystem (`ssh_file_transfer_method = "sftp"`), through
//! `russh-sftp`. The machine needs an sftp server (`Subsystem sftp …` in its sshd).

use std::path::Path;

use russh_sftp::client::SftpSession;
use russh_sftp::protocol::FileAttributes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::channel::copy_all;
use super::walk::{check_name, is_excluded, join_rel, Op, MAX_DEPTH};
use crate::communicator::CommError;

fn sftp_err(what: &str, path: &str, e: impl std::fmt::Display) -> CommError {
    CommError::Transfer(format!("sftp: {what} {path:?} failed: {e}"))
}

/// Creates (or truncates) the remote file `path`, streams `data` into it and sets `mode`.
pub(crate) async fn upload<R: AsyncRead + Unpin + ?Sized>(
    sftp: &SftpSession,
    path: &str,
    data: &mut R,
    mode: u32,
) -> Result<u64, CommError> {
    let mut file = sftp.create(path).await.map_err(|e| sftp_err("creating", path, e))?;
    let n = copy_all(data, &mut file).await.map_err(|e| sftp_err("writing", path, e))?;
    file.shutdown().await.map_err(|e| sftp_err("closing", path, e))?;
    drop(file);
    chmod(sftp, path, mode).await?;
    Ok(n)
}

async fn chmod(sftp: &SftpSession, path: &str, mode: u32) -> Result<(), CommError> {
    let attrs = FileAttributes { permissions: Some(mode & 0o7777), ..FileAttributes::empty() };
    sftp.set_metadata(path, attrs).await.map_err(|e| sftp_err("setting the mode of", path, e))
}

/// Streams the remote file `path` into `out`.
pub(crate) async fn download<W: AsyncWrite + Unpin + ?Sized>(
    sftp: &SftpSession,
    path: &str,
    out: &mut W,
) -> Result<u64, CommError> {
    let meta = sftp.metadata(path).await.map_err(|e| sftp_err("reading", path, e))?;
    if meta.is_dir() {
        return Err(CommError::Transfer(format!(
            "the remote path {path:?} is a directory; use download_dir for directories"
        )));
    }
    let mut file = sftp.open(path).await.map_err(|e| sftp_err("opening", path, e))?;
    let n = copy_all(&mut file, out).await.map_err(|e| sftp_err("reading", path, e))?;
    Ok(n)
}

/// Creates the remote directory `path` unless it already exists as a directory.
async fn ensure_dir(sftp: &SftpSession, path: &str, mode: Option<u32>) -> Result<(), CommError> {
    match sftp.metadata(path).await {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(CommError::Transfer(format!(
                "the remote path {path:?} exists and is not a directory; remove it or pick another destination"
            )))
        }
        Err(_) => sftp.create_dir(path).await.map_err(|e| sftp_err("creating the directory", path, e))?,
    }
    if let Some(mode) = mode {
        chmod(sftp, path, mode).await?;
    }
    Ok(())
}

/// Creates `path` and its missing parents (`mkdir -p`).
pub(crate) async fn mkdir_all(sftp: &SftpSession, path: &str) -> Result<(), CommError> {
    let absolute = path.starts_with('/');
    let mut cur = String::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        cur = if cur.is_empty() && !absolute { part.to_string() } else { format!("{cur}/{part}") };
        ensure_dir(sftp, &cur, None).await?;
    }
    Ok(())
}

/// Performs a planned directory upload below the remote directory `dst` (which must exist).
pub(crate) async fn upload_dir(sftp: &SftpSession, dst: &str, ops: &[Op]) -> Result<(), CommError> {
    let base = dst.trim_end_matches('/');
    let remote = |rel: &str| if base.is_empty() { format!("/{rel}") } else { format!("{base}/{rel}") };
    for op in ops {
        match op {
            Op::EnterDir { rel, name, mode } => {
                check_name(name)?;
                ensure_dir(sftp, &remote(rel), Some(*mode)).await?;
            }
            Op::File { rel, name, local, mode, .. } => {
                check_name(name)?;
                let mut f = tokio::fs::File::open(local)
                    .await
                    .map_err(|e| CommError::Transfer(format!("cannot open {}: {e}", local.display())))?;
                upload(sftp, &remote(rel), &mut f, *mode).await?;
            }
            Op::LeaveDir => {}
        }
    }
    Ok(())
}

/// Downloads the remote directory `src` into `dst` (contents only, or as `dst/<name>`).
pub(crate) async fn download_dir(
    sftp: &SftpSession,
    src: &str,
    dst: &Path,
    contents_only: bool,
    exclude: &[String],
) -> Result<(), CommError> {
    let meta = sftp.metadata(src).await.map_err(|e| sftp_err("reading", src, e))?;
    let target = if contents_only { dst.to_path_buf() } else { dst.join(super::walk::base_name(src)) };
    if !meta.is_dir() {
        // A single file: Packer's scp download_dir accepts that too.
        let name = super::walk::base_name(src);
        check_name(name)?;
        tokio::fs::create_dir_all(dst).await.map_err(|e| local_err(dst, e))?;
        let path = dst.join(name);
        let mut f = tokio::fs::File::create(&path).await.map_err(|e| local_err(&path, e))?;
        download(sftp, src, &mut f).await?;
        f.flush().await.map_err(|e| local_err(&path, e))?;
        return Ok(());
    }
    tokio::fs::create_dir_all(&target).await.map_err(|e| local_err(&target, e))?;
    let mut todo: Vec<(String, String, std::path::PathBuf, usize)> =
        vec![(src.trim_end_matches('/').to_string(), String::new(), target, 0)];
    while let Some((remote_dir, rel, local_dir, depth)) = todo.pop() {
        if depth > MAX_DEPTH {
            return Err(CommError::Transfer(format!(
                "{remote_dir:?} is nested more than {MAX_DEPTH} directories deep (a symlink loop?); exclude it"
            )));
        }
        let listing_path = if remote_dir.is_empty() { "/".to_string() } else { remote_dir.clone() };
        let entries = sftp.read_dir(listing_path.as_str()).await.map_err(|e| sftp_err("listing", &listing_path, e))?;
        for entry in entries {
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            check_name(&name)?;
            let child_rel = join_rel(&rel, &name);
            if is_excluded(&child_rel, exclude) {
                tracing::debug!(path = %child_rel, "excluded from the directory download");
                continue;
            }
            let remote = format!("{remote_dir}/{name}");
            // Follow symlinks like scp does.
            let meta = sftp.metadata(remote.as_str()).await.map_err(|e| sftp_err("reading", &remote, e))?;
            let local = local_dir.join(&name);
            if meta.is_dir() {
                tokio::fs::create_dir_all(&local).await.map_err(|e| local_err(&local, e))?;
                todo.push((remote, child_rel, local, depth + 1));
            } else if meta.is_regular() {
                let mut f = tokio::fs::File::create(&local).await.map_err(|e| local_err(&local, e))?;
                download(sftp, &remote, &mut f).await?;
                f.flush().await.map_err(|e| local_err(&local, e))?;
                if let Some(mode) = meta.permissions {
                    use std::os::unix::fs::PermissionsExt;
                    let perms = std::fs::Permissions::from_mode(mode & 0o7777);
                    tokio::fs::set_permissions(&local, perms).await.map_err(|e| local_err(&local, e))?;
                }
            } else {
                tracing::warn!(path = %remote, "skipping a special remote file (not a regular file or directory)");
            }
        }
    }
    Ok(())
}

fn local_err(p: &Path, e: std::io::Error) -> CommError {
    CommError::Transfer(format!("cannot write {}: {e}", p.display()))
}
