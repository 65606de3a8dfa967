//! `packer-sdk`: a Rust re-implementation of the Packer plugin SDK.
//!
//! Everything a Rust Packer plugin needs, and nothing about QEMU:
//! - [`plugin`]: the handshake, `describe`, and serving one connection from Packer core;
//! - [`rpc`]: yamux + the mux broker + Go `net/rpc` over msgpack, and one module per service;
//! - [`hcl`]: the ConfigSpec model and its gob and protobuf encodings;
//! - [`config`]: decoding the raw configs of `Prepare` into typed structs, reporting all problems at once;
//! - [`communicator`]: the [`Communicator`](communicator::Communicator) trait and its implementations;
//! - [`bootcommand`]: the `boot_command` grammar;
//! - [`component`], [`ui`], [`artifact`]: the traits a builder, provisioner, post-processor or data
//!   source implements or uses ([`plugin::PluginSet`] registers and serves each kind).

pub mod artifact;
pub mod bootcommand;
pub mod cd_image;
pub mod communicator;
pub mod component;
pub mod config;
pub mod download;
pub mod floppy_image;
pub mod hcl;
pub mod http_server;
pub mod janitor;
pub mod percent;
pub mod plugin;
pub mod rpc;
pub mod step;
pub mod ui;

pub use tokio_util::sync::CancellationToken;
