//! A small QMP (QEMU Machine Protocol) client over a unix socket: the greeting, capabilities
//! negotiation, commands matched to their replies by `id`, and asynchronous events.
//!
//! Why not the `qapi` crate (0.15, typed commands generated from QEMU 9's schema): it talks to
//! QEMU 7.2 fine for every command qemu-rs sends (tried: `query-status`, `query-vnc`,
//! `query-kvm`, `query-cpus-fast`, `trace-event-set-state`, `human-monitor-command`,
//! `input-send-event`, `change-vnc-password`, `system_powerdown`, `quit`), but it decodes every
//! message into its schema's types, and one event its schema does not know — which a QEMU newer
//! than the schema sends whenever it added an event — ends the whole connection: against a QMP
//! server sending an unknown event before a reply, every command then failed with "QAPI stream
//! disconnected" (the same holds for a new enum value in a reply, e.g. a new run state). A build
//! must not die because its QEMU is newer than a crate. This client keeps replies and events as
//! JSON values and reads only the fields it needs (test `unknown_events_and_fields_are_ignored`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, oneshot};

/// A migration (saving or restoring a VM's state) that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// QMP failed while waiting.
    #[error("{0}")]
    Qmp(QmpError),
    /// QEMU reports the migration failed.
    #[error("the migration {0}")]
    Failed(String),
}

/// Errors of the QMP client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached.
    #[error("cannot connect to the QMP socket {path}: {reason}")]
    Connect {
        /// The socket path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The connection to QEMU ended (QEMU exited, or the socket was closed).
    #[error("the QMP connection to QEMU was closed")]
    Closed,
    /// QEMU answered a command with an error.
    #[error("QEMU refused {command}: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// QEMU sent something that is not QMP.
    #[error("unexpected QMP message: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("QEMU did not answer {0} in time")]
    Timeout(String),
}

/// A QMP event (`{"event": NAME, "data": …}`).
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Event name, e.g. `SHUTDOWN`, `POWERDOWN`, `GUEST_PANICKED`, `RESET`.
    pub name: String,
    /// Event data (`null` when absent).
    pub data: Value,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, QmpError>>>>>;

/// A connected QMP client. Cloneable handles share one connection.
#[derive(Clone)]
pub struct Qmp {
    writer: Arc<tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    events: broadcast::Sender<QmpEvent>,
    closed: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp").finish_non_exhaustive()
    }
}

/// How long to wait for the answer to one command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

impl Qmp {
    /// Connects to the QMP socket at `path`, retrying until `timeout` (QEMU creates the socket a
    /// moment after it starts), reads the greeting and negotiates capabilities.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(QmpError::Connect { path: path.display().to_string(), reason: e.to_string() })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = tokio::time::timeout(COMMAND_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| QmpError::Timeout("the QMP greeting".into()))?
            .map_err(|_| QmpError::Closed)?
            .ok_or(QmpError::Closed)?;
        let greeting: Value = serde_json::from_str(&greeting).map_err(|_| QmpError::Protocol(greeting.clone()))?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(greeting.to_string()));
        }
        let (events, _) = broadcast::channel(256);
        let qmp = Qmp {
            writer: Arc::new(tokio::sync::Mutex::new(write)),
            pending: Pending::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            events,
            closed: tokio_util::sync::CancellationToken::new(),
        };
        tokio::spawn(read_loop(lines, qmp.pending.clone(), qmp.events.clone(), qmp.closed.clone()));
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Subscribes to events sent from now on.
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Resolves when the connection is closed (QEMU exited).
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Runs `command` with optional `arguments` and returns its `return` value.
    pub async fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        if self.closed.is_cancelled() {
            return Err(QmpError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("qmp pending lock").insert(id, tx);
        let mut line = msg.to_string();
        line.push('\n');
        {
            let mut w = self.writer.lock().await;
            if w.write_all(line.as_bytes()).await.is_err() {
                self.pending.lock().expect("qmp pending lock").remove(&id);
                return Err(QmpError::Closed);
            }
        }
        let reply = tokio::select! {
            r = rx => r.map_err(|_| QmpError::Closed)?,
            _ = tokio::time::sleep(COMMAND_TIMEOUT) => {
                self.pending.lock().expect("qmp pending lock").remove(&id);
                return Err(QmpError::Timeout(command.to_string()));
            }
        };
        reply.map_err(|e| match e {
            QmpError::Command { class, desc, .. } => QmpError::Command { command: command.to_string(), class, desc },
            other => other,
        })
    }

    /// `human-monitor-command`: runs the HMP `command` (for what QMP has no command of its own, such
    /// as `info usernet` or `xp`) and returns what it printed.
    pub async fn human_monitor(&self, command: &str) -> Result<String, QmpError> {
        let v = self.execute("human-monitor-command", Some(json!({ "command-line": command }))).await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// `query-status`: the VM's run state (`running`, `paused`, `shutdown`, `guest-panicked`, …).
    pub async fn status(&self) -> Result<String, QmpError> {
        let v = self.execute("query-status", None).await?;
        Ok(v.get("status").and_then(Value::as_str).unwrap_or("unknown").to_string())
    }

    /// `system_powerdown`: presses the ACPI power button.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None).await.map(|_| ())
    }

    /// `quit`: ends QEMU at once (no guest shutdown).
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute("quit", None).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `cont`: starts a VM created with `-S`.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute("cont", None).await.map(|_| ())
    }

    /// `stop`: pauses the VM (QEMU flushes the disks).
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute("stop", None).await.map(|_| ())
    }

    /// `migrate` to `uri` (e.g. `exec:cat > FILE`): starts writing the VM's state out, without
    /// QEMU's default bandwidth limit (128 MiB/s, made for live migration over a shared network:
    /// it would make saving 1 GiB of RAM to a local file take 8 s).
    pub async fn migrate(&self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-set-parameters", Some(json!({ "max-bandwidth": i64::MAX / 2 }))).await?;
        self.execute("migrate", Some(json!({ "uri": uri }))).await.map(|_| ())
    }

    /// `migrate-incoming` from `uri` (QEMU started with `-incoming defer`): starts reading the
    /// VM's state in.
    pub async fn migrate_incoming(&self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-incoming", Some(json!({ "uri": uri }))).await.map(|_| ())
    }

    /// Polls `query-migrate` until the migration in either direction has completed (`Ok`) or
    /// failed or was cancelled (`Err` with QEMU's reason).
    pub async fn wait_migration(&self) -> Result<(), MigrationError> {
        loop {
            let v = self.execute("query-migrate", None).await.map_err(MigrationError::Qmp)?;
            match v.get("status").and_then(Value::as_str).unwrap_or("none") {
                "completed" => return Ok(()),
                s @ ("failed" | "cancelled") => {
                    let why = v.get("error-desc").and_then(Value::as_str).unwrap_or("no reason given");
                    return Err(MigrationError::Failed(format!("{s}: {why}")));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// The TCP port the VNC server listens on (`query-vnc`), if VNC is enabled.
    pub async fn vnc_port(&self) -> Result<Option<u16>, QmpError> {
        let v = self.execute("query-vnc", None).await?;
        if v.get("enabled").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        Ok(v.get("service").and_then(Value::as_str).and_then(|s| s.parse().ok()))
    }

    /// `change-vnc-password`: sets the password of a VNC server started with `password=on`.
    /// The password is never logged.
    pub async fn change_vnc_password(&self, password: &str) -> Result<(), QmpError> {
        self.execute("change-vnc-password", Some(json!({ "password": password }))).await.map(|_| ())
    }

    /// The MAC address of the NIC attached to the network backend `netdev` (e.g. `user.0`), found
    /// as Packer does: `qom-list` of `/machine/peripheral` and `/machine/peripheral-anon`, then
    /// `qom-get` of each device's `netdev` and `mac` properties.
    pub async fn nic_mac(&self, netdev: &str) -> Result<Option<String>, QmpError> {
        for parent in ["/machine/peripheral", "/machine/peripheral-anon"] {
            let children = self.execute("qom-list", Some(json!({ "path": parent }))).await?;
            for child in children.as_array().into_iter().flatten() {
                let (Some(name), Some(ty)) = (child["name"].as_str(), child["type"].as_str()) else { continue };
                if !ty.starts_with("child<") {
                    continue;
                }
                let path = format!("{parent}/{name}");
                let props = self.execute("qom-list", Some(json!({ "path": path }))).await?;
                let has = |p: &str| props.as_array().into_iter().flatten().any(|x| x["name"] == p);
                if !(has("netdev") && has("mac")) {
                    continue;
                }
                let get = |property: &'static str| {
                    self.execute("qom-get", Some(json!({ "path": path, "property": property })))
                };
                if get("netdev").await?.as_str() == Some(netdev) {
                    return Ok(get("mac").await?.as_str().map(str::to_ascii_lowercase));
                }
            }
        }
        Ok(None)
    }

    /// Sends key events: `(qcode, down)` pairs, in one `input-send-event` command.
    pub async fn send_keys(&self, keys: &[(&str, bool)]) -> Result<(), QmpError> {
        let events: Vec<Value> = keys
            .iter()
            .map(|(qcode, down)| {
                json!({ "type": "key", "data": { "down": down, "key": { "type": "qcode", "data": qcode } } })
            })
            .collect();
        self.execute("input-send-event", Some(json!({ "events": events }))).await.map(|_| ())
    }
}

async fn read_loop(
    mut lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    pending: Pending,
    events: broadcast::Sender<QmpEvent>,
    closed: tokio_util::sync::CancellationToken,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            tracing::warn!("QMP: ignoring a line that is not JSON: {line}");
            continue;
        };
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            tracing::debug!(event = name, "QMP event");
            let _ =
                events.send(QmpEvent { name: name.to_string(), data: msg.get("data").cloned().unwrap_or(Value::Null) });
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::debug!("QMP: reply without id: {line}");
            continue;
        };
        let Some(tx) = pending.lock().expect("qmp pending lock").remove(&id) else { continue };
        let r = if let Some(ret) = msg.get("return") {
            Ok(ret.clone())
        } else if let Some(err) = msg.get("error") {
            Err(QmpError::Command {
                command: String::new(),
                class: err.get("class").and_then(Value::as_str).unwrap_or("GenericError").to_string(),
                desc: err.get("desc").and_then(Value::as_str).unwrap_or("").to_string(),
            })
        } else {
            Err(QmpError::Protocol(line.clone()))
        };
        let _ = tx.send(r);
    }
    closed.cancel();
    // fail every waiting command
    pending.lock().expect("qmp pending lock").clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::process;

    struct Qemu {
        child: tokio::process::Child,
        _dir: tempfile::TempDir,
        sock: std::path::PathBuf,
    }

    async fn start_qemu(extra: &[&str]) -> Qemu {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let child = process::command("qemu-system-x86_64")
            .args(["-accel", "tcg", "-nodefaults", "-display", "none", "-S", "-m", "32", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .args(extra)
            .spawn()
            .expect("start qemu-system-x86_64");
        Qemu { child, _dir: dir, sock }
    }

    /// What a QEMU newer than this code may send: events and fields nobody here knows.
    #[tokio::test]
    async fn unknown_events_and_fields_are_ignored() {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let (conn, _) = listener.accept().await.unwrap();
            let (rd, mut wr) = conn.into_split();
            let mut lines = tokio::io::BufReader::new(rd).lines();
            let greeting = r#"{"QMP": {"version": {"qemu": {"major": 99, "minor": 0, "micro": 0}, "package": ""}, "capabilities": ["oob", "future-cap"]}}"#;
            wr.write_all(format!("{greeting}\r\n").as_bytes()).await.unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                let m: Value = serde_json::from_str(&line).unwrap();
                let event = r#"{"event": "QEMU_RS_FUTURE_EVENT", "data": {"x": 1}, "timestamp": {"seconds": 1, "microseconds": 2}}"#;
                wr.write_all(format!("{event}\r\n").as_bytes()).await.unwrap();
                let ret = match m["execute"].as_str() {
                    Some("query-status") => json!({"running": true, "status": "future-state", "new-field": [1]}),
                    _ => json!({}),
                };
                let reply = json!({"return": ret, "id": m["id"]});
                wr.write_all(format!("{reply}\r\n").as_bytes()).await.unwrap();
            }
        });
        let qmp = Qmp::connect(&sock, Duration::from_secs(10)).await.expect("connect");
        let mut events = qmp.events();
        assert_eq!(qmp.status().await.unwrap(), "future-state");
        assert_eq!(qmp.status().await.unwrap(), "future-state", "the connection survives unknown events");
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.unwrap().unwrap();
        assert_eq!(e.name, "QEMU_RS_FUTURE_EVENT");
        drop(qmp);
        server.abort();
    }

    #[tokio::test]
    async fn talks_to_real_qemu() {
        let mut q = start_qemu(&["-vnc", "127.0.0.1:0,to=200"]).await;
        let qmp = Qmp::connect(&q.sock, Duration::from_secs(30)).await.expect("connect");
        assert_eq!(qmp.status().await.unwrap(), "prelaunch");
        let port = qmp.vnc_port().await.unwrap().expect("vnc enabled");
        assert!(port >= 5900, "port {port}");
        qmp.cont().await.unwrap();
        qmp.send_keys(&[("shift", true), ("a", true), ("a", false), ("shift", false)]).await.unwrap();
        // an unknown key is QEMU's error, reported with the command name
        let e = qmp.send_keys(&[("no-such-key", true)]).await.unwrap_err();
        assert!(matches!(&e, QmpError::Command { command, .. } if command == "input-send-event"), "{e}");
        let e = qmp.execute("no-such-command", None).await.unwrap_err();
        assert!(matches!(&e, QmpError::Command { class, .. } if class == "CommandNotFound"), "{e}");
        qmp.quit().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), qmp.closed()).await.expect("closed after quit");
        let st = q.child.wait().await.unwrap();
        assert!(st.success(), "{st}");
        assert_eq!(qmp.status().await.unwrap_err(), QmpError::Closed);
    }

    #[tokio::test]
    async fn events_arrive() {
        let mut q = start_qemu(&[]).await;
        let qmp = Qmp::connect(&q.sock, Duration::from_secs(30)).await.expect("connect");
        let mut ev = qmp.events();
        qmp.execute("stop", None).await.unwrap();
        qmp.cont().await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(30), ev.recv()).await.unwrap().unwrap();
        assert_eq!(e.name, "RESUME");
        qmp.quit().await.unwrap();
        q.child.wait().await.unwrap();
    }

    #[tokio::test]
    async fn vnc_password_and_nic_mac() {
        let mut q = start_qemu(&[
            "-vnc",
            "127.0.0.1:0,to=200,password=on",
            "-netdev",
            "user,id=user.0",
            "-device",
            "e1000,netdev=user.0,mac=52:54:00:AB:cd:01",
            "-netdev",
            "user,id=other",
            "-device",
            "virtio-net,netdev=other,id=named",
        ])
        .await;
        let qmp = Qmp::connect(&q.sock, Duration::from_secs(30)).await.expect("connect");
        qmp.change_vnc_password("s3cr3t").await.unwrap();
        assert_eq!(qmp.nic_mac("user.0").await.unwrap().as_deref(), Some("52:54:00:ab:cd:01"));
        assert!(qmp.nic_mac("other").await.unwrap().is_some(), "a device with an id (/machine/peripheral)");
        assert_eq!(qmp.nic_mac("nope").await.unwrap(), None);
        qmp.quit().await.unwrap();
        q.child.wait().await.unwrap();
        // without password=on QEMU refuses to set one
        let mut q = start_qemu(&["-vnc", "127.0.0.1:0,to=200"]).await;
        let qmp = Qmp::connect(&q.sock, Duration::from_secs(30)).await.expect("connect");
        let e = qmp.change_vnc_password("x").await.unwrap_err();
        assert!(matches!(&e, QmpError::Command { command, .. } if command == "change-vnc-password"), "{e}");
        qmp.quit().await.unwrap();
        q.child.wait().await.unwrap();
    }

    #[tokio::test]
    async fn missing_socket_is_a_connect_error() {
        let e = Qmp::connect(Path::new("/nonexistent/qmp.sock"), Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(e, QmpError::Connect { .. }), "{e}");
    }
}
