//! Spawning QEMU and its tools so that they never outlive the plugin.

use std::ffi::OsStr;

/// A command for `program` that is killed when the plugin dies (`PR_SET_PDEATHSIG` = SIGKILL, set
/// in the child before exec) and when the returned `Child` is dropped.
///
/// Packer ends plugins with SIGKILL, so nothing in the plugin runs at that point: the kernel must
/// take QEMU down with us. The death signal is tied to the spawning *thread*; spawn from a tokio
/// worker thread (async context), which lives as long as the runtime, never from a short-lived
/// blocking-pool thread.
pub fn command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.kill_on_drop(true);
    // SAFETY: the closure only calls prctl(2) (async-signal-safe) and getppid(2) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL)).map_err(std::io::Error::from)?;
            // the parent may have died between fork and prctl: then we were re-parented already
            if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
                return Err(std::io::Error::other("the plugin exited while QEMU was starting"));
            }
            Ok(())
        });
    }
    cmd
}
