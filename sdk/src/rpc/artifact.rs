//! The `Artifact` service (plugin-protocol.md §5.6), served by the builder on the id returned
//! by `Builder.Run`.

use std::sync::Arc;

use async_trait::async_trait;

use super::codec::{self, map, Value};
use super::netrpc::Service;
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
