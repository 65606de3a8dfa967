//! The traits a plugin component implements: [`Builder`], [`Provisioner`], [`PostProcessor`] and
//! [`Datasource`], and the [`Hook`] a builder calls to run the provisioners.

use std::sync::Arc;

use async_trait::async_trait;

use crate::artifact::Artifact;
use crate::communicator::Communicator;
use crate::config::{ConfigErrors, RawConfig};
use crate::hcl::ObjectSpec;
use crate::ui::Ui;
use crate::CancellationToken;

/// What a successful `Builder.Prepare` returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepareOutput {
    /// Names of extra variables the builder adds to the generated data (`build.<Name>`).
    pub generated_vars: Vec<String>,
    /// Warnings shown to the user.
    pub warnings: Vec<String>,
}

/// The error of a failed `Builder.Prepare`: every problem found, plus any warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrepareError {
    /// All problems found in the configuration.
    pub errors: ConfigErrors,
    /// Warnings shown to the user alongside the errors.
    pub warnings: Vec<String>,
}

/// The error of a failed build or provisioning run; its text is shown to the user verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

impl RunError {
    /// Creates a run error from any message.
    pub fn new(message: impl Into<String>) -> Self {
        RunError(message.into())
    }
}

/// A Packer builder. One instance serves one plugin connection: `prepare` is called (possibly
/// more than once) before `run`. `run` may be cancelled through `cancel` (Packer's `Builder.Cancel`).
#[async_trait]
pub trait Builder: Send + Sync {
    /// The HCL2 schema of the builder's configuration.
    fn config_spec(&self) -> ObjectSpec;
    /// Decodes and validates the raw configs (merged in order). Must report all problems at once.
    async fn prepare(&mut self, raws: Vec<RawConfig>) -> Result<PrepareOutput, PrepareError>;
    /// Runs the build. Returns `Ok(None)` when the build produced no artifact.
    async fn run(
        &self,
        ui: Arc<dyn Ui>,
        hook: Arc<dyn Hook>,
        cancel: CancellationToken,
    ) -> Result<Option<Arc<dyn Artifact>>, RunError>;
}

/// A Packer provisioner. `prepare` is called (once or twice, see the protocol notes) before
/// `provision`.
#[async_trait]
pub trait Provisioner: Send + Sync {
    /// The HCL2 schema of the provisioner's configuration.
    fn config_spec(&self) -> ObjectSpec;
    /// Decodes and validates the raw configs (merged in order). Must report all problems at once.
    async fn prepare(&mut self, raws: Vec<RawConfig>) -> Result<(), ConfigErrors>;
    /// Provisions the machine reachable through `comm`. `generated_data` is the map the
    /// builder published through its hook (`Host`, `Port`, `PackerHTTPIP`, …).
    async fn provision(
        &self,
        ui: Arc<dyn Ui>,
        comm: Arc<dyn Communicator>,
        generated_data: serde_json::Map<String, serde_json::Value>,
        cancel: CancellationToken,
    ) -> Result<(), RunError>;
}

/// What a successful [`PostProcessor::post_process`] returns.
pub struct PostProcessed {
    /// The artifact it made (`None`: it made none, and the input artifact goes on).
    pub artifact: Option<Arc<dyn Artifact>>,
    /// Whether the input artifact must be kept (Packer deletes it otherwise, unless the template's
    /// `keep_input_artifact` says to keep it).
    pub keep_input: bool,
    /// Whether `keep_input` overrides the template's `keep_input_artifact`.
    pub force_override: bool,
}

/// A Packer post-processor: takes the artifact of a build (or of the post-processor before it) and
/// makes another. `configure` is called before `post_process`.
#[async_trait]
pub trait PostProcessor: Send + Sync {
    /// The HCL2 schema of the post-processor's configuration.
    fn config_spec(&self) -> ObjectSpec;
    /// Decodes and validates the raw configs (merged in order). Must report all problems at once.
    async fn configure(&mut self, raws: Vec<RawConfig>) -> Result<(), ConfigErrors>;
    /// Processes `input` (served by Packer core: every call goes to core).
    async fn post_process(
        &self,
        ui: Arc<dyn Ui>,
        input: Arc<dyn Artifact>,
        cancel: CancellationToken,
    ) -> Result<PostProcessed, RunError>;
}

/// A Packer data source (modern Packer only: `data "NAME" "x" { … }`): configured, then executed
/// once; its result is an object whose attributes [`Datasource::output_spec`] declares.
#[async_trait]
pub trait Datasource: Send + Sync {
    /// The HCL2 schema of the data source's configuration.
    fn config_spec(&self) -> ObjectSpec;
    /// The schema of what [`Datasource::execute`] returns: one attribute per output.
    fn output_spec(&self) -> ObjectSpec;
    /// Decodes and validates the raw configs (merged in order). Must report all problems at once.
    async fn configure(&mut self, raws: Vec<RawConfig>) -> Result<(), ConfigErrors>;
    /// Produces the outputs, keyed by the attribute names of the output spec (a missing one is null).
    async fn execute(&self) -> Result<serde_json::Map<String, serde_json::Value>, RunError>;
}

/// The hook Packer core serves to a running builder; `run("packer_provision", …)` runs every
/// provisioner of the build through the given communicator.
#[async_trait]
pub trait Hook: Send + Sync {
    /// Runs the hook `name`. `ui` receives the provisioners' messages (normally the build's own
    /// Ui); `comm` is the communicator provisioners use (`None` for `communicator = "none"`);
    /// `data` is the generated-data map.
    async fn run(
        &self,
        name: &str,
        ui: Arc<dyn Ui>,
        comm: Option<Arc<dyn Communicator>>,
        data: serde_json::Value,
        cancel: CancellationToken,
    ) -> Result<(), RunError>;
}
