//! The `PostProcessor` service, served by the plugin on broker id 0 (Packer's Go SDK
//! `rpc/post_processor.go`; not captured in plugin-protocol.md).
//!
//! | method | args | reply |
//! |---|---|---|
//! | `PostProcessor.ConfigSpec` | nil | `{ConfigSpec: bin}` |
//! | `PostProcessor.Configure` | `{Configs: [...]}` (as `Prepare`) | nil (error in the header) |
//! | `PostProcessor.PostProcess` | u32: a stream core serves `Artifact.*` (the input) and `Ui.*` on | `{Err: {Message}\|nil, Keep: bool, ForceOverride: bool, StreamId: u32}` |
//! | `PostProcessor.Cancel` | nil | nil |
//!
//! `StreamId` is 0 when no artifact was made, else a broker id on which the plugin serves the new
//! artifact's `Artifact.*`.

use std::sync::Arc;

use async_trait::async_trait;

use super::artifact::{ArtifactClient, ArtifactServer};
use super::builder::{config_spec_reply, raw_configs, SpecEncoder};
use super::codec::{self, map, Value};
use super::inflight::InFlight;
use super::mux::Session;
use super::netrpc::{Client, Service};
use super::ui::UiClient;
use crate::component::PostProcessor;
use crate::CancellationToken;

/// The `Artifact.State` keys fetched from the input artifact (the trait's `state` is synchronous):
/// those Packer's builders publish for post-processors (qemu: disk paths, type, size, domain type).
pub const INPUT_STATE_KEYS: &[&str] =
    &["diskName", "diskPaths", "diskType", "diskSize", "domainType", "generated_data"];

/// Serves a [`PostProcessor`] as `PostProcessor.*`.
pub struct PostProcessorServer {
    post_processor: tokio::sync::RwLock<Box<dyn PostProcessor>>,
    session: Session,
    encoder: SpecEncoder,
    cancel: CancellationToken,
    inflight: InFlight,
}

impl PostProcessorServer {
    /// Serves `post_processor`, with `PostProcess` tracked by `inflight` (cancelled and waited for
    /// when the connection to Packer is lost); the input artifact's stream is dialled on `session`.
    pub fn with_inflight(
        post_processor: Box<dyn PostProcessor>,
        session: Session,
        encoder: SpecEncoder,
        inflight: InFlight,
    ) -> Self {
        let cancel = inflight.token();
        PostProcessorServer {
            post_processor: tokio::sync::RwLock::new(post_processor),
            session,
            encoder,
            cancel,
            inflight,
        }
    }

    async fn post_process(&self, body: Value) -> Result<Value, String> {
        let id = codec::u32_of(&body, "PostProcessor.PostProcess stream id").map_err(|e| e.to_string())?;
        let stream = self
            .session
            .dial(id)
            .await
            .map_err(|e| format!("PostProcessor.PostProcess: connecting to core's artifact: {e}"))?;
        let client = Client::new(stream);
        let reply = |err: Option<String>, keep: bool, force: bool, stream: u32| {
            map(vec![
                ("Err", err.map(|m| map(vec![("Message", Value::from(m))])).unwrap_or(Value::Nil)),
                ("Keep", Value::Boolean(keep)),
                ("ForceOverride", Value::Boolean(force)),
                ("StreamId", Value::from(stream)),
            ])
        };
        let input = match ArtifactClient::fetch(client.clone(), INPUT_STATE_KEYS).await {
            Ok(a) => Arc::new(a),
            Err(e) => {
                client.close().await;
                return Ok(reply(Some(format!("reading the input artifact from Packer: {e}")), false, false, 0));
            }
        };
        let ui = Arc::new(UiClient::new(client.clone()));
        let result = self
            .inflight
            .track(async {
                let p = self.post_processor.read().await;
                p.post_process(ui, input, self.cancel.clone()).await
            })
            .await;
        client.close().await;
        let out = match result {
            Ok(out) => out,
            Err(e) => return Ok(reply(Some(e.0), false, false, 0)),
        };
        let stream = match out.artifact {
            None => 0,
            Some(artifact) => ArtifactServer::serve_on_new_stream(&self.session, artifact, "the post-processor's"),
        };
        Ok(reply(None, out.keep_input, out.force_override, stream))
    }
}

#[async_trait]
impl Service for PostProcessorServer {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        match method {
            "ConfigSpec" => {
                let spec = self.post_processor.read().await.config_spec();
                config_spec_reply(&spec, &self.encoder)
            }
            "Configure" => {
                let raws = raw_configs(&body)?;
                self.post_processor.write().await.configure(raws).await.map_err(|e| e.to_string())?;
                Ok(Value::Nil)
            }
            "PostProcess" => self.post_process(body).await,
            "Cancel" => {
                tracing::info!("PostProcessor.Cancel received");
                self.cancel.cancel();
                Ok(Value::Nil)
            }
            other => Err(format!("rpc: can't find method PostProcessor.{other}")),
        }
    }
}
