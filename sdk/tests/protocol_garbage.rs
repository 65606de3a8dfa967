//! Garbage on the wire (random bytes, truncated or corrupted yamux frames, wrong msgpack)
//! ends the connection with an error, never a panic. Property tests, in process.

use std::sync::Arc;

use async_trait::async_trait;
use packer_sdk::rpc::codec::{self, Value, ValueReader};
use packer_sdk::rpc::gob;
use packer_sdk::rpc::mux::{Role, Session};
use packer_sdk::rpc::netrpc::{encode_request, serve, Registry, Service};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

struct Echo;

#[async_trait]
impl Service for Echo {
    async fn call(&self, _method: &str, body: Value) -> Result<Value, String> {
        Ok(body)
    }
}

/// Valid traffic to corrupt: a few requests.
fn valid_requests() -> Vec<u8> {
    let mut v = encode_request("Test.Echo", 0, &Value::from("hello"));
    v.extend(encode_request(
        "Test.Echo",
        1,
        &codec::map(vec![("Configs", Value::Array(vec![Value::Binary(vec![1, 2, 3]), Value::Nil]))]),
    ));
    v
}

/// A yamux SYN for stream 1 carrying the broker id 0 and then `payload`.
fn yamux_frames(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
    let data = [&[0u8, 0, 0, 0][..], payload].concat();
    v.extend([0, 0, 0, 0, 0, 0, 0, 1]);
    v.extend((data.len() as u32).to_be_bytes());
    v.extend(data);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn codec_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = codec::value_len(&bytes);
        let _ = codec::decode_prefix(&bytes);
        let _ = codec::decode(&bytes);
        let _ = gob::decode_command_finished(&bytes);
        if let Ok(Some((v, n))) = codec::decode_prefix(&bytes) {
            // whatever decodes must describe exactly the bytes it used
            prop_assert_eq!(codec::value_len(&bytes).unwrap(), Some(n));
            let _ = codec::RequestHeader::from_value(&v);
            let _ = codec::ResponseHeader::from_value(&v);
            let _ = codec::to_json(&v);
        }
    }

    #[test]
    fn rpc_server_survives_garbage_and_corruption(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        corrupt_valid in any::<bool>(),
    ) {
        let input = if corrupt_valid {
            let mut v = valid_requests();
            for (i, b) in &flips {
                let i = i.index(v.len());
                v[i] = *b;
            }
            let n = cut.index(v.len() + 1);
            v.truncate(n);
            v
        } else {
            bytes
        };
        runtime().block_on(async move {
            let (mut a, b) = tokio::io::duplex(1 << 16);
            let reg = Registry::new();
            reg.register("Test", Arc::new(Echo));
            let server = tokio::spawn(serve(b, reg));
            let _ = a.write_all(&input).await;
            let _ = a.shutdown().await;
            // reading the replies must end too
            let mut replies = ValueReader::new(&mut a);
            while let Ok(Some(_)) = replies.next().await {}
            // the server ends (Ok or Err), it does not panic
            assert!(server.await.is_ok());
        });
    }

    #[test]
    fn yamux_and_broker_survive_garbage(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        framed in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let input = if framed {
            // well-formed frames with a garbage RPC payload, possibly truncated mid-frame
            let v = yamux_frames(&bytes);
            let n = cut.index(v.len() + 1);
            v[..n].to_vec()
        } else {
            bytes
        };
        runtime().block_on(async move {
            let (mut raw, b) = tokio::net::UnixStream::pair().unwrap();
            let plugin = Session::new(b, Role::Server);
            let root = plugin.accept(0);
            let serving = tokio::spawn(async move {
                if let Ok(s) = root.await {
                    let reg = Registry::new();
                    reg.register("Test", Arc::new(Echo));
                    let _ = serve(s, reg).await;
                }
            });
            let _ = raw.write_all(&input).await;
            drop(raw);
            plugin.closed().await;
            assert!(serving.await.is_ok());
        });
    }
}
