//! The yamux session and mux broker fed with what a (hostile) Packer core sends: the plugin side
//! accepts broker id 0 and serves net/rpc on it (no services), as `serve_connection` does; the
//! session must end without a panic or a hang once the peer's bytes are consumed. Time is
//! paused, so broker timeouts elapse instantly.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use packer_sdk::rpc::mux::{Role, Session};
use packer_sdk::rpc::netrpc::{serve, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(async {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let session = Session::new(ours, Role::Server);
        let (mut rd, mut wr) = tokio::io::split(theirs);
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {}
        });
        let accept = session.accept(0);
        let server = tokio::spawn(async move {
            if let Ok(stream) = accept.await {
                let _ = serve(stream, Registry::new()).await;
            }
        });
        let dial = {
            let s = session.clone();
            tokio::spawn(async move { s.dial(1).await.is_ok() })
        };
        let _ = wr.write_all(data).await;
        let _ = wr.shutdown().await;
        let ended = tokio::time::timeout(Duration::from_secs(60), session.closed()).await;
        assert!(ended.is_ok(), "the session did not end after the peer closed its side");
        let _ = session.error();
        let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
        let _ = tokio::time::timeout(Duration::from_secs(60), dial).await;
        drop(wr);
        drain.abort();
    });
});
