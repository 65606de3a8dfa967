//! The `Artifact` service (plugin-protocol.md §5.6), served by the builder on the id returned
//! by `Builder.Run` ([`ArtifactServer`]), and its client ([`ArtifactClient`]): a post-processor
//! reads its input artifact from Packer core through it.

use std::sync::Arc;

use async_trait::async_trait;

use super::codec::{self, map, Value};
use super::mux::Session;
use super::netrpc::{serve, Client, Registry, Service};
use crate::artifact::Artifact;

/// Serves an [`Artifact`] as `Artifact.*`.
pub struct ArtifactServer {
    artifact: Arc<dyn Artifact>,
}

impl ArtifactServer {
    /// Serves `artifact`.
    pub fn new(artifact: Arc<dyn Artifact>) -> Self {
        ArtifactServer { artifact }
    }

    /// Serves `artifact` as `Artifact.*` on a new broker stream of `session` (what `Builder.Run` and
    /// `PostProcessor.PostProcess` answer with); returns the stream id core dials. `whose` names the
    /// artifact in log lines.
    pub fn serve_on_new_stream(session: &Session, artifact: Arc<dyn Artifact>, whose: &'static str) -> u32 {
        let id = session.next_id();
        let accept = session.accept(id);
        let registry = Registry::new();
        registry.register("Artifact", Arc::new(ArtifactServer::new(artifact)));
        tokio::spawn(async move {
            match accept.await {
                Ok(s) => {
                    if let Err(e) = serve(s, registry).await {
                        tracing::warn!("serving {whose} artifact: {e}");
                    }
                }
                Err(e) => tracing::warn!("core did not connect to {whose} artifact: {e}"),
            }
        });
        id
    }
}

#[async_trait]
impl Service for ArtifactServer {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        let a = &self.artifact;
        Ok(match method {
            "BuilderId" => Value::from(a.builder_id()),
            // Go builders return a non-nil slice: `[]` encodes as 0x90 (captured).
            "Files" => Value::Array(a.files().into_iter().map(Value::from).collect()),
            "Id" => Value::from(a.id()),
            "String" => Value::from(a.string()),
            "State" => {
                let key = codec::string_of(&body, "Artifact.State key").map_err(|e| e.to_string())?;
                a.state(&key).map(|v| codec::from_json(&v)).unwrap_or(Value::Nil)
            }
            // Destroy never fails at the RPC level: the error travels as a BasicError body.
            "Destroy" => match a.destroy().await {
                Ok(()) => Value::Nil,
                Err(message) => map(vec![("Message", Value::from(message))]),
            },
            other => return Err(format!("rpc: can't find method Artifact.{other}")),
        })
    }
}

/// An [`Artifact`] served by the peer of `client` (`Artifact.*`). The synchronous methods of the
/// trait read what [`ArtifactClient::fetch`] fetched; `state` and `destroy` call the peer.
pub struct ArtifactClient {
    client: Client,
    builder_id: String,
    files: Vec<String>,
    id: String,
    string: String,
    state: std::collections::BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for ArtifactClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactClient").field("builder_id", &self.builder_id).field("files", &self.files).finish()
    }
}

impl ArtifactClient {
    /// Reads the artifact behind `client`: its builder id, files, id, string, and the `state_keys`
    /// asked for (the trait's `state` is synchronous, so state is fetched up front).
    pub async fn fetch(client: Client, state_keys: &[&str]) -> Result<ArtifactClient, String> {
        let text = |v: Value, what: &str| codec::string_of(&v, what).map_err(|e| e.to_string());
        let call = |m: &'static str| {
            let c = client.clone();
            async move { c.call(m, Value::Nil).await.map_err(|e| format!("{m}: {e}")) }
        };
        let builder_id = text(call("Artifact.BuilderId").await?, "Artifact.BuilderId")?;
        let files = match call("Artifact.Files").await? {
            Value::Nil => Vec::new(),
            Value::Array(a) => a
                .iter()
                .map(|v| codec::string_of(v, "Artifact.Files entry").map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            other => return Err(format!("Artifact.Files: expected a list, got {}", codec::kind(&other))),
        };
        let id = text(call("Artifact.Id").await?, "Artifact.Id")?;
        let string = text(call("Artifact.String").await?, "Artifact.String")?;
        let mut state = std::collections::BTreeMap::new();
        for key in state_keys {
            let v =
                client.call("Artifact.State", Value::from(*key)).await.map_err(|e| format!("Artifact.State: {e}"))?;
            if v != Value::Nil {
                state.insert(key.to_string(), codec::to_json(&v));
            }
        }
        Ok(ArtifactClient { client, builder_id, files, id, string, state })
    }
}

#[async_trait]
impl Artifact for ArtifactClient {
    fn builder_id(&self) -> String {
        self.builder_id.clone()
    }
    fn files(&self) -> Vec<String> {
        self.files.clone()
    }
    fn id(&self) -> String {
        self.id.clone()
    }
    fn string(&self) -> String {
        self.string.clone()
    }
    fn state(&self, key: &str) -> Option<serde_json::Value> {
        self.state.get(key).cloned()
    }
    async fn destroy(&self) -> Result<(), String> {
        match self.client.call("Artifact.Destroy", Value::Nil).await {
            Ok(Value::Nil) => Ok(()),
            Ok(v) => Err(codec::get(&v, "Message")
                .and_then(|m| codec::string_of(m, "Message").ok())
                .unwrap_or_else(|| "Artifact.Destroy failed".to_string())),
            Err(e) => Err(format!("Artifact.Destroy: {e}")),
        }
    }
}
