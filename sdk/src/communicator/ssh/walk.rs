//! Directory transfers: walking a local tree, exclude patterns, rsync-like source naming.

use std::path::{Path, PathBuf};

use crate::communicator::CommError;

/// How deep directory transfers follow nested (and symlinked) directories.
pub(crate) const MAX_DEPTH: usize = 64;

/// One step of a directory upload, in the order a recursive copy performs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Create (if needed) and enter the directory `rel` (relative to the destination, `/`-separated).
    EnterDir { rel: String, name: String, mode: u32 },
    /// Copy the local file `local` to `rel`.
    File { rel: String, name: String, local: PathBuf, mode: u32, size: u64 },
    /// Leave the directory entered last.
    LeaveDir,
}

/// Whether a directory transfer copies the source directory itself or only its contents
/// (rsync semantics: `src/` means its contents, `src` means the directory).
pub(crate) fn copies_contents(src: &str) -> bool {
    src.ends_with('/')
}

/// Last path component of a `/`-separated path, ignoring trailing slashes.
pub(crate) fn base_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// Splits a remote file path into (directory, file name) like Go's `filepath.Dir`/`Base`.
pub(crate) fn split_remote(path: &str) -> Result<(String, String), CommError> {
    let name = base_name(path);
    if name.is_empty() || name == "." || name == ".." {
        return Err(CommError::Transfer(format!(
            "the remote path {path:?} does not name a file; give the full destination file path"
        )));
    }
    let trimmed = path.trim_end_matches('/');
    let dir = match trimmed.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => trimmed[..i].to_string(),
        None => ".".to_string(),
    };
    Ok((dir, name.to_string()))
}

/// Joins `/`-separated relative path parts, skipping empty ones.
pub(crate) fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// Whether `rel` (a path relative to the transfer root) is excluded by one of `patterns`.
/// A pattern containing `/` is matched against the whole relative path, one without `/` against
/// each path component's name (so `*.log` and `.git` exclude at any depth). `*` does not cross
/// `/`, `**` does, `?` is one character, `[a-z]`/`[!x]` are character classes. A leading `/` or
/// `./` and a trailing `/` on a pattern are ignored.
pub(crate) fn is_excluded(rel: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        let p = p.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/');
        if p.is_empty() {
            return false;
        }
        if p.contains('/') {
            glob_match(p.as_bytes(), rel.as_bytes())
        } else {
            rel.split('/').any(|part| glob_match(p.as_bytes(), part.as_bytes()))
        }
    })
}

/// Shell-style glob matching of `text` against `pat` (see [`is_excluded`]).
pub(crate) fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    match pat.first() {
        None => text.is_empty(),
        Some(b'*') => {
            if pat.get(1) == Some(&b'*') {
                let rest = &pat[2..];
                // `**/` may also match zero directories.
                if rest.first() == Some(&b'/') && glob_match(&rest[1..], text) {
                    return true;
                }
                (0..=text.len()).any(|i| glob_match(rest, &text[i..]))
            } else {
                let rest = &pat[1..];
                for i in 0..=text.len() {
                    if glob_match(rest, &text[i..]) {
                        return true;
                    }
                    if i < text.len() && text[i] == b'/' {
                        break;
                    }
                }
                false
            }
        }
        Some(b'?') => !text.is_empty() && text[0] != b'/' && glob_match(&pat[1..], &text[1..]),
        Some(b'[') => {
            let Some(&c) = text.first() else { return false };
            match class_match(&pat[1..], c) {
                Some((matched, consumed)) => matched && glob_match(&pat[1 + consumed..], &text[1..]),
                // No closing `]`: a literal `[`.
                None => c == b'[' && glob_match(&pat[1..], &text[1..]),
            }
        }
        Some(&p) => !text.is_empty() && text[0] == p && glob_match(&pat[1..], &text[1..]),
    }
}

/// Matches `c` against a class body starting after `[`; returns (matched, bytes consumed incl. `]`).
fn class_match(body: &[u8], c: u8) -> Option<(bool, usize)> {
    let (negate, start) = match body.first() {
        Some(b'!') | Some(b'^') => (true, 1),
        _ => (false, 0),
    };
    let mut i = start;
    let mut matched = false;
    let mut first = true;
    while i < body.len() {
        let b = body[i];
        if b == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < body.len() && body[i + 1] == b'-' && body[i + 2] != b']' {
            if body[i] <= c && c <= body[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if b == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// File mode bits of a local file (permissions only).
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// Plans the upload of the local directory `src` (rsync semantics for a trailing `/`), following
/// symlinks, sorted by name, skipping excluded entries. Runs blocking file system calls.
pub(crate) fn plan_upload(src: &Path, exclude: &[String]) -> Result<Vec<Op>, CommError> {
    let src_str = src.to_string_lossy();
    let meta = std::fs::metadata(src)
        .map_err(|e| CommError::Transfer(format!("cannot read the local directory {}: {e}", src.display())))?;
    if !meta.is_dir() {
        return Err(CommError::Transfer(format!("{} is not a directory; use upload for single files", src.display())));
    }
    let mut ops = Vec::new();
    if copies_contents(&src_str) {
        walk_local(src, "", "", exclude, 0, &mut ops)?;
    } else {
        let name = base_name(&src_str).to_string();
        if name.is_empty() || name == "." || name == ".." {
            // `dir/.` or `/`: nothing to name the directory after; copy the contents.
            walk_local(src, "", "", exclude, 0, &mut ops)?;
        } else {
            ops.push(Op::EnterDir { rel: name.clone(), name: name.clone(), mode: mode_of(&meta) });
            walk_local(src, &name, "", exclude, 0, &mut ops)?;
            ops.push(Op::LeaveDir);
        }
    }
    Ok(ops)
}

/// Adds the contents of `dir` to `ops`: `rel` is its path relative to the destination, `src_rel`
/// relative to the source directory (what exclude patterns see).
fn walk_local(
    dir: &Path,
    rel: &str,
    src_rel: &str,
    exclude: &[String],
    depth: usize,
    ops: &mut Vec<Op>,
) -> Result<(), CommError> {
    if depth > MAX_DEPTH {
        return Err(CommError::Transfer(format!(
            "{} is nested more than {MAX_DEPTH} directories deep (a symlink loop?); exclude it",
            dir.display()
        )));
    }
    let read_err = |e: std::io::Error| CommError::Transfer(format!("cannot list {}: {e}", dir.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(read_err)?.collect::<Result<_, _>>().map_err(read_err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child_rel = join_rel(rel, &name);
        let child_src_rel = join_rel(src_rel, &name);
        if is_excluded(&child_src_rel, exclude) {
            tracing::debug!(path = %child_rel, "excluded from the directory upload");
            continue;
        }
        let path = entry.path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(path = %path.display(), "skipping an unreadable entry (dangling symlink?): {e}");
                continue;
            }
        };
        if meta.is_dir() {
            ops.push(Op::EnterDir { rel: child_rel.clone(), name: name.clone(), mode: mode_of(&meta) });
            walk_local(&path, &child_rel, &child_src_rel, exclude, depth + 1, ops)?;
            ops.push(Op::LeaveDir);
        } else if meta.is_file() {
            ops.push(Op::File { rel: child_rel, name, local: path, mode: mode_of(&meta), size: meta.len() });
        } else {
            tracing::warn!(path = %path.display(), "skipping a special file (not a regular file or directory)");
        }
    }
    Ok(())
}

/// Rejects names that cannot travel in the scp protocol or would escape the destination.
pub(crate) fn check_name(name: &str) -> Result<(), CommError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\n') {
        return Err(CommError::Transfer(format!("refusing the unsafe file name {name:?} in a directory transfer")));
    }
    Ok(())
}

/// Quotes `path` for a POSIX shell, keeping a leading `~/` unquoted so that it still expands.
pub(crate) fn shell_quote(path: &str) -> String {
    fn q(s: &str) -> String {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
    if path == "~" {
        "~".to_string()
    } else if let Some(rest) = path.strip_prefix("~/") {
        format!("~/{}", q(rest))
    } else {
        q(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(rel: &str, pats: &[&str]) -> bool {
        is_excluded(rel, &pats.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*.log", b"a.log"));
        assert!(!glob_match(b"*.log", b"d/a.log"));
        assert!(glob_match(b"**/*.log", b"d/e/a.log"));
        assert!(glob_match(b"**/*.log", b"a.log"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"a/c"));
        assert!(glob_match(b"[a-c]x", b"bx"));
        assert!(!glob_match(b"[!a-c]x", b"bx"));
        assert!(glob_match(b"[!a-c]x", b"dx"));
        assert!(glob_match(b"d/*", b"d/x"));
        assert!(!glob_match(b"d/*", b"d/x/y"));
    }

    #[test]
    fn excludes() {
        assert!(ex("sub/x.log", &["*.log"]));
        assert!(ex(".git/config", &[".git"]));
        assert!(ex("sub/keep", &["sub/"]));
        assert!(!ex("sub/keep", &["sub/other"]));
        assert!(ex("sub/keep", &["./sub/keep"]));
        assert!(!ex("a.txt", &["*.log", ""]));
    }

    #[test]
    fn remote_paths() {
        assert_eq!(split_remote("/tmp/x.sh").unwrap(), ("/tmp".into(), "x.sh".into()));
        assert_eq!(split_remote("/x").unwrap(), ("/".into(), "x".into()));
        assert_eq!(split_remote("x").unwrap(), (".".into(), "x".into()));
        assert!(split_remote("/tmp/..").is_err());
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(shell_quote("/tmp/it's here"), "'/tmp/it'\\''s here'");
        assert_eq!(shell_quote("~/x y"), "~/'x y'");
    }
}
