//! The provisioner through the SDK's real SSH communicator, against a real OpenSSH `sshd` on a
//! free loopback port (the SDK's test helper).

#[path = "../../sdk/tests/common/sshd.rs"]
mod sshd;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use packer_sdk::communicator::ssh::{SshAuth, SshCommunicator, SshConfig};
use packer_sdk::communicator::Communicator;
use packer_sdk::component::Provisioner;
use packer_sdk::config::RawConfig;
use packer_sdk::ui::{ProgressBar, Ui};
use packer_sdk::CancellationToken;
use provisioner_shell::ShellProvisioner;
use serde_json::json;

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

struct NoBar;

#[async_trait]
impl ProgressBar for NoBar {
    async fn add(&self, _n: i64) {}
    async fn close(&self) {}
}

#[async_trait]
impl Ui for Recorder {
    async fn say(&self, m: &str) {
        self.0.lock().unwrap().push(format!("say:{m}"));
    }
    async fn message(&self, m: &str) {
        self.0.lock().unwrap().push(format!("out:{m}"));
    }
    async fn error(&self, m: &str) {
        self.0.lock().unwrap().push(format!("err:{m}"));
    }
    async fn machine(&self, _c: &str, _a: &[String]) {}
    async fn track_progress(&self, _s: &str, _c: i64, _t: i64) -> Box<dyn ProgressBar> {
        Box::new(NoBar)
    }
}

async fn connect(sshd: &sshd::Sshd) -> Arc<dyn Communicator> {
    let config = SshConfig::new("127.0.0.1", sshd.port(), sshd.user(), SshAuth::PrivateKey(sshd.client_private_key()));
    Arc::new(SshCommunicator::connect(&config).await.unwrap_or_else(|e| panic!("ssh: {e}\n{}", sshd.log())))
}

async fn provision(options: serde_json::Value, comm: Arc<dyn Communicator>) -> (Result<(), String>, Vec<String>) {
    let mut p = ShellProvisioner::default();
    let raws = vec![
        RawConfig::Map(options.as_object().unwrap().clone()),
        RawConfig::Map(
            json!({"packer_build_name": "ssh-test", "packer_builder_type": "null"}).as_object().unwrap().clone(),
        ),
    ];
    p.prepare(raws).await.unwrap_or_else(|e| panic!("prepare: {e}"));
    let ui = Arc::new(Recorder::default());
    let generated = json!({"Host": "127.0.0.1"}).as_object().unwrap().clone();
    let r = p.provision(ui.clone(), comm, generated, CancellationToken::new()).await.map_err(|e| e.to_string());
    let events = ui.0.lock().unwrap().clone();
    (r, events)
}

#[tokio::test]
async fn inline_scripts_env_and_exit_codes_over_ssh() {
    let sshd = sshd::Sshd::start();
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display().to_string();
    let comm = connect(&sshd).await;

    let (r, events) = provision(
        json!({
            "remote_folder": w,
            "environment_vars": ["V=it's a \"test\" $HOME"],
            "env": {"M": "from map"},
            "inline": ["echo out-line host={{ .Host }}", "echo err-line >&2",
                       format!("printf '%s|%s|%s' \"$V\" \"$M\" \"$PACKER_BUILD_NAME\" > {w}/env.txt")],
        }),
        comm.clone(),
    )
    .await;
    r.unwrap_or_else(|e| panic!("{e}\nui: {events:?}\nsshd: {}", sshd.log()));
    assert!(events.contains(&"out:out-line host=127.0.0.1".to_string()), "{events:?}");
    assert!(events.contains(&"err:err-line".to_string()), "{events:?}");
    assert_eq!(
        std::fs::read_to_string(work.path().join("env.txt")).unwrap(),
        "it's a \"test\" $HOME|from map|ssh-test"
    );
    let leftover: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("script_"))
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");

    let (r, events) =
        provision(json!({"remote_folder": w, "inline": ["echo before", "exit 9", "echo after"]}), comm.clone()).await;
    assert_eq!(r.unwrap_err(), "Script exited with non-zero exit status: 9. Allowed exit codes are: [0]");
    assert!(events.contains(&"out:before".to_string()) && !events.contains(&"out:after".to_string()), "{events:?}");

    let (r, _) =
        provision(json!({"remote_folder": w, "inline": ["exit 9"], "valid_exit_codes": [0, 9]}), comm.clone()).await;
    r.unwrap();
}
