//! The `Builder` service (plugin-protocol.md §5.1), served by the plugin on broker id 0.

use std::sync::Arc;

use async_trait::async_trait;

use super::artifact::ArtifactServer;
use super::codec::{self, map, Value};
use super::hook::HookClient;
use super::inflight::InFlight;
use super::mux::Session;
use super::netrpc::{Client, Service};
use super::ui::UiClient;
use crate::component::Builder;
use crate::config::RawConfig;
use crate::hcl::ObjectSpec;
use crate::CancellationToken;

/// Encodes a component's ConfigSpec for the connected core (gob flavour or protobuf, chosen
/// at start-up from the handshake). `Err` text is returned to core as the method error.
pub type SpecEncoder = Arc<dyn Fn(&ObjectSpec) -> Result<Vec<u8>, String> + Send + Sync>;

/// Decodes `Prepare`'s `{Configs: [...]}`: maps become [`RawConfig::Map`], binary (cty JSON)
/// becomes [`RawConfig::CtyJson`], nil entries are skipped.
pub fn raw_configs(body: &Value) -> Result<Vec<RawConfig>, String> {
    let list = match codec::get(body, "Configs") {
        None | Some(Value::Nil) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("Prepare: Configs must be a list, got {}", codec::kind(other))),
    };
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        match v {
            Value::Nil => {}
            Value::Map(_) => match codec::to_json(v) {
                serde_json::Value::Object(m) => out.push(RawConfig::Map(m)),
                _ => return Err(format!("Prepare: config #{i} is not a map")),
            },
            Value::Binary(b) => out.push(RawConfig::CtyJson(b.clone())),
            // Old msgpack handles send []byte as a raw string.
            Value::String(s) if s.as_bytes().first() == Some(&b'{') => {
                out.push(RawConfig::CtyJson(s.as_bytes().to_vec()))
            }
            other => {
                return Err(format!(
                    "Prepare: config #{i} has an unsupported type ({}); expected a map or cty JSON",
                    codec::kind(other)
                ))
            }
        }
    }
    Ok(out)
}

/// `{ConfigSpec: bin}` for a spec.
pub fn config_spec_reply(spec: &ObjectSpec, encoder: &SpecEncoder) -> Result<Value, String> {
    let bytes = encoder(spec)?;
    Ok(map(vec![("ConfigSpec", Value::Binary(bytes))]))
}

/// Serves a [`Builder`] as `Builder.*`.
pub struct BuilderServer {
    builder: tokio::sync::RwLock<Box<dyn Builder>>,
    session: Session,
    encoder: SpecEncoder,
    cancel: CancellationToken,
    inflight: InFlight,
}

impl BuilderServer {
    /// Serves `builder`; sub-streams (Ui/Hook, Artifact) go through `session`.
    pub fn new(builder: Box<dyn Builder>, session: Session, encoder: SpecEncoder) -> Self {
        Self::with_inflight(builder, session, encoder, InFlight::new())
    }

    /// Like [`BuilderServer::new`], with `Run` tracked by `inflight` (cancelled and waited for
    /// when the connection to Packer is lost).
    pub fn with_inflight(
        builder: Box<dyn Builder>,
        session: Session,
        encoder: SpecEncoder,
        inflight: InFlight,
    ) -> Self {
        let cancel = inflight.token();
        BuilderServer { builder: tokio::sync::RwLock::new(builder), session, encoder, cancel, inflight }
    }

    async fn run(&self, body: Value) -> Result<Value, String> {
        let id = codec::u32_of(&body, "Builder.Run stream id").map_err(|e| e.to_string())?;
        let stream = self.session.dial(id).await.map_err(|e| format!("Builder.Run: connecting to core's Ui: {e}"))?;
        let client = Client::new(stream);
        let ui = Arc::new(UiClient::new(client.clone()));
        let hook = Arc::new(HookClient::new(client.clone(), self.session.clone()));
        let result = self
            .inflight
            .track(async {
                let builder = self.builder.read().await;
                builder.run(ui, hook, self.cancel.clone()).await
            })
            .await;
        client.close().await;
        match result {
            Err(e) => Err(e.0),
            Ok(None) => Ok(Value::from(0u32)),
            Ok(Some(artifact)) => {
                Ok(Value::from(ArtifactServer::serve_on_new_stream(&self.session, artifact, "the build's")))
            }
        }
    }
}

#[async_trait]
impl Service for BuilderServer {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        match method {
            "ConfigSpec" => {
                let spec = self.builder.read().await.config_spec();
                config_spec_reply(&spec, &self.encoder)
            }
            "Prepare" => {
                let raws = raw_configs(&body)?;
                let result = self.builder.write().await.prepare(raws).await;
                Ok(match result {
                    Ok(out) => map(vec![
                        ("GeneratedVars", codec::strings_or_nil(&out.generated_vars)),
                        ("Warnings", codec::strings_or_nil(&out.warnings)),
                        ("Error", Value::Nil),
                    ]),
                    Err(e) => map(vec![
                        ("GeneratedVars", Value::Nil),
                        ("Warnings", codec::strings_or_nil(&e.warnings)),
                        ("Error", map(vec![("Message", Value::from(e.errors.to_string()))])),
                    ]),
                })
            }
            "Run" => self.run(body).await,
            "Cancel" => {
                tracing::info!("Builder.Cancel received");
                self.cancel.cancel();
                Ok(Value::Nil)
            }
            other => Err(format!("rpc: can't find method Builder.{other}")),
        }
    }
}
