//! `packer-plugin-qemu-rs`: the plugin binary Packer starts.
//!
//! argv dispatch only (see `packer_sdk::plugin`): `describe`, `start builder|provisioner
//! [--protobuf] NAME`, or no arguments under a legacy Packer 1.6.6 name
//! (`packer-builder-qemu-rs`, `packer-provisioner-qemu-rs-shell`).

use std::process::ExitCode;

use packer_sdk::plugin::{default_log_filter, PluginSet, DEFAULT_NAME};

fn main() -> ExitCode {
    // Logs go to stderr (Packer shows them with PACKER_LOG=1); stdout carries only the handshake.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(default_log_filter()))
        .try_init();
    let mut set = PluginSet::new(env!("CARGO_PKG_VERSION"));
    set.register_provisioner("shell", || Box::new(provisioner_shell::ShellProvisioner::default()));
    set.register_builder(DEFAULT_NAME, || Box::new(builder_qemu::QemuBuilder::default()));
    set.run(std::env::args().collect())
}
