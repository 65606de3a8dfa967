//! Helpers for end-to-end builds of the test guest with real Packer: a throwaway build
//! environment ([`Build`]), the ISO and cloud-image sources, and process inspection through /proc.

use std::fs;
use std::path::{Path, PathBuf};

pub use packer_acctest::{ctrl_c, descendants_named, wait_until, Outcome, PACKER_DEADLINE};

use crate::{hcl_str, PackerEnv};

/// A [`packer_acctest::Build`] with qemu-rs installed (derefs to it).
pub struct Build(packer_acctest::Build);

impl Build {
    /// A fresh build environment with the debug plugin.
    pub fn new() -> Build {
        Build(packer_acctest::Build::with_env(PackerEnv::new().into_inner()))
    }

    /// A fresh build environment with the plugin binary `bin` (instead of the debug build).
    pub fn with_plugin(bin: &Path) -> Build {
        Build(packer_acctest::Build::with_env(PackerEnv::with_plugin(bin).into_inner()))
    }
}

impl Default for Build {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for Build {
    type Target = packer_acctest::Build;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Pids of running QEMU processes whose command line mentions `needle`.
pub fn qemu_pids_mentioning(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("qemu-system") && cmdline.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// The ISO source `iso` with a seed served by `http_content`: the guest's `authorized_keys` holds
/// no key the builder has, so SSH works only through the temporary key typed with `sshkey=`.
/// `extra` is spliced into the source block.
pub fn iso_source(guest: &Path, out: &Path, marker: &str, extra: &str) -> String {
    let iso = hcl_str(&guest.join("testguest.iso"));
    let out = hcl_str(out);
    format!(
        r##"
source "qemu-rs" "iso" {{
  iso_url          = {iso}
  iso_checksum     = "none"
  output_directory = {out}
  vm_name          = "e2e.img"
  disk_size        = "256M"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = "tcg"
  memory           = 512
  http_content = {{
    "/authorized_keys" = "# no key: the builder's temporary key comes through sshkey=\n"
    "/marker"          = "{marker}"
  }}
  boot_wait    = "3s"
  boot_command = ["e<down><down><end> seed=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/ sshkey={{{{ .SSHPublicKey | urlquery }}}}<f10>"]
  # the key is typed into GRUB: ed25519 keeps the line short (an RSA-4096 key is ~750 characters,
  # minutes of typing; RSA keys are covered by sdk/tests/ssh_communicator.rs)
  temporary_key_pair_type = "ed25519"
  ssh_username     = "root"
  ssh_timeout      = "5m"
  shutdown_command = "poweroff"
{extra}
}}
"##
    )
}

/// The cloud-image source `cloud`: `disk_image` from `image`, configured by a cidata CD built from
/// `cd_content` (root's key `pubkey`, password `packer`); no `shutdown_command` (ACPI power
/// button) and the default accelerator. `extra` is spliced into the source block.
pub fn cloud_source(image: &Path, out: &Path, pubkey: &str, key: &Path, extra: &str) -> String {
    format!(
        r##"
source "qemu-rs" "cloud" {{
  iso_url          = {image}
  iso_checksum     = "none"
  disk_image       = true
  output_directory = {out}
  vm_name          = "cloud.qcow2"
  format           = "qcow2"
  disk_size        = "128M"
  disk_compression = true
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  memory           = 512
  cd_label         = "cidata"
  cd_content = {{
    "meta-data" = "local-hostname: e2e-cloud\n"
    "user-data" = "#cloud-config\npassword: packer\nssh_authorized_keys:\n  - {pubkey}\n"
  }}
  ssh_username         = "root"
  ssh_private_key_file = {key}
  ssh_timeout          = "5m"
{extra}
}}
"##,
        image = hcl_str(image),
        out = hcl_str(out),
        key = hcl_str(key),
    )
}

/// The test guest's SSH key pair: the `authorized_keys` line of `id_ed25519.pub` and the path of
/// the private key `id_ed25519` in `guest` (the guest directory).
pub fn guest_key(guest: &Path) -> (String, PathBuf) {
    let pubkey = std::fs::read_to_string(guest.join("id_ed25519.pub")).expect("the test guest's public key");
    (pubkey.trim().to_string(), guest.join("id_ed25519"))
}
