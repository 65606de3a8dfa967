//! What a builder produces.

use async_trait::async_trait;

/// The result of a build, served back to Packer core (`Artifact.*` RPC service).
#[async_trait]
pub trait Artifact: Send + Sync {
    /// A unique id of the builder that made this artifact (e.g. `"qemu-rs.builder"`).
    fn builder_id(&self) -> String;
    /// The files that make up the artifact.
    fn files(&self) -> Vec<String>;
    /// The artifact's id (e.g. the VM name).
    fn id(&self) -> String;
    /// A human-readable description shown to the user.
    fn string(&self) -> String;
    /// Builder-specific state, by key (`None` = unknown key).
    fn state(&self, key: &str) -> Option<serde_json::Value>;
    /// Deletes the artifact's files.
    async fn destroy(&self) -> Result<(), String>;
}
