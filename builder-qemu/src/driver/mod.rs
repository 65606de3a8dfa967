//! Everything that talks to QEMU and its tools: processes, the accelerator probe, QMP, qemu-img.

pub mod accel;
pub mod accel_cache;
pub mod argv;
pub mod bios_keybuf;
pub mod firmware;
pub mod key_trace;
pub mod process;
pub mod qcow2;
pub mod qemu;
pub mod qemu_img;
pub mod qmp;
pub mod qmp_keys;
pub mod swtpm;
pub mod usernet;
pub mod warm_cache;
