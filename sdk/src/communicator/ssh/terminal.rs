//! Asking the person running Packer, on the controlling terminal (`/dev/tty`), the questions of a
//! keyboard-interactive login (`ssh_bastion_interactive`, e.g. a one-time code). A plugin's stdin
//! and stdout belong to Packer, so like Packer this opens `/dev/tty` itself.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;

use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};

/// Shows `header` (if any), then asks each `(prompt, echo)` and returns the answers in order.
/// Answers to prompts without echo (passwords, codes) are typed invisibly.
pub(crate) fn ask(header: &str, questions: &[(String, bool)]) -> std::io::Result<Vec<String>> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| std::io::Error::new(e.kind(), format!("/dev/tty cannot be opened ({e})")))?;
    let mut out = tty.try_clone()?;
    let mut input = BufReader::new(tty);
    if !header.is_empty() {
        writeln!(out, "{header}")?;
    }
    let mut answers = Vec::with_capacity(questions.len());
    for (prompt, echo) in questions {
        write!(out, "{prompt}")?;
        out.flush()?;
        let saved = if *echo { None } else { tcgetattr(out.as_fd()).ok() };
        if let Some(saved) = &saved {
            let mut quiet = saved.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            let _ = tcsetattr(out.as_fd(), SetArg::TCSANOW, &quiet);
        }
        let mut line = String::new();
        let read = input.read_line(&mut line);
        if let Some(saved) = &saved {
            let _ = tcsetattr(out.as_fd(), SetArg::TCSANOW, saved);
            writeln!(out)?;
        }
        if read? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the terminal was closed"));
        }
        answers.push(line.trim_end_matches(['\n', '\r']).to_string());
    }
    Ok(answers)
}
