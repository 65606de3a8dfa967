//! Core-side protocol tests, in process: a Rust "Packer core" (yamux client over a real unix
//! socket pair) drives the real plugin server (`plugin::serve_connection`) end to end.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::{serve_ui_and_comm, CoreHook, LocalCommunicator};
use packer_sdk::artifact::Artifact;
use packer_sdk::communicator::Communicator;
use packer_sdk::component::{Builder, Hook, PrepareError, PrepareOutput, RunError};
use packer_sdk::config::{ConfigErrors, RawConfig};
use packer_sdk::hcl::{CtyType, GobFlavor, ObjectSpec};
use packer_sdk::plugin::{serve_connection, Component, SpecFormat};
use packer_sdk::rpc::codec::{self, map, Value};
use packer_sdk::rpc::communicator::{CommunicatorClient, CommunicatorServer};
use packer_sdk::rpc::mux::{Role, Session};
use packer_sdk::rpc::netrpc::{serve, Client, Registry, RpcError, Service};
use packer_sdk::ui::Ui;
use packer_sdk::CancellationToken;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

#[derive(Default)]
struct TestBuilder {
    wait_for_cancel: bool,
}

struct TestArtifact;

#[async_trait]
impl Artifact for TestArtifact {
    fn builder_id(&self) -> String {
        "test.builder".into()
    }
    fn files(&self) -> Vec<String> {
        vec!["out/disk.qcow2".into()]
    }
    fn id(&self) -> String {
        "vm-1".into()
    }
    fn string(&self) -> String {
        "a test VM".into()
    }
    fn state(&self, key: &str) -> Option<serde_json::Value> {
        (key == "answer").then(|| serde_json::json!(42))
    }
    async fn destroy(&self) -> Result<(), String> {
        Err("cannot destroy a test VM".into())
    }
}

#[async_trait]
impl Builder for TestBuilder {
    fn config_spec(&self) -> ObjectSpec {
        ObjectSpec::new().attr("size", CtyType::Number).attr("wait_for_cancel", CtyType::Bool)
    }
    async fn prepare(&mut self, raws: Vec<RawConfig>) -> Result<PrepareOutput, PrepareError> {
        let mut errors = ConfigErrors::new();
        let mut size = None;
        for raw in raws {
            if let RawConfig::Map(m) = raw {
                if let Some(v) = m.get("size") {
                    size = v.as_f64();
                }
                if let Some(serde_json::Value::Bool(b)) = m.get("wait_for_cancel") {
                    self.wait_for_cancel = *b;
                }
            }
        }
        match size {
            Some(s) if s > 0.0 => {}
            _ => errors.push("size", "must be a positive number"),
        }
        let warnings = vec!["this is a test builder".to_string()];
        if errors.is_empty() {
            Ok(PrepareOutput { generated_vars: vec!["Extra".into()], warnings })
        } else {
            Err(PrepareError { errors, warnings })
        }
    }
    async fn run(
        &self,
        ui: Arc<dyn Ui>,
        hook: Arc<dyn Hook>,
        cancel: CancellationToken,
    ) -> Result<Option<Arc<dyn Artifact>>, RunError> {
        ui.say("building").await;
        if self.wait_for_cancel {
            cancel.cancelled().await;
            return Err(RunError::new("build cancelled"));
        }
        let comm: Arc<dyn Communicator> = Arc::new(LocalCommunicator);
        hook.run("packer_provision", ui.clone(), Some(comm), serde_json::json!({"ID": "vm-1"}), cancel).await?;
        Ok(Some(Arc::new(TestArtifact)))
    }
}

async fn connect(builder: TestBuilder) -> (Session, Client) {
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    tokio::spawn(serve_connection(b, Component::Builder(Box::new(builder)), SpecFormat::Gob(GobFlavor::Module)));
    let core = Session::new(a, Role::Client);
    let root = Client::new(core.dial(0).await.unwrap());
    (core, root)
}

fn prepare_args(config: serde_json::Value) -> Value {
    map(vec![("Configs", Value::Array(vec![codec::from_json(&config), Value::Nil]))])
}

#[tokio::test]
async fn builder_config_spec_prepare_run_hook_artifact() {
    let scratch = tempfile::tempdir().unwrap();
    let (core, root) = connect(TestBuilder::default()).await;

    let spec = root.call("Builder.ConfigSpec", Value::Nil).await.unwrap();
    let bin = codec::get(&spec, "ConfigSpec").and_then(Value::as_slice).expect("ConfigSpec is binary");
    assert_eq!(bin, TestBuilder::default().config_spec().to_gob(GobFlavor::Module).as_slice());

    // Validation errors travel in the body as a BasicError, with the warnings.
    let bad = root.call("Builder.Prepare", prepare_args(serde_json::json!({"size": -1}))).await.unwrap();
    let message = codec::get(codec::get(&bad, "Error").unwrap(), "Message").unwrap().as_str().unwrap();
    assert_eq!(message, "1 error(s) occurred:\n\n* size: must be a positive number");
    assert_eq!(codec::get(&bad, "Warnings").unwrap(), &Value::Array(vec![Value::from("this is a test builder")]));
    assert_eq!(codec::get(&bad, "GeneratedVars").unwrap(), &Value::Nil);

    let ok = root.call("Builder.Prepare", prepare_args(serde_json::json!({"size": 10.0}))).await.unwrap();
    assert_eq!(codec::get(&ok, "Error").unwrap(), &Value::Nil);
    assert_eq!(codec::get(&ok, "GeneratedVars").unwrap(), &Value::Array(vec![Value::from("Extra")]));

    // Run: core serves Ui + Hook on its id; the builder's hook call comes back with a stream
    // on which core reaches the builder's Ui and Communicator.
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = CoreHook { session: core.clone(), log: log.clone(), scratch: scratch.path().to_path_buf() };
    let (id, ui) = serve_ui_and_comm(&core, Some(("Hook", Arc::new(hook) as Arc<dyn Service>)));
    let artifact_id = root.call("Builder.Run", Value::from(id)).await.unwrap();
    let artifact_id = codec::u32_of(&artifact_id, "artifact id").unwrap();
    assert_ne!(artifact_id, 0);
    assert_eq!(ui.lines(), vec!["say: building", "say: hook packer_provision via builder"]);
    assert_eq!(*log.lock().unwrap(), vec!["packer_provision stdout=out-42 exit=3 file=via-hook"]);

    let art = Client::new(core.dial(artifact_id).await.unwrap());
    assert_eq!(art.call("Artifact.BuilderId", Value::Nil).await.unwrap(), Value::from("test.builder"));
    assert_eq!(art.call("Artifact.Id", Value::Nil).await.unwrap(), Value::from("vm-1"));
    assert_eq!(art.call("Artifact.String", Value::Nil).await.unwrap(), Value::from("a test VM"));
    assert_eq!(
        art.call("Artifact.Files", Value::Nil).await.unwrap(),
        Value::Array(vec![Value::from("out/disk.qcow2")])
    );
    assert_eq!(art.call("Artifact.State", Value::from("answer")).await.unwrap(), Value::from(42));
    assert_eq!(art.call("Artifact.State", Value::from("nope")).await.unwrap(), Value::Nil);
    let destroyed = art.call("Artifact.Destroy", Value::Nil).await.unwrap();
    assert_eq!(codec::get(&destroyed, "Message").unwrap(), &Value::from("cannot destroy a test VM"));
    assert!(matches!(art.call("Artifact.Nope", Value::Nil).await, Err(RpcError::Remote(_))));
}

#[tokio::test]
async fn cancel_while_run_is_pending() {
    let (core, root) = connect(TestBuilder::default()).await;
    let args = prepare_args(serde_json::json!({"size": 1, "wait_for_cancel": true}));
    root.call("Builder.Prepare", args).await.unwrap();
    let (id, ui) = serve_ui_and_comm(&core, None);
    let run = tokio::spawn({
        let root = root.clone();
        async move { root.call("Builder.Run", Value::from(id)).await }
    });
    // Wait until Run is really running (it said "building"), then cancel on the same stream.
    while ui.lines().is_empty() {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    root.call("Builder.Cancel", Value::Nil).await.unwrap();
    assert_eq!(run.await.unwrap(), Err(RpcError::Remote("build cancelled".into())));
}

#[tokio::test]
async fn unknown_method_and_bad_prepare_args_are_method_errors() {
    let (_core, root) = connect(TestBuilder::default()).await;
    let e = root.call("Builder.Frobnicate", Value::Nil).await.unwrap_err();
    assert_eq!(e, RpcError::Remote("rpc: can't find method Builder.Frobnicate".into()));
    let e = root.call("Builder.Prepare", map(vec![("Configs", Value::from(3))])).await.unwrap_err();
    assert!(matches!(e, RpcError::Remote(m) if m.contains("Configs must be a list")));
}

/// 16 MiB through Communicator.Upload and back through Download, client and server talking
/// over real yamux on a socket pair; content verified by SHA-256.
#[tokio::test]
async fn upload_and_download_16_mib() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let core = Session::new(a, Role::Client);
    let plugin = Session::new(b, Role::Server);
    let accept = plugin.accept(1);
    let registry = Registry::new();
    registry.register("Communicator", Arc::new(CommunicatorServer::new(Arc::new(LocalCommunicator), plugin.clone())));
    tokio::spawn(async move { serve(accept.await.unwrap(), registry).await });
    let comm = CommunicatorClient::new(Client::new(core.dial(1).await.unwrap()), core.clone());

    let mut data = vec![0u8; 16 << 20];
    let mut x: u32 = 0x1234_5678;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let want = Sha256::digest(&data);
    let target = dir.path().join("big.bin");
    let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(std::io::Cursor::new(data));
    comm.upload(&target.to_string_lossy(), reader, None).await.unwrap();
    let on_disk = std::fs::read(&target).unwrap();
    assert_eq!(on_disk.len(), 16 << 20);
    assert_eq!(Sha256::digest(&on_disk), want);

    let (w, mut r) = tokio::io::duplex(64 * 1024);
    let reading = tokio::spawn(async move {
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        back
    });
    comm.download(&target.to_string_lossy(), Box::new(w)).await.unwrap();
    let back = reading.await.unwrap();
    assert_eq!(Sha256::digest(&back), want);

    // A command with stdin, stdout, stderr and a non-zero exit status.
    let (out_w, mut out_r) = tokio::io::duplex(1024);
    let (err_w, mut err_r) = tokio::io::duplex(1024);
    let mut cmd = packer_sdk::communicator::RemoteCommand::new("tr a-z A-Z; echo oops >&2; exit 7");
    cmd.stdin = Some(Box::new(&b"hello\n"[..]));
    cmd.stdout = Some(Box::new(out_w));
    cmd.stderr = Some(Box::new(err_w));
    let handle = comm.start(cmd).await.unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    out_r.read_to_string(&mut out).await.unwrap();
    err_r.read_to_string(&mut err).await.unwrap();
    assert_eq!(handle.wait().await.unwrap(), 7);
    assert_eq!((out.as_str(), err.as_str()), ("HELLO\n", "oops\n"));

    // Errors of the remote side come back as errors.
    let missing = dir.path().join("missing/file");
    let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(&b"x"[..]);
    assert!(comm.upload(&missing.to_string_lossy(), reader, None).await.is_err());
}

#[tokio::test]
async fn broken_response_stream_reports_exit_123() {
    // A communicator server that accepts Start but never writes CommandFinished: it closes
    // the response stream at once, like a crashed peer.
    struct Broken(Session);
    #[async_trait]
    impl Service for Broken {
        async fn call(&self, _method: &str, body: Value) -> Result<Value, String> {
            let id = codec::u32_of(codec::get(&body, "ResponseStreamId").unwrap(), "id").unwrap();
            let mut s = self.0.dial(id).await.map_err(|e| e.to_string())?;
            tokio::io::AsyncWriteExt::write_all(&mut s, b"\x05garbage").await.unwrap();
            tokio::io::AsyncWriteExt::shutdown(&mut s).await.unwrap();
            Ok(Value::Nil)
        }
    }
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let core = Session::new(a, Role::Client);
    let plugin = Session::new(b, Role::Server);
    let accept = plugin.accept(1);
    let registry = Registry::new();
    registry.register("Communicator", Arc::new(Broken(plugin.clone())));
    tokio::spawn(async move { serve(accept.await.unwrap(), registry).await });
    let comm = CommunicatorClient::new(Client::new(core.dial(1).await.unwrap()), core.clone());
    let handle = comm.start(packer_sdk::communicator::RemoteCommand::new("true")).await.unwrap();
    assert_eq!(handle.wait().await.unwrap(), 123);
}

/// A data source for the protocol test: `greeting = "hello NAME"`, `length`, `names`.
#[derive(Default)]
struct TestDatasource {
    name: String,
}

#[async_trait]
impl packer_sdk::component::Datasource for TestDatasource {
    fn config_spec(&self) -> ObjectSpec {
        let mut s = ObjectSpec::new();
        s.insert(
            "name",
            packer_sdk::hcl::Spec::Attr(packer_sdk::hcl::AttrSpec {
                name: "name".into(),
                ty: CtyType::String,
                required: true,
            }),
        );
        s
    }
    fn output_spec(&self) -> ObjectSpec {
        let mut s = ObjectSpec::new();
        for (name, ty) in [
            ("greeting", CtyType::String),
            ("length", CtyType::Number),
            ("names", CtyType::List(Box::new(CtyType::String))),
        ] {
            s.insert(
                name,
                packer_sdk::hcl::Spec::Attr(packer_sdk::hcl::AttrSpec { name: name.into(), ty, required: false }),
            );
        }
        s
    }
    async fn configure(&mut self, raws: Vec<RawConfig>) -> Result<(), ConfigErrors> {
        let mut errs = ConfigErrors::new();
        for r in raws {
            if let RawConfig::Map(m) = r {
                if let Some(n) = m.get("name").and_then(|v| v.as_str()) {
                    self.name = n.to_string();
                }
            }
        }
        if self.name.is_empty() {
            errs.push("name", "is required");
        }
        errs.into_result(())
    }
    async fn execute(&self) -> Result<serde_json::Map<String, serde_json::Value>, RunError> {
        let v = serde_json::json!({
            "greeting": format!("hello {}", self.name),
            "length": self.name.len(),
            "names": [self.name.clone(), "packer"],
        });
        Ok(v.as_object().unwrap().clone())
    }
}

async fn connect_datasource(format: SpecFormat) -> (Session, Client) {
    let (a, b) = tokio::io::duplex(1 << 20);
    tokio::spawn(serve_connection(b, Component::Datasource(Box::new(TestDatasource::default())), format));
    let core = Session::new(a, Role::Client);
    let root = Client::new(core.dial(0).await.unwrap());
    (core, root)
}

/// `Datasource.*` as modern Packer calls it: ConfigSpec and OutputSpec (protobuf with protocol v2,
/// gob before), Configure errors as method errors naming the option, Execute's value in go-cty's
/// dynamic msgpack (`[bin(type JSON), value]`); a gob-speaking core gets a clear error instead.
#[tokio::test]
async fn datasource_configure_output_spec_and_execute() {
    let (_core, root) = connect_datasource(SpecFormat::Protobuf).await;
    let spec = root.call("Datasource.ConfigSpec", Value::Nil).await.unwrap();
    let bin = codec::get(&spec, "ConfigSpec").and_then(Value::as_slice).unwrap();
    assert!(!bin.is_empty());
    let out = root.call("Datasource.OutputSpec", Value::Nil).await.unwrap();
    let out_bin = codec::get(&out, "OutputSpec").and_then(Value::as_slice).unwrap().to_vec();
    assert_eq!(out_bin, TestDatasource::default().output_spec_bytes_protobuf());

    let bad = root.call("Datasource.Configure", prepare_args(serde_json::json!({}))).await;
    assert!(matches!(&bad, Err(RpcError::Remote(m)) if m.contains("name")), "{bad:?}");
    let ok = root.call("Datasource.Configure", prepare_args(serde_json::json!({"name": "qemu-rs"}))).await.unwrap();
    assert_eq!(codec::get(&ok, "Error"), Some(&Value::Nil));

    let r = root.call("Datasource.Execute", Value::Nil).await.unwrap();
    assert_eq!(codec::get(&r, "Error"), Some(&Value::Nil));
    let bytes = codec::get(&r, "Value").and_then(Value::as_slice).unwrap();
    let v = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
    let parts = v.as_array().unwrap();
    let ty: serde_json::Value = serde_json::from_slice(parts[0].as_slice().unwrap()).unwrap();
    assert_eq!(
        ty,
        serde_json::json!(["object", {"greeting": "string", "length": "number", "names": ["list", "string"]}])
    );
    assert_eq!(
        codec::to_json(&parts[1]),
        serde_json::json!({"greeting": "hello qemu-rs", "length": 7, "names": ["qemu-rs", "packer"]})
    );

    // a gob-speaking core (Packer 1.7-1.11): gob specs, and Execute says what it needs
    let (_core, root) = connect_datasource(SpecFormat::Gob(GobFlavor::Module)).await;
    let out = root.call("Datasource.OutputSpec", Value::Nil).await.unwrap();
    let out_bin = codec::get(&out, "OutputSpec").and_then(Value::as_slice).unwrap();
    assert_eq!(ObjectSpec::from_gob(out_bin).unwrap(), TestDatasource::default().output_spec_plain());
    root.call("Datasource.Configure", prepare_args(serde_json::json!({"name": "x"}))).await.unwrap();
    let e = root.call("Datasource.Execute", Value::Nil).await;
    assert!(matches!(&e, Err(RpcError::Remote(m)) if m.contains("Packer 1.12")), "{e:?}");
}

impl TestDatasource {
    fn output_spec_plain(&self) -> ObjectSpec {
        packer_sdk::component::Datasource::output_spec(self)
    }
    fn output_spec_bytes_protobuf(&self) -> Vec<u8> {
        self.output_spec_plain().to_protobuf()
    }
}
