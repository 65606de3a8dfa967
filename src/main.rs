//! `packer-plugin-qemu-rs`: the plugin binary Packer starts.
//!
//! argv dispatch only (see `packer_sdk::plugin`): `describe`, `start builder|provisioner
//! [--protobuf] NAME`, or no arguments under a legacy Packer 1.6.6 name
//! (`packer-builder-qemu-rs`, `packer-provisioner-qemu-rs-shell`, `packer-post-processor-qemu-rs-convert`).

use std::process::ExitCode;

use packer_sdk::plugin::{default_log_filter, PluginSet, DEFAULT_NAME};

/// The version `describe` reports: the one `make release` built for (`QEMU_RS_RELEASE_VERSION` at
/// compile time), else the crate's.
const VERSION: &str = match option_env!("QEMU_RS_RELEASE_VERSION") {
    Some(v) if !v.is_empty() => v,
    _ => env!("CARGO_PKG_VERSION"),
};

fn main() -> ExitCode {
    // Logs go to stderr (Packer shows them with PACKER_LOG=1); stdout carries only the handshake.
    // QEMU_RS_LOG_PATH also appends them to a file of the plugin's own: it outlives Packer core,
    // whose log ends when core is killed while the plugin still cleans up.
    let file = std::env::var_os("QEMU_RS_LOG_PATH")
        .filter(|p| !p.is_empty())
        .and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok())
        .map(std::sync::Arc::new);
    let _ = tracing_subscriber::fmt()
        .with_writer(move || Tee(file.clone()))
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(default_log_filter()))
        .try_init();
    let mut set = PluginSet::new(VERSION);
    set.register_provisioner("shell", || Box::new(provisioner_shell::ShellProvisioner::default()));
    set.register_builder(DEFAULT_NAME, || Box::new(builder_qemu::QemuBuilder::default()));
    // `post-processor "qemu-rs-convert"` (legacy file name packer-post-processor-qemu-rs-convert)
    set.register_post_processor("convert", || Box::new(post_processor_convert::ConvertPostProcessor::default()));
    set.run(std::env::args().collect())
}

/// Writes log lines to stderr and, when set, to the `QEMU_RS_LOG_PATH` file.
struct Tee(Option<std::sync::Arc<std::fs::File>>);

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = &self.0 {
            let _ = (&**f).write_all(buf);
        }
        // stderr is Packer's pipe: once core is gone, writes fail with EPIPE. They are dropped
        // here on purpose: an error returned to tracing-subscriber makes it report the failure with
        // eprintln!, which panics on the broken pipe — in the middle of the build task, so its
        // cleanups (the output directory) never ran after Packer core was killed.
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
