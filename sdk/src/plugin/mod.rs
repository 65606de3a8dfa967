//! Serving components to Packer core: the magic-cookie check, `describe`, the handshake line,
//! and one connection (plugin-protocol.md §1–§2).
//!
//! A plugin binary builds a [`PluginSet`], registers its components and calls
//! [`PluginSet::run`] with its argv. Supported invocations:
//!
//! | argv | what happens |
//! |---|---|
//! | `BIN describe` | prints the describe JSON (§1.2) |
//! | `BIN start builder\|provisioner\|post-processor\|datasource [--protobuf] NAME` | serves NAME, 4-field handshake `5\|0\|unix\|PATH` |
//! | `packer-builder-X` (no args) | serves the default builder, 3-field handshake `5\|unix\|PATH` (Packer 1.6.6) |
//! | `packer-provisioner-X-NAME` (no args) | serves provisioner NAME, 3-field handshake |
//! | `packer-post-processor-X-NAME` (no args) | serves post-processor NAME, 3-field handshake |
//!
//! `PACKER_RS_HANDSHAKE=3|4` forces the handshake form. The ConfigSpec encoding follows the
//! handshake: 3 fields → gob with [`GobFlavor::DebianVendored`] (Debian's 1.6.6 core), 4 fields
//! → gob with [`GobFlavor::Module`], and protobuf when `--protobuf` was given.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::component::{Builder, Datasource, PostProcessor, Provisioner};
use crate::hcl::{GobFlavor, ObjectSpec};
use crate::rpc::builder::{BuilderServer, SpecEncoder};
use crate::rpc::datasource::DatasourceServer;
use crate::rpc::inflight::InFlight;
use crate::rpc::mux::{Role, Session};
use crate::rpc::netrpc::{serve, Registry};
use crate::rpc::post_processor::PostProcessorServer;
use crate::rpc::provisioner::ProvisionerServer;

/// Environment variable Packer sets to prove it started the plugin.
pub const MAGIC_COOKIE_KEY: &str = "PACKER_PLUGIN_MAGIC_COOKIE";
/// Its expected value.
pub const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// What the SDK prints when started without the cookie.
pub const NOT_BY_PACKER_MESSAGE: &str = "Please do not execute plugins directly. Packer will execute these for you.";
/// Component name exposed as the bare plugin name (`source "qemu-rs"`).
pub const DEFAULT_NAME: &str = "-packer-default-plugin-name-";
/// Plugin API version reported by `describe` (must match the installed file name).
pub const API_VERSION: &str = "x5.0";
/// `protocol_version` in `describe`: "v2" = can serve ConfigSpec as protobuf.
pub const PROTOCOL_VERSION: &str = "v2";
/// Version of this SDK, reported as `sdk_version`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Overrides the handshake form: `3` (Packer 1.6.6) or `4` (modern).
pub const HANDSHAKE_ENV: &str = "PACKER_RS_HANDSHAKE";

/// Errors of the plugin process.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
    /// Started without Packer's magic cookie.
    #[error("{NOT_BY_PACKER_MESSAGE}")]
    NotStartedByPacker,
    /// The component asked for is not registered.
    #[error("unknown {kind} {name:?}; this plugin has: {known}")]
    UnknownComponent {
        /// "builder", "provisioner" or "post-processor".
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The registered names.
        known: String,
    },
    /// Setting up the listener or the connection failed.
    #[error("{0}")]
    Io(String),
    /// Packer never opened the root RPC stream.
    #[error("Packer did not open the plugin's RPC stream: {0}")]
    NoRootStream(String),
}

/// Which component kind a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `start builder …`.
    Builder,
    /// `start provisioner …`.
    Provisioner,
    /// `start post-processor …`.
    PostProcessor,
    /// `start datasource …` (modern Packer only).
    Datasource,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Builder => "builder",
            Kind::Provisioner => "provisioner",
            Kind::PostProcessor => "post-processor",
            Kind::Datasource => "datasource",
        }
    }
}

/// The handshake line form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// `5|unix|PATH` (Packer 1.6.6).
    Legacy,
    /// `5|0|unix|PATH` (Packer 1.7+).
    Modern,
}

/// How ConfigSpec is encoded for the connected core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    /// Go gob of `hcldec.ObjectSpec`, with the given nested-ObjectSpec registered name.
    Gob(GobFlavor),
    /// protobuf `Spec` (core started us with `--protobuf`).
    Protobuf,
}

impl SpecFormat {
    /// The encoder the RPC services use.
    pub fn encoder(self) -> SpecEncoder {
        Arc::new(move |spec: &ObjectSpec| {
            Ok(match self {
                SpecFormat::Gob(flavor) => spec.to_gob(flavor),
                SpecFormat::Protobuf => spec.to_protobuf(),
            })
        })
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print the describe JSON.
    Describe,
    /// Serve one component.
    Serve {
        /// Builder or provisioner.
        kind: Kind,
        /// The registered component name.
        name: String,
        /// Handshake line form.
        handshake: Handshake,
        /// ConfigSpec encoding.
        format: SpecFormat,
    },
}

/// The line printed on stdout once the socket listens.
pub fn handshake_line(handshake: Handshake, socket: &Path) -> String {
    match handshake {
        Handshake::Legacy => format!("5|unix|{}", socket.display()),
        Handshake::Modern => format!("5|0|unix|{}", socket.display()),
    }
}

/// Checks Packer's magic cookie in the environment.
pub fn check_magic_cookie() -> Result<(), PluginError> {
    match std::env::var(MAGIC_COOKIE_KEY) {
        Ok(v) if v == MAGIC_COOKIE_VALUE => Ok(()),
        _ => Err(PluginError::NotStartedByPacker),
    }
}

type BuilderFactory = Box<dyn Fn() -> Box<dyn Builder> + Send + Sync>;
type ProvisionerFactory = Box<dyn Fn() -> Box<dyn Provisioner> + Send + Sync>;
type PostProcessorFactory = Box<dyn Fn() -> Box<dyn PostProcessor> + Send + Sync>;
type DatasourceFactory = Box<dyn Fn() -> Box<dyn Datasource> + Send + Sync>;

/// One component to serve.
pub enum Component {
    /// A builder, served as `Builder`.
    Builder(Box<dyn Builder>),
    /// A provisioner, served as `Provisioner`.
    Provisioner(Box<dyn Provisioner>),
    /// A post-processor, served as `PostProcessor`.
    PostProcessor(Box<dyn PostProcessor>),
    /// A data source, served as `Datasource`.
    Datasource(Box<dyn Datasource>),
}

/// The components of a plugin binary, by name.
pub struct PluginSet {
    version: String,
    builders: BTreeMap<String, BuilderFactory>,
    provisioners: BTreeMap<String, ProvisionerFactory>,
    post_processors: BTreeMap<String, PostProcessorFactory>,
    datasources: BTreeMap<String, DatasourceFactory>,
}

impl PluginSet {
    /// An empty set; `version` is the plugin's version (`describe`'s `version`).
    pub fn new(version: impl Into<String>) -> Self {
        PluginSet {
            version: version.into(),
            builders: BTreeMap::new(),
            provisioners: BTreeMap::new(),
            post_processors: BTreeMap::new(),
            datasources: BTreeMap::new(),
        }
    }

    /// Registers a builder under `name` ([`DEFAULT_NAME`] = the plugin's own name).
    pub fn register_builder<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn() -> Box<dyn Builder> + Send + Sync + 'static,
    {
        self.builders.insert(name.to_string(), Box::new(factory));
        self
    }

    /// Registers a provisioner under `name`.
    pub fn register_provisioner<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn() -> Box<dyn Provisioner> + Send + Sync + 'static,
    {
        self.provisioners.insert(name.to_string(), Box::new(factory));
        self
    }

    /// Registers a post-processor under `name`.
    pub fn register_post_processor<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn() -> Box<dyn PostProcessor> + Send + Sync + 'static,
    {
        self.post_processors.insert(name.to_string(), Box::new(factory));
        self
    }

    /// Registers a data source under `name` (served to modern Packer; Packer 1.6 has none).
    pub fn register_datasource<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn() -> Box<dyn Datasource> + Send + Sync + 'static,
    {
        self.datasources.insert(name.to_string(), Box::new(factory));
        self
    }

    /// The `describe` JSON (§1.2), component lists sorted.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.version,
            "sdk_version": SDK_VERSION,
            "api_version": API_VERSION,
            "builders": self.builders.keys().collect::<Vec<_>>(),
            "post_processors": self.post_processors.keys().collect::<Vec<_>>(),
            "provisioners": self.provisioners.keys().collect::<Vec<_>>(),
            "datasources": self.datasources.keys().collect::<Vec<_>>(),
            "protocol_version": PROTOCOL_VERSION,
        })
    }

    /// Parses argv (`args[0]` = program path) into a [`Command`]; `handshake_env` is the value
    /// of [`HANDSHAKE_ENV`], if set.
    pub fn parse_args(&self, args: &[String], handshake_env: Option<&str>) -> Result<Command, PluginError> {
        let forced = match handshake_env.map(str::trim) {
            None | Some("") => None,
            Some("3") => Some(Handshake::Legacy),
            Some("4") => Some(Handshake::Modern),
            Some(other) => {
                return Err(PluginError::Usage(format!(
                    "{HANDSHAKE_ENV}={other:?} is invalid: use 3 (Packer 1.6.6) or 4"
                )))
            }
        };
        let format_for = |h: Handshake, protobuf: bool| {
            if protobuf {
                SpecFormat::Protobuf
            } else if h == Handshake::Legacy {
                SpecFormat::Gob(GobFlavor::DebianVendored)
            } else {
                SpecFormat::Gob(GobFlavor::Module)
            }
        };
        let argv0 = args.first().map(String::as_str).unwrap_or("");
        let rest = args.get(1..).unwrap_or(&[]);
        if rest.is_empty() {
            let base = Path::new(argv0).file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_default();
            let base = base.strip_suffix(".exe").unwrap_or(&base).to_string();
            let (kind, name) = if let Some(suffix) = base.strip_prefix("packer-builder-") {
                (Kind::Builder, self.legacy_name(self.builders.keys(), suffix, true))
            } else if let Some(suffix) = base.strip_prefix("packer-provisioner-") {
                (Kind::Provisioner, self.legacy_name(self.provisioners.keys(), suffix, false))
            } else if let Some(suffix) = base.strip_prefix("packer-post-processor-") {
                (Kind::PostProcessor, self.legacy_name(self.post_processors.keys(), suffix, true))
            } else {
                return Err(PluginError::Usage(usage()));
            };
            let name = name.ok_or_else(|| self.unknown(kind, &base))?;
            let handshake = forced.unwrap_or(Handshake::Legacy);
            return Ok(Command::Serve { kind, name, handshake, format: format_for(handshake, false) });
        }
        match rest[0].as_str() {
            "describe" if rest.len() == 1 => Ok(Command::Describe),
            "start" => {
                let protobuf = rest.iter().any(|a| a == "--protobuf");
                let positional: Vec<&String> = rest[1..].iter().filter(|a| *a != "--protobuf").collect();
                let [kind, name] = positional.as_slice() else {
                    return Err(PluginError::Usage(usage()));
                };
                let kind = match kind.as_str() {
                    "builder" => Kind::Builder,
                    "provisioner" => Kind::Provisioner,
                    "post-processor" => Kind::PostProcessor,
                    "datasource" => Kind::Datasource,
                    other => {
                        return Err(PluginError::Usage(format!(
                            "cannot start a {other:?}: this plugin has builders, provisioners, post-processors and data sources\n{}",
                            usage()
                        )))
                    }
                };
                let known = match kind {
                    Kind::Builder => self.builders.contains_key(name.as_str()),
                    Kind::Provisioner => self.provisioners.contains_key(name.as_str()),
                    Kind::PostProcessor => self.post_processors.contains_key(name.as_str()),
                    Kind::Datasource => self.datasources.contains_key(name.as_str()),
                };
                if !known {
                    return Err(self.unknown(kind, name));
                }
                let handshake = forced.unwrap_or(Handshake::Modern);
                Ok(Command::Serve { kind, name: name.to_string(), handshake, format: format_for(handshake, protobuf) })
            }
            _ => Err(PluginError::Usage(usage())),
        }
    }

    fn legacy_name<'a>(
        &self,
        names: impl Iterator<Item = &'a String>,
        suffix: &str,
        default_ok: bool,
    ) -> Option<String> {
        let names: Vec<&String> = names.collect();
        if let Some(n) = names.iter().find(|n| n.as_str() == suffix) {
            return Some(n.to_string());
        }
        if let Some(n) =
            names.iter().filter(|n| n.as_str() != DEFAULT_NAME).find(|n| suffix.ends_with(&format!("-{n}")))
        {
            return Some(n.to_string());
        }
        if default_ok && names.iter().any(|n| n.as_str() == DEFAULT_NAME) {
            return Some(DEFAULT_NAME.to_string());
        }
        None
    }

    fn unknown(&self, kind: Kind, name: &str) -> PluginError {
        let names: Vec<&str> = match kind {
            Kind::Builder => self.builders.keys().map(String::as_str).collect(),
            Kind::Provisioner => self.provisioners.keys().map(String::as_str).collect(),
            Kind::PostProcessor => self.post_processors.keys().map(String::as_str).collect(),
            Kind::Datasource => self.datasources.keys().map(String::as_str).collect(),
        };
        PluginError::UnknownComponent { kind: kind.as_str(), name: name.to_string(), known: names.join(", ") }
    }

    /// Instantiates a registered component.
    pub fn component(&self, kind: Kind, name: &str) -> Result<Component, PluginError> {
        match kind {
            Kind::Builder => self.builders.get(name).map(|f| Component::Builder(f())),
            Kind::Provisioner => self.provisioners.get(name).map(|f| Component::Provisioner(f())),
            Kind::PostProcessor => self.post_processors.get(name).map(|f| Component::PostProcessor(f())),
            Kind::Datasource => self.datasources.get(name).map(|f| Component::Datasource(f())),
        }
        .ok_or_else(|| self.unknown(kind, name))
    }

    /// Runs the plugin process for `args` (`std::env::args()`), or the janitor when
    /// [`crate::janitor::JANITOR_ENV`] is set; returns the exit code.
    /// Install a stderr `tracing` subscriber first (see [`default_log_filter`]).
    pub fn run(&self, args: Vec<String>) -> ExitCode {
        if std::env::var_os(crate::janitor::JANITOR_ENV).is_some() {
            return crate::janitor::serve_stdin();
        }
        let handshake_env = std::env::var(HANDSHAKE_ENV).ok();
        let command = match self.parse_args(&args, handshake_env.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        match command {
            Command::Describe => {
                println!("{}", self.describe());
                ExitCode::SUCCESS
            }
            Command::Serve { kind, name, handshake, format } => {
                if let Err(e) = check_magic_cookie() {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
                let component = match self.component(kind, &name) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                };
                crate::janitor::enable();
                let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("cannot start the async runtime: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                let result = runtime.block_on(serve_process(component, handshake, format));
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
                match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }
}

fn usage() -> String {
    "usage: packer-plugin-NAME describe | start builder|provisioner|post-processor|datasource [--protobuf] NAME\n\
     (this program is a Packer plugin: Packer starts it, see `packer plugins install --path`)"
        .to_string()
}

/// The log filter a plugin binary should use for its stderr logs: `RUST_LOG` if set, else
/// `debug` when `PACKER_LOG` is set (Packer then shows plugin stderr), else `info`.
pub fn default_log_filter() -> String {
    match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ => match std::env::var("PACKER_LOG") {
            Ok(v) if !v.is_empty() && v != "0" => "debug,yamux=info".to_string(),
            _ => "info".to_string(),
        },
    }
}

/// Removes the socket file when dropped.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fresh socket path `packer-plugin*` in `TMPDIR`.
fn socket_path() -> Result<PathBuf, PluginError> {
    let f = tempfile::Builder::new().prefix("packer-plugin").tempfile_in(std::env::temp_dir()).map_err(|e| {
        PluginError::Io(format!("cannot create a socket name in {}: {e}", std::env::temp_dir().display()))
    })?;
    let path = f.path().to_path_buf();
    drop(f); // removes the file; we listen on its name
    Ok(path)
}

/// Ignores SIGINT and SIGTERM (Packer cancels by RPC and ends plugins with SIGKILL), logging them.
fn ignore_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    for (kind, name) in [(SignalKind::interrupt(), "SIGINT"), (SignalKind::terminate(), "SIGTERM")] {
        match signal(kind) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    let mut count = 0u64;
                    while s.recv().await.is_some() {
                        count += 1;
                        tracing::info!("ignoring {name} #{count}: Packer cancels builds over RPC");
                    }
                });
            }
            Err(e) => tracing::warn!("cannot install a {name} handler: {e}"),
        }
    }
}

/// Listens, prints the handshake, serves exactly one connection, and returns when it closes.
async fn serve_process(component: Component, handshake: Handshake, format: SpecFormat) -> Result<(), PluginError> {
    ignore_signals();
    let path = socket_path()?;
    let listener = tokio::net::UnixListener::bind(&path)
        .map_err(|e| PluginError::Io(format!("cannot listen on {}: {e}", path.display())))?;
    let guard = SocketFile(path.clone());
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", handshake_line(handshake, &path))
            .and_then(|_| out.flush())
            .map_err(|e| PluginError::Io(format!("cannot write the handshake line to stdout: {e}")))?;
    }
    tracing::debug!("listening on {}", path.display());
    let parent = std::os::unix::process::parent_id();
    let inflight = InFlight::new();
    let serving = async {
        let (stream, _) =
            listener.accept().await.map_err(|e| PluginError::Io(format!("accepting Packer's connection: {e}")))?;
        drop(listener);
        drop(guard);
        serve_connection_with(stream, component, format, inflight.clone()).await
    };
    tokio::select! {
        r = serving => r,
        _ = parent_gone(parent) => {
            tracing::warn!("Packer (pid {parent}) is gone: cancelling what runs and cleaning up before exiting");
            inflight.drain(CLEANUP_GRACE).await;
            Err(PluginError::Io(format!("Packer (pid {parent}) exited without closing the connection")))
        }
    }
}

/// How long a build or provisioner cancelled because Packer vanished may take to clean up.
pub const CLEANUP_GRACE: std::time::Duration = std::time::Duration::from_secs(40);

/// Resolves when this process's parent (Packer core, which started it) is no longer `parent`:
/// Packer was killed (SIGKILL gives it no chance to close the connection or end its plugins) and
/// the plugin was handed to another process. Checked twice a second.
async fn parent_gone(parent: u32) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

/// Serves `component` on one connection from core (yamux server side, broker id 0) until the
/// connection ends.
pub async fn serve_connection<T>(io: T, component: Component, format: SpecFormat) -> Result<(), PluginError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_connection_with(io, component, format, InFlight::new()).await
}

/// [`serve_connection`] with the long calls tracked by `inflight`: when the connection ends while a
/// build or provisioner still runs (Packer was killed), they are cancelled and their cleanups
/// awaited (at most [`CLEANUP_GRACE`]) before this returns.
pub async fn serve_connection_with<T>(
    io: T,
    component: Component,
    format: SpecFormat,
    inflight: InFlight,
) -> Result<(), PluginError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let session = Session::new(io, Role::Server);
    let registry = Registry::new();
    let encoder = format.encoder();
    let protobuf = format == SpecFormat::Protobuf;
    match component {
        Component::Builder(b) => {
            registry.register(
                "Builder",
                Arc::new(BuilderServer::with_inflight(b, session.clone(), encoder, inflight.clone())),
            );
        }
        Component::Provisioner(p) => {
            registry.register(
                "Provisioner",
                Arc::new(ProvisionerServer::with_inflight(p, session.clone(), encoder, inflight.clone())),
            );
        }
        Component::PostProcessor(p) => {
            registry.register(
                "PostProcessor",
                Arc::new(PostProcessorServer::with_inflight(p, session.clone(), encoder, inflight.clone())),
            );
        }
        Component::Datasource(d) => {
            registry.register("Datasource", Arc::new(DatasourceServer::new(d, encoder, protobuf)));
        }
    }
    let root = session.accept(0).await.map_err(|e| PluginError::NoRootStream(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = serve(root, registry).await {
            tracing::error!("root RPC stream: {e}");
        }
    });
    session.closed().await;
    inflight.drain(CLEANUP_GRACE).await;
    match session.error() {
        Some(e) => Err(PluginError::Io(format!("the connection to Packer failed: {e}"))),
        None => {
            tracing::debug!("Packer closed the connection");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> PluginSet {
        struct B;
        #[async_trait::async_trait]
        impl Builder for B {
            fn config_spec(&self) -> ObjectSpec {
                ObjectSpec::new()
            }
            async fn prepare(
                &mut self,
                _raws: Vec<crate::config::RawConfig>,
            ) -> Result<crate::component::PrepareOutput, crate::component::PrepareError> {
                Ok(Default::default())
            }
            async fn run(
                &self,
                _ui: Arc<dyn crate::ui::Ui>,
                _hook: Arc<dyn crate::component::Hook>,
                _cancel: crate::CancellationToken,
            ) -> Result<Option<Arc<dyn crate::artifact::Artifact>>, crate::component::RunError> {
                Ok(None)
            }
        }
        let mut s = PluginSet::new("1.2.3");
        s.register_builder(DEFAULT_NAME, || Box::new(B));
        s.register_builder("other", || Box::new(B));
        s
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn describe_lists_sorted_components() {
        let d = set().describe();
        assert_eq!(d["version"], "1.2.3");
        assert_eq!(d["api_version"], "x5.0");
        assert_eq!(d["protocol_version"], "v2");
        assert_eq!(d["builders"], serde_json::json!([DEFAULT_NAME, "other"]));
        assert_eq!(d["post_processors"], serde_json::json!([]));
    }

    #[test]
    fn start_forms() {
        let s = set();
        let c = s.parse_args(&args(&["/x/packer-plugin-qemu-rs", "start", "builder", "--protobuf", "other"]), None);
        assert_eq!(
            c.unwrap(),
            Command::Serve {
                kind: Kind::Builder,
                name: "other".into(),
                handshake: Handshake::Modern,
                format: SpecFormat::Protobuf
            }
        );
        let c = s.parse_args(&args(&["p", "start", "builder", DEFAULT_NAME]), Some("3")).unwrap();
        assert!(matches!(
            c,
            Command::Serve { handshake: Handshake::Legacy, format: SpecFormat::Gob(GobFlavor::DebianVendored), .. }
        ));
        let c = s.parse_args(&args(&["p", "start", "builder", DEFAULT_NAME]), None).unwrap();
        assert!(matches!(
            c,
            Command::Serve { handshake: Handshake::Modern, format: SpecFormat::Gob(GobFlavor::Module), .. }
        ));
        assert!(matches!(
            s.parse_args(&args(&["p", "start", "builder", "nope"]), None),
            Err(PluginError::UnknownComponent { .. })
        ));
        // kinds this set has none of: unknown components; a kind Packer does not have: usage
        assert!(matches!(
            s.parse_args(&args(&["p", "start", "post-processor", "x"]), None),
            Err(PluginError::UnknownComponent { kind: "post-processor", .. })
        ));
        assert!(matches!(
            s.parse_args(&args(&["p", "start", "datasource", "x"]), None),
            Err(PluginError::UnknownComponent { kind: "datasource", .. })
        ));
        assert!(matches!(s.parse_args(&args(&["p", "start", "hook", "x"]), None), Err(PluginError::Usage(_))));
        assert!(matches!(
            s.parse_args(&args(&["p", "start", "builder", "other"]), Some("5")),
            Err(PluginError::Usage(_))
        ));
        assert_eq!(s.parse_args(&args(&["p", "describe"]), None).unwrap(), Command::Describe);
        assert!(matches!(s.parse_args(&args(&["/usr/bin/packer-plugin-qemu-rs"]), None), Err(PluginError::Usage(_))));
    }

    #[test]
    fn legacy_argv0_names() {
        let s = set();
        let c = s.parse_args(&args(&["/home/u/.packer.d/plugins/packer-builder-qemu-rs"]), None).unwrap();
        assert_eq!(
            c,
            Command::Serve {
                kind: Kind::Builder,
                name: DEFAULT_NAME.into(),
                handshake: Handshake::Legacy,
                format: SpecFormat::Gob(GobFlavor::DebianVendored)
            }
        );
        let c = s.parse_args(&args(&["packer-builder-qemu-rs-other"]), None).unwrap();
        assert!(matches!(c, Command::Serve { ref name, .. } if name == "other"));
        let c = s.parse_args(&args(&["packer-builder-qemu-rs"]), Some("4")).unwrap();
        assert!(matches!(c, Command::Serve { handshake: Handshake::Modern, .. }));
        assert!(matches!(
            s.parse_args(&args(&["packer-provisioner-qemu-rs-shell"]), None),
            Err(PluginError::UnknownComponent { .. })
        ));
    }

    #[test]
    fn handshake_lines() {
        assert_eq!(handshake_line(Handshake::Legacy, Path::new("/tmp/packer-plugin1")), "5|unix|/tmp/packer-plugin1");
        assert_eq!(handshake_line(Handshake::Modern, Path::new("/tmp/packer-plugin1")), "5|0|unix|/tmp/packer-plugin1");
    }
}
