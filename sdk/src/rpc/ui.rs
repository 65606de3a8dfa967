//! The `Ui` service (plugin-protocol.md §5.4): [`UiClient`] calls core's Ui; [`UiServer`]
//! serves a [`Ui`] (the builder forwards the provisioners' messages to core through it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use super::codec::{self, map, Value};
use super::netrpc::{Client, Registry, Service};
use crate::ui::{ProgressBar, Ui};

/// Core's Ui, reached over RPC. Delivery failures are logged, never returned.
#[derive(Debug, Clone)]
pub struct UiClient {
    client: Client,
}

impl UiClient {
    /// A Ui client on an RPC client whose peer serves `Ui.*`.
    pub fn new(client: Client) -> Self {
        UiClient { client }
    }

    async fn send(&self, method: &str, args: Value) -> Option<Value> {
        match self.client.call(method, args).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!("{method} failed: {e}");
                None
            }
        }
    }
}

#[async_trait]
impl Ui for UiClient {
    async fn say(&self, message: &str) {
        self.send("Ui.Say", Value::from(message)).await;
    }
    async fn message(&self, message: &str) {
        self.send("Ui.Message", Value::from(message)).await;
    }
    async fn error(&self, message: &str) {
        self.send("Ui.Error", Value::from(message)).await;
    }
    async fn machine(&self, category: &str, args: &[String]) {
        let args = Value::Array(args.iter().map(|a| Value::from(a.as_str())).collect());
        self.send("Ui.Machine", map(vec![("Category", Value::from(category)), ("Args", args)])).await;
    }
    async fn track_progress(&self, src: &str, current_size: i64, total_size: i64) -> Box<dyn ProgressBar> {
        let args = map(vec![
            ("Src", Value::from(src)),
            ("TotalSize", Value::from(total_size)),
            ("CurrentSize", Value::from(current_size)),
        ]);
        match self.send("Ui.NewTrackProgress", args).await {
            Some(v) => match codec::string_of(&v, "tracking id") {
                Ok(id) if !id.is_empty() => Box::new(RemoteProgressBar { client: self.client.clone(), id }),
                _ => Box::new(NoProgress),
            },
            None => Box::new(NoProgress),
        }
    }
}

/// A progress bar served by core as service `Ui<id>`.
struct RemoteProgressBar {
    client: Client,
    id: String,
}

#[async_trait]
impl ProgressBar for RemoteProgressBar {
    async fn add(&self, n: i64) {
        if let Err(e) = self.client.call(&format!("Ui{}.Add", self.id), Value::from(n)).await {
            tracing::debug!("progress bar {} Add failed: {e}", self.id);
        }
    }
    async fn close(&self) {
        if let Err(e) = self.client.call(&format!("Ui{}.Close", self.id), Value::Nil).await {
            tracing::debug!("progress bar {} Close failed: {e}", self.id);
        }
    }
}

struct NoProgress;

#[async_trait]
impl ProgressBar for NoProgress {
    async fn add(&self, _n: i64) {}
    async fn close(&self) {}
}

/// Serves `Ui.*` (and the `Ui<id>.*` progress bars it creates) on a registry, forwarding to a
/// [`Ui`].
pub struct UiServer {
    ui: Arc<dyn Ui>,
    registry: Registry,
    counter: AtomicU64,
}

impl UiServer {
    /// Registers a Ui server named `Ui` on `registry`.
    pub fn register(registry: &Registry, ui: Arc<dyn Ui>) {
        let server = UiServer { ui, registry: registry.clone(), counter: AtomicU64::new(0) };
        registry.register("Ui", Arc::new(server));
    }
}

fn arg_string(body: &Value, what: &str) -> Result<String, String> {
    codec::string_of(body, what).map_err(|e| e.to_string())
}

#[async_trait]
impl Service for UiServer {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        match method {
            "Say" => self.ui.say(&arg_string(&body, "Ui.Say")?).await,
            "Message" => self.ui.message(&arg_string(&body, "Ui.Message")?).await,
            "Error" => self.ui.error(&arg_string(&body, "Ui.Error")?).await,
            "Machine" => {
                let category = codec::get(&body, "Category").map(|v| arg_string(v, "Category")).transpose()?;
                let args = match codec::get(&body, "Args") {
                    Some(v) => codec::strings_of(v, "Args").map_err(|e| e.to_string())?,
                    None => Vec::new(),
                };
                self.ui.machine(&category.unwrap_or_default(), &args).await
            }
            "Ask" => return Err("Ui.Ask is not supported by this plugin: it cannot ask questions interactively".into()),
            "NewTrackProgress" => {
                let src = codec::get(&body, "Src").map(|v| arg_string(v, "Src")).transpose()?.unwrap_or_default();
                let int = |k: &str| -> Result<i64, String> {
                    codec::get(&body, k).map(|v| codec::int_of(v, k).map_err(|e| e.to_string())).unwrap_or(Ok(0))
                };
                let bar = self.ui.track_progress(&src, int("CurrentSize")?, int("TotalSize")?).await;
                let safe: String = src.chars().filter(|c| c.is_ascii_alphanumeric()).take(32).collect();
                let id = format!("{safe}{:06}", self.counter.fetch_add(1, Ordering::Relaxed));
                let name = format!("Ui{id}");
                self.registry
                    .register(name.clone(), Arc::new(ProgressBarServer { bar, registry: self.registry.clone(), name }));
                return Ok(Value::from(id));
            }
            other => return Err(format!("rpc: can't find method Ui.{other}")),
        }
        Ok(Value::Nil)
    }
}

struct ProgressBarServer {
    bar: Box<dyn ProgressBar>,
    registry: Registry,
    name: String,
}

#[async_trait]
impl Service for ProgressBarServer {
    async fn call(&self, method: &str, body: Value) -> Result<Value, String> {
        match method {
            "Add" => self.bar.add(codec::int_of(&body, "Add").map_err(|e| e.to_string())?).await,
            "Close" => {
                self.bar.close().await;
                self.registry.unregister(&self.name);
            }
            other => return Err(format!("rpc: can't find method {}.{other}", self.name)),
        }
        Ok(Value::Nil)
    }
}

/// A [`Ui`] that records everything it is told (for tests and diagnostics).
#[derive(Debug, Default)]
pub struct RecordingUi {
    /// Every call, as `"say: text"`, `"message: text"`, `"error: text"`, `"machine: cat a b"`,
    /// `"progress: src"`, `"add: n"`, `"close"`.
    pub lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl RecordingUi {
    /// A copy of the recorded lines.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn push(&self, s: String) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
}

#[async_trait]
impl Ui for RecordingUi {
    async fn say(&self, message: &str) {
        self.push(format!("say: {message}"));
    }
    async fn message(&self, message: &str) {
        self.push(format!("message: {message}"));
    }
    async fn error(&self, message: &str) {
        self.push(format!("error: {message}"));
    }
    async fn machine(&self, category: &str, args: &[String]) {
        self.push(format!("machine: {category} {}", args.join(" ")));
    }
    async fn track_progress(&self, src: &str, _current: i64, _total: i64) -> Box<dyn ProgressBar> {
        self.push(format!("progress: {src}"));
        Box::new(RecordingBar { lines: self.lines.clone() })
    }
}

struct RecordingBar {
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait]
impl ProgressBar for RecordingBar {
    async fn add(&self, n: i64) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push(format!("add: {n}"));
    }
    async fn close(&self) {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).push("close".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::netrpc::serve;

    #[tokio::test]
    async fn client_to_server_round_trip() {
        let (a, b) = tokio::io::duplex(4096);
        let reg = Registry::new();
        let rec = Arc::new(RecordingUi::default());
        UiServer::register(&reg, rec.clone());
        tokio::spawn(serve(b, reg));
        let ui = UiClient::new(Client::new(a));
        ui.say("hello").await;
        ui.message("detail").await;
        ui.error("bad").await;
        ui.machine("artifact", &["0".into(), "id".into()]).await;
        let bar = ui.track_progress("disk.img", 0, 10).await;
        bar.add(4).await;
        bar.close().await;
        assert_eq!(
            rec.lines(),
            vec![
                "say: hello",
                "message: detail",
                "error: bad",
                "machine: artifact 0 id",
                "progress: disk.img",
                "add: 4",
                "close"
            ]
        );
    }
}
