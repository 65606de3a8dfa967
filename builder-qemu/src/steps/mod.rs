//! The build steps, one file each, in build order. Each step does one thing and undoes it in
//! its cleanup.

use std::collections::BTreeMap;
use std::path::Path;

use packer_sdk::config::template::Template;
use packer_sdk::janitor;
use packer_sdk::step::StepError;

use crate::state::BuildState;

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
pub mod warm_lookup;
pub mod warm_restore;
pub mod warm_save;

/// Renders the run-time template data of `cd_content`/`http_content` (`option`) in its keys and
/// values: `{{ .Name }}` (the VM name) and `{{ .SSHPublicKey }}` (the build's public key line, empty
/// without SSH). Validation has checked the templates; an error here names the option anyway.
pub(crate) fn render_content(
    option: &str,
    content: &BTreeMap<String, String>,
    state: &BuildState,
    vm_name: &str,
) -> Result<BTreeMap<String, String>, StepError> {
    let data = BTreeMap::from([("Name", vm_name.to_string()), ("SSHPublicKey", state.ssh_public_key_line())]);
    let render = |text: &str| {
        Template::parse(text)
            .and_then(|t| t.render(&data))
            .map_err(|e| StepError::failed(format!("{option}: {text:?}: {e}")))
    };
    content.iter().map(|(k, v)| Ok((render(k)?, render(v)?))).collect()
}

/// A generated image in the temp directory: removed when dropped, and by the janitor should the
/// plugin be killed before.
#[derive(Debug)]
pub struct TempImage {
    // field order = drop order: the file goes first, then the janitor forgets it
    path: tempfile::TempPath,
    _guard: janitor::Guard,
}

impl std::ops::Deref for TempImage {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// A fresh temp file `<prefix>*<suffix>` for a generated image; `what` names the image in the error.
pub(crate) fn temp_image(prefix: &str, suffix: &str, what: &str) -> Result<TempImage, StepError> {
    let path = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile()
        .map(|f| f.into_temp_path())
        .map_err(|e| StepError::failed(format!("cannot create a temp file for the {what}: {e}")))?;
    let _guard = janitor::guard(&path);
    Ok(TempImage { path, _guard })
}
