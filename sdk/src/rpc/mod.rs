//! The transport: yamux, the mux broker, Go `net/rpc` over msgpack, and one module per service.

pub mod artifact;
pub mod builder;
pub mod codec;
pub mod communicator;
pub mod datasource;
pub mod gob;
pub mod hook;
pub mod inflight;
pub mod mux;
pub mod netrpc;
pub mod post_processor;
pub mod provisioner;
pub mod ui;
