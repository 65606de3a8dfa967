//! Golden tests against bytes captured from Packer 1.6.6 (`sdk/testdata/protocol/`): our
//! encoder reproduces every captured message byte for byte, our services produce the captured
//! replies, and every msgpack value of the captured sessions decodes and re-encodes exactly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use packer_sdk::artifact::Artifact;
use packer_sdk::communicator::Communicator;
use packer_sdk::component::{Builder, Hook, PrepareError, PrepareOutput, Provisioner, RunError};
use packer_sdk::config::{ConfigErrors, RawConfig};
use packer_sdk::hcl::ObjectSpec;
use packer_sdk::rpc::artifact::ArtifactServer;
use packer_sdk::rpc::builder::{raw_configs, BuilderServer, SpecEncoder};
use packer_sdk::rpc::codec::{self, map, Value};
use packer_sdk::rpc::gob;
use packer_sdk::rpc::mux::{Role, Session};
use packer_sdk::rpc::netrpc::{encode_request, encode_response, Service};
use packer_sdk::rpc::provisioner::ProvisionerServer;
use packer_sdk::ui::Ui;
use packer_sdk::CancellationToken;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/protocol")
}

/// The hex lines of a golden file (comments dropped), one Vec per line.
fn hex_lines(name: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(data_dir().join(name)).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| hex::decode(l).unwrap())
        .collect()
}

/// A golden rpc file: (header bytes, body bytes).
fn rpc(name: &str) -> (Vec<u8>, Vec<u8>) {
    let all: Vec<u8> = hex_lines(name).concat();
    let n = codec::value_len(&all).unwrap().unwrap();
    (all[..n].to_vec(), all[n..].to_vec())
}

fn whole(name: &str) -> Vec<u8> {
    hex_lines(name).concat()
}

#[test]
fn every_rpc_golden_reencodes_byte_for_byte() {
    let mut seen = 0;
    for entry in std::fs::read_dir(data_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.starts_with("rpc-") {
            continue;
        }
        let (h, b) = rpc(&name);
        let header = codec::decode(&h).unwrap();
        let body = codec::decode(&b).unwrap();
        assert_eq!(codec::encode(&header), h, "{name}: header");
        assert_eq!(codec::encode(&body), b, "{name}: body");
        // The header parses with the net/rpc shape.
        if name.contains("request") {
            codec::RequestHeader::from_value(&header).unwrap();
        } else {
            codec::ResponseHeader::from_value(&header).unwrap();
        }
        seen += 1;
    }
    assert_eq!(seen, 15);
}

#[test]
fn request_headers_from_our_encoder() {
    assert_eq!(encode_request("Builder.ConfigSpec", 0, &Value::Nil), whole("rpc-builder-configspec-request.hex"));
    assert_eq!(encode_request("Builder.Run", 2, &Value::from(1u32)), whole("rpc-builder-run-request.hex"));
    let say = "Running local shell script: /tmp/packer-shell1752401269";
    assert_eq!(encode_request("Ui.Say", 0, &Value::from(say)), whole("rpc-ui-say-request.hex"));
    assert_eq!(encode_response("Ui.Say", 0, &Ok(Value::Nil)), whole("rpc-ui-say-response.hex"));
    assert_eq!(encode_response("Builder.Run", 2, &Ok(Value::from(2u32))), whole("rpc-builder-run-response.hex"));
}

#[test]
fn hook_run_request_layout() {
    let (h, b) = rpc("rpc-hook-run-request.hex");
    let body = codec::decode(&b).unwrap();
    // Same field order as HookClient writes: Name, Data, StreamId.
    let ours = map(vec![
        ("Name", Value::from("packer_provision")),
        ("Data", codec::get(&body, "Data").unwrap().clone()),
        ("StreamId", Value::from(1u32)),
    ]);
    assert_eq!(encode_request("Hook.Run", 0, &ours), [h, b].concat());
}

#[test]
fn command_finished_gob_matches_go() {
    let lines = hex_lines("gob-commandfinished.hex");
    assert_eq!(lines.len(), 4);
    for (bytes, exit) in lines.iter().zip([0i64, 1, 123, -1]) {
        assert_eq!(&gob::encode_command_finished(exit), bytes, "exit {exit}");
        assert_eq!(gob::decode_command_finished(bytes).unwrap(), exit);
    }
}

struct GoldenBuilder {
    fail: bool,
}

#[async_trait]
impl Builder for GoldenBuilder {
    fn config_spec(&self) -> ObjectSpec {
        ObjectSpec::new()
    }
    async fn prepare(&mut self, _raws: Vec<RawConfig>) -> Result<PrepareOutput, PrepareError> {
        if !self.fail {
            return Ok(PrepareOutput::default());
        }
        let mut errors = ConfigErrors::new();
        errors.push_general("Invalid disk size.");
        let w = "A checksum of 'none' was specified. Since ISO files are so big,\na checksum is highly recommended.";
        Err(PrepareError { errors, warnings: vec![w.to_string()] })
    }
    async fn run(
        &self,
        _ui: Arc<dyn Ui>,
        _hook: Arc<dyn Hook>,
        _cancel: CancellationToken,
    ) -> Result<Option<Arc<dyn Artifact>>, RunError> {
        Ok(None)
    }
}

struct GoldenProvisioner;

#[async_trait]
impl Provisioner for GoldenProvisioner {
    fn config_spec(&self) -> ObjectSpec {
        ObjectSpec::new()
    }
    async fn prepare(&mut self, _raws: Vec<RawConfig>) -> Result<(), ConfigErrors> {
        let mut errors = ConfigErrors::new();
        errors.push_general("Command, Inline, Script and Scripts options cannot all be empty.");
        errors.into_result(())
    }
    async fn provision(
        &self,
        _ui: Arc<dyn Ui>,
        _comm: Arc<dyn Communicator>,
        _data: serde_json::Map<String, serde_json::Value>,
        _cancel: CancellationToken,
    ) -> Result<(), RunError> {
        Ok(())
    }
}

/// A session whose peer never talks (the replies tested here need no sub-streams).
fn session() -> Session {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let s = Session::new(a, Role::Server);
    tokio::spawn(async move {
        // keep the peer open until the session ends
        let _peer = b;
        std::future::pending::<()>().await
    });
    s
}

fn no_spec() -> SpecEncoder {
    Arc::new(|_: &ObjectSpec| Err("unused".to_string()))
}

#[tokio::test]
async fn our_services_produce_the_captured_replies() {
    let prepare_req = codec::decode(&rpc("rpc-builder-prepare-request-hcl2.hex").1).unwrap();

    let ok = BuilderServer::new(Box::new(GoldenBuilder { fail: false }), session(), no_spec());
    let reply = ok.call("Prepare", prepare_req.clone()).await;
    assert_eq!(encode_response("Builder.Prepare", 1, &reply), whole("rpc-builder-prepare-response-ok.hex"));

    let bad = BuilderServer::new(Box::new(GoldenBuilder { fail: true }), session(), no_spec());
    let reply = bad.call("Prepare", prepare_req).await;
    assert_eq!(encode_response("Builder.Prepare", 1, &reply), whole("rpc-builder-prepare-response-basicerror.hex"));

    let prov = ProvisionerServer::new(Box::new(GoldenProvisioner), session(), no_spec());
    let req = codec::decode(&rpc("rpc-provisioner-prepare-request-hcl2.hex").1).unwrap();
    let reply = prov.call("Prepare", req).await;
    assert_eq!(
        encode_response("Provisioner.Prepare", 1, &reply),
        whole("rpc-provisioner-prepare-response-rpcerror.hex")
    );

    struct NoFiles;
    #[async_trait]
    impl Artifact for NoFiles {
        fn builder_id(&self) -> String {
            "fnoeding.null".into()
        }
        fn files(&self) -> Vec<String> {
            Vec::new()
        }
        fn id(&self) -> String {
            "Null".into()
        }
        fn string(&self) -> String {
            String::new()
        }
        fn state(&self, _key: &str) -> Option<serde_json::Value> {
            None
        }
        async fn destroy(&self) -> Result<(), String> {
            Ok(())
        }
    }
    let art = ArtifactServer::new(Arc::new(NoFiles));
    let reply = art.call("Files", Value::Nil).await;
    assert_eq!(encode_response("Artifact.Files", 4, &reply), whole("rpc-artifact-files-response.hex"));
}

#[test]
fn captured_prepare_requests_decode_to_raw_configs() {
    let body = codec::decode(&rpc("rpc-builder-prepare-request-hcl2.hex").1).unwrap();
    let raws = raw_configs(&body).unwrap();
    assert_eq!(raws.len(), 2);
    let RawConfig::Map(vars) = &raws[0] else { panic!("first config is a map") };
    assert_eq!(vars["packer_builder_type"], "null");
    let RawConfig::CtyJson(cty) = &raws[1] else { panic!("second config is cty JSON") };
    let cty: serde_json::Value = serde_json::from_slice(cty).unwrap();
    assert!(cty.get("value").is_some() && cty.get("type").is_some());

    // Provisioner HCL2: [vars, bin, nil] -> nil is skipped.
    let body = codec::decode(&rpc("rpc-provisioner-prepare-request-hcl2.hex").1).unwrap();
    let raws = raw_configs(&body).unwrap();
    assert_eq!(raws.len(), 2);
    assert!(matches!(raws[1], RawConfig::CtyJson(_)));

    // JSON templates: maps only; the provisioner gets the generated-data placeholders too.
    let body = codec::decode(&rpc("rpc-builder-prepare-request-json.hex").1).unwrap();
    let raws = raw_configs(&body).unwrap();
    assert!(matches!(&raws[0], RawConfig::Map(m) if m["communicator"] == "none"));
    let body = codec::decode(&rpc("rpc-provisioner-prepare-request-json.hex").1).unwrap();
    assert_eq!(raw_configs(&body).unwrap().len(), 3);

    let body = codec::decode(&rpc("rpc-provisioner-provision-request.hex").1).unwrap();
    assert_eq!(codec::u32_of(codec::get(&body, "StreamID").unwrap(), "StreamID").unwrap(), 1);
    assert!(codec::get(&body, "GeneratedData").unwrap().is_map());
}

/// Splits a captured byte stream into yamux frames; returns per-stream payloads (broker id
/// prefix removed) and the number of PING frames.
fn yamux_streams(bytes: &[u8]) -> (HashMap<u32, Vec<u8>>, usize) {
    let mut streams: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut pings = 0;
    let mut pos = 0;
    while pos + 12 <= bytes.len() {
        let h = &bytes[pos..pos + 12];
        assert_eq!(h[0], 0, "yamux version");
        let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        pos += 12;
        match h[1] {
            0 => {
                streams.entry(id).or_default().extend_from_slice(&bytes[pos..pos + len]);
                pos += len;
            }
            1 => {
                streams.entry(id).or_default();
            }
            2 => pings += 1,
            3 => {}
            t => panic!("bad frame type {t}"),
        }
    }
    assert_eq!(pos, bytes.len(), "trailing partial frame");
    for data in streams.values_mut() {
        if data.len() >= 4 {
            data.drain(..4);
        }
    }
    (streams, pings)
}

/// Every msgpack value exchanged in the captured sessions (both directions) decodes with our
/// codec and re-encodes to the very same bytes. Response streams of Communicator data and
/// gob payloads are not msgpack; they do not occur in these sessions.
#[test]
fn captured_sessions_reencode_exactly() {
    let mut values = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(data_dir().join("sessions")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".hex") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let bytes: Vec<u8> =
            text.lines().filter(|l| !l.starts_with('#')).flat_map(|l| hex::decode(l.trim()).unwrap()).collect();
        let (streams, _) = yamux_streams(&bytes);
        for (id, data) in streams {
            let mut pos = 0;
            while pos < data.len() {
                let (v, n) = codec::decode_prefix(&data[pos..])
                    .unwrap_or_else(|e| panic!("{name} stream {id} at {pos}: {e}"))
                    .unwrap_or_else(|| panic!("{name} stream {id}: truncated value at {pos}"));
                assert_eq!(codec::encode(&v), &data[pos..pos + n], "{name} stream {id} at {pos}");
                pos += n;
                values += 1;
            }
        }
    }
    assert_eq!(files, 12);
    assert!(values > 100, "only {values} values");
}
