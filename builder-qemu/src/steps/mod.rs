//! The build steps, one file each, in build order. Each step does one thing and undoes it in
//! its cleanup.

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
