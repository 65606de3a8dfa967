//! Removing what a build made when the plugin itself is SIGKILLed.
//!
//! Cleanups run inside the plugin (steps, `Cancel`, the drain when core vanishes), so a SIGKILL of
//! the plugin process (the OOM killer, `kill -9`, a CI runner ending the process tree) leaves the
//! output directory and temp files behind. A *janitor* closes that gap: a small helper process
//! (this same executable, started with [`JANITOR_ENV`] set) that holds the read end of a pipe
//! whose write end only the plugin has. The plugin tells it which paths to remove should it die
//! ([`guard`]) and which not any more (dropping the [`Guard`]). When the pipe reaches end of file
//! — the kernel closes it whatever way the plugin ended — the janitor removes the paths still
//! guarded and exits. A plugin that ends normally has released every guard, so nothing is removed.
//!
//! The janitor ignores SIGINT, SIGTERM and SIGHUP (Ctrl-C reaches the whole process group; the
//! plugin still runs and cleans up itself then), writes nothing to Packer's pipes, and is started
//! only when something is first guarded, in a process that called [`enable`]. Paths travel hex-encoded, one command per line:
//! `+HEX` guards, `-HEX` releases.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set in the janitor's environment; [`crate::plugin::PluginSet::run`] then runs [`serve_stdin`].
pub const JANITOR_ENV: &str = "PACKER_RS_JANITOR";

/// How the plugin reaches its janitor: not started yet, running, or unavailable (logged once).
enum Link {
    NotStarted,
    Running(ChildStdin),
    Unavailable,
}

static LINK: Mutex<Link> = Mutex::new(Link::NotStarted);
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Lets [`guard`] start the janitor. Only a plugin process serving Packer calls this (the
/// janitor is this executable started again: in a test binary that would run the tests anew), so
/// elsewhere guards do nothing.
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// A path the janitor removes if the plugin dies while this value lives. Dropping it releases the
/// path (the janitor forgets it; nothing is removed).
#[derive(Debug)]
#[must_use = "the path is released as soon as the guard is dropped"]
pub struct Guard {
    path: PathBuf,
}

impl Guard {
    /// The guarded path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        send('-', &self.path);
    }
}

/// Asks the janitor to remove `path` (a file, or a directory with everything in it) if the plugin
/// dies before the returned guard is dropped. Relative paths are made absolute first (the janitor
/// runs in the plugin's working directory, but a path that is absolute cannot be misread).
pub fn guard(path: &Path) -> Guard {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    send('+', &path);
    Guard { path }
}

fn send(op: char, path: &Path) {
    let mut link = LINK.lock().unwrap_or_else(|e| e.into_inner());
    if matches!(*link, Link::NotStarted) {
        if !ENABLED.load(Ordering::SeqCst) {
            return;
        }
        *link = start();
    }
    if let Link::Running(stdin) = &mut *link {
        let line = format!("{op}{}\n", hex::encode(path.as_os_str().as_bytes()));
        if let Err(e) = stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush()) {
            tracing::warn!("the janitor is gone ({e}); a SIGKILL of the plugin would leave its files behind");
            *link = Link::Unavailable;
        }
    }
}

fn start() -> Link {
    // /proc/self/exe: the very binary running now, even if its file was replaced or removed.
    let spawned = Command::new("/proc/self/exe")
        .env(JANITOR_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned.map(|mut c| (c.id(), c.stdin.take())) {
        Ok((pid, Some(stdin))) => {
            tracing::debug!(pid, "janitor started");
            Link::Running(stdin)
        }
        Ok((_, None)) => Link::Unavailable,
        Err(e) => {
            tracing::warn!("cannot start the janitor ({e}); a SIGKILL of the plugin would leave its files behind");
            Link::Unavailable
        }
    }
}

/// The janitor process: ignores the terminal's signals, reads commands from stdin until end of
/// file, then removes what is still guarded.
pub fn serve_stdin() -> ExitCode {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGPIPE] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(s, SigHandler::SigIgn) };
    }
    let stdin = std::io::stdin();
    let left = track(stdin.lock());
    remove_all(&left);
    ExitCode::SUCCESS
}

/// Applies the commands read from `input` until its end and returns the paths still guarded, in
/// the order they were first guarded. A path guarded twice needs two releases.
pub fn track(input: impl BufRead) -> Vec<PathBuf> {
    let mut counts: HashMap<PathBuf, usize> = HashMap::new();
    let mut order: Vec<PathBuf> = Vec::new();
    for line in input.split(b'\n') {
        let Ok(line) = line else { break };
        let Some((&op, hex)) = line.split_first() else { continue };
        let Ok(bytes) = hex::decode(hex) else { continue };
        let path = PathBuf::from(std::ffi::OsString::from_vec(bytes));
        match op {
            b'+' => {
                let n = counts.entry(path.clone()).or_insert(0);
                if *n == 0 {
                    order.push(path);
                }
                *n += 1;
            }
            b'-' => {
                if let Some(n) = counts.get_mut(&path) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&path);
                        order.retain(|p| p != &path);
                    }
                }
            }
            _ => {}
        }
    }
    order
}

/// Removes `paths`, newest first. Processes the plugin started die with it (their death signal),
/// possibly a moment later and still writing into a directory: a removal that finds new files is
/// retried a few times.
pub fn remove_all(paths: &[PathBuf]) {
    for path in paths.iter().rev() {
        for attempt in 0..5 {
            let r = match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
                Ok(_) => std::fs::remove_file(path),
                Err(_) => break,
            };
            if r.is_ok() || attempt == 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(op: char, p: &Path) -> String {
        format!("{op}{}\n", hex::encode(p.as_os_str().as_bytes()))
    }

    #[test]
    fn released_paths_are_forgotten_and_the_rest_kept_in_order() {
        let (a, b, c) = (Path::new("/x/a"), Path::new("/x/b dir\n"), Path::new("/x/c"));
        let input = [line('+', a), line('+', b), line('+', c), line('-', a), line('+', c), line('-', c)].concat();
        assert_eq!(track(input.as_bytes()), vec![b.to_path_buf(), c.to_path_buf()]);
        // garbage and releases of unknown paths are ignored
        let input = ["zz\n".to_string(), "+nothex\n".into(), line('-', a), line('+', a)].concat();
        assert_eq!(track(input.as_bytes()), vec![a.to_path_buf()]);
    }

    #[test]
    fn remove_all_takes_files_and_directory_trees() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("out");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/disk.qcow2"), b"x").unwrap();
        let file = dir.path().join("cd.iso");
        std::fs::write(&file, b"y").unwrap();
        let keep = dir.path().join("keep");
        std::fs::write(&keep, b"z").unwrap();
        remove_all(&[tree.clone(), file.clone(), dir.path().join("missing")]);
        assert!(!tree.exists() && !file.exists());
        assert!(keep.exists());
    }
}
