//! The build steps, one file each, in build order. Each step does one thing and undoes it in
//! its cleanup.

use packer_sdk::step::StepError;

pub mod accel;
pub mod boot_command;
pub mod cd;
pub mod convert;
pub mod disk;
pub mod efi;
pub mod fetch_media;
pub mod floppy;
pub mod guest_address;
pub mod http;
pub mod launch;
pub mod manifest;
pub mod net_bridge;
pub mod output_dir;
pub mod provision;
pub mod shutdown;
pub mod ssh_key;
pub mod vtpm;
pub mod wait_ssh;

/// A fresh temp file `<prefix>*<suffix>` for a generated image (removed when the path is
/// dropped); `what` names the image in the error.
pub(crate) fn temp_image(prefix: &str, suffix: &str, what: &str) -> Result<tempfile::TempPath, StepError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile()
        .map(|f| f.into_temp_path())
        .map_err(|e| StepError::failed(format!("cannot create a temp file for the {what}: {e}")))
}
