//! End-to-end tests of the provisioner through a real (local `sh`) communicator.

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use packer_sdk::communicator::Communicator;
use packer_sdk::component::Provisioner;
use packer_sdk::config::RawConfig;
use packer_sdk::CancellationToken;
use serde_json::{json, Map, Value};

use crate::provision::{Run, ShellError};
use crate::testing::{FlakyCommunicator, LocalCommunicator, RecordingUi, UiEvent};
use crate::{Config, ShellProvisioner};

fn raw(v: Value) -> RawConfig {
    match v {
        Value::Object(m) => RawConfig::Map(m),
        _ => panic!("not an object"),
    }
}

/// A config for `options`, uploading into `dir`.
fn config(dir: &Path, mut options: Value) -> Config {
    options["remote_folder"] = json!(dir.to_str().unwrap());
    Config::from_raws(&[
        raw(options),
        raw(json!({"packer_build_name": "unit", "packer_builder_type": "null", "packer_debug": false})),
    ])
    .unwrap()
}

async fn run_with(
    config: &Config,
    comm: Arc<dyn Communicator>,
    generated: Map<String, Value>,
) -> (Result<(), ShellError>, Arc<RecordingUi>) {
    let ui = Arc::new(RecordingUi::default());
    let r = Run::new(config, ui.clone(), comm, &generated, CancellationToken::new())
        .with_retry_delay(Duration::from_millis(10))
        .run()
        .await;
    (r, ui)
}

fn local(dir: &Path) -> Arc<LocalCommunicator> {
    Arc::new(LocalCommunicator::new(dir))
}

fn leftover_scripts(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("script_") || n.starts_with("varfile_"))
        .collect()
}

#[tokio::test]
async fn provisioner_trait_runs_inline_commands_and_streams_both_streams() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = ShellProvisioner::default();
    p.prepare(vec![
        raw(json!({
            "inline": ["echo hello", "echo oops >&2", "printf 'a b' > out.txt",
                       "echo \"$PACKER_BUILD_NAME/$PACKER_BUILDER_TYPE\"", "echo host={{ .Host }} id={{ build `ID` }}"],
            "remote_folder": dir.path().to_str().unwrap(),
        })),
        raw(json!({"packer_build_name": "demo", "packer_builder_type": "null"})),
        raw(json!({"Host": "Build_Host. placeholder", "ID": "Build_ID. placeholder", "PackerRunUUID": "u"})),
    ])
    .await
    .unwrap();
    let ui = Arc::new(RecordingUi::default());
    let generated: Map<String, Value> =
        json!({"Host": "10.0.0.7", "ID": "vm1", "Port": 22}).as_object().unwrap().clone();
    p.provision(ui.clone(), local(dir.path()), generated, CancellationToken::new()).await.unwrap();

    assert_eq!(ui.messages(), vec!["hello", "demo/null", "host=10.0.0.7 id=vm1"]);
    assert_eq!(ui.errors(), vec!["oops"]);
    assert!(ui.events().contains(&UiEvent::Say("Provisioning with shell script: inline commands".into())));
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "a b");
    assert!(leftover_scripts(dir.path()).is_empty(), "script not cleaned: {:?}", leftover_scripts(dir.path()));
}

#[tokio::test]
async fn environment_values_arrive_unchanged_and_env_map_wins() {
    for use_file in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let c = config(
            dir.path(),
            json!({
                "inline": ["printf '%s\\n' \"$SPACES\" \"$QUOTES\" \"$DOLLAR\" \"$DUP\" \"$FROM_MAP\" \"[$EMPTY]\" \"$PACKER_BUILD_NAME\" > env.txt"],
                "environment_vars": ["SPACES=a b  c", "QUOTES=it's \"q\"", "DOLLAR=$HOME ${X} `id` \\n", "DUP=list", "EMPTY="],
                "env": {"DUP": "map", "FROM_MAP": "x=y"},
                "use_env_var_file": use_file,
            }),
        );
        let (r, ui) = run_with(&c, local(dir.path()), Map::new()).await;
        r.unwrap_or_else(|e| panic!("use_env_var_file={use_file}: {e}; ui: {:?}", ui.events()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("env.txt")).unwrap(),
            "a b  c\nit's \"q\"\n$HOME ${X} `id` \\n\nmap\nx=y\n[]\nunit\n",
            "use_env_var_file={use_file}"
        );
        assert!(leftover_scripts(dir.path()).is_empty(), "{:?}", leftover_scripts(dir.path()));
    }
}

#[tokio::test]
async fn failing_inline_command_stops_there_and_names_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), json!({"inline": ["echo one", "exit 7", "echo two"]}));
    let (r, ui) = run_with(&c, local(dir.path()), Map::new()).await;
    let err = r.unwrap_err().to_string();
    assert_eq!(err, "Script exited with non-zero exit status: 7. Allowed exit codes are: [0]");
    assert_eq!(ui.messages(), vec!["one"]);
    assert!(leftover_scripts(dir.path()).is_empty(), "failed script left behind");

    // The default shebang is `/bin/sh -e`: a failing command stops the script.
    let c = config(dir.path(), json!({"inline": ["echo one", "false", "echo two"]}));
    let (r, ui) = run_with(&c, local(dir.path()), Map::new()).await;
    assert!(r.unwrap_err().to_string().contains("exit status: 1."));
    assert_eq!(ui.messages(), vec!["one"]);

    // Without -e, the script goes on.
    let c = config(dir.path(), json!({"inline": ["echo one", "false", "echo two"], "inline_shebang": "/bin/sh"}));
    let (r, ui) = run_with(&c, local(dir.path()), Map::new()).await;
    r.unwrap();
    assert_eq!(ui.messages(), vec!["one", "two"]);
}

#[tokio::test]
async fn existing_shebang_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(
        dir.path(),
        json!({"inline": ["#!/bin/sh", "false", "echo still-here"], "skip_clean": true, "remote_file": "s.sh"}),
    );
    let (r, ui) = run_with(&c, local(dir.path()), Map::new()).await;
    r.unwrap();
    assert_eq!(ui.messages(), vec!["still-here"]);
    assert_eq!(std::fs::read_to_string(dir.path().join("s.sh")).unwrap(), "#!/bin/sh\nfalse\necho still-here\n");
}

#[tokio::test]
async fn valid_exit_codes_accept_listed_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("three.sh");
    std::fs::write(&script, "#!/bin/sh\necho before\nexit 3\n").unwrap();
    let c = config(dir.path(), json!({"script": script.to_str().unwrap(), "valid_exit_codes": [0, 3]}));
    let (r, ui) = run_with(&c, local(dir.path()), Map::new()).await;
    r.unwrap();
    assert_eq!(ui.messages(), vec!["before"]);

    let c = config(dir.path(), json!({"script": script.to_str().unwrap(), "valid_exit_codes": [0, 4]}));
    let (r, _) = run_with(&c, local(dir.path()), Map::new()).await;
    assert_eq!(
        r.unwrap_err().to_string(),
        "Script exited with non-zero exit status: 3. Allowed exit codes are: [0, 4]"
    );
}

#[tokio::test]
async fn scripts_run_in_order_with_crlf_converted_unless_binary() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.sh");
    let b = dir.path().join("b.sh");
    std::fs::write(&a, "#!/bin/sh\r\necho first\r\nprintf x > crlf.txt\r\n").unwrap();
    std::fs::write(&b, "#!/bin/sh\necho second\n").unwrap();
    let c = config(dir.path(), json!({"scripts": [a.to_str().unwrap(), b.to_str().unwrap()]}));
    let (r, ui) = run_with(&c, local(dir.path()), Map::new()).await;
    r.unwrap();
    assert_eq!(ui.messages(), vec!["first", "second"]);
    assert!(dir.path().join("crlf.txt").exists(), "CRLF was not converted");
    let says: Vec<_> = ui.events().into_iter().filter(|e| matches!(e, UiEvent::Say(_))).collect();
    assert_eq!(
        says,
        vec![
            UiEvent::Say(format!("Provisioning with shell script: {}", a.display())),
            UiEvent::Say(format!("Provisioning with shell script: {}", b.display())),
        ]
    );

    // binary = true uploads the bytes unchanged (kept with skip_clean).
    let c = config(
        dir.path(),
        json!({"script": a.to_str().unwrap(), "binary": true, "skip_clean": true, "remote_file": "bin.sh",
               "execute_command": "true"}),
    );
    let (r, _) = run_with(&c, local(dir.path()), Map::new()).await;
    r.unwrap();
    assert_eq!(std::fs::read(dir.path().join("bin.sh")).unwrap(), std::fs::read(&a).unwrap());
}

#[tokio::test]
async fn execute_command_is_rendered_with_path_vars_and_build_data() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(
        dir.path(),
        json!({"inline": ["echo \"in script: $GREETING\""], "environment_vars": ["GREETING=hi there"],
               "remote_file": "x.sh",
               "execute_command": "echo 'path={{ .Path }} host={{ .Host }}'; env {{ .Vars }} /bin/sh {{.Path}}"}),
    );
    let generated = json!({"Host": "h1"}).as_object().unwrap().clone();
    let comm = local(dir.path());
    let (r, ui) = run_with(&c, comm.clone(), generated).await;
    r.unwrap();
    let path = dir.path().join("x.sh");
    assert_eq!(ui.messages(), vec![format!("path={} host=h1", path.display()), "in script: hi there".to_string()]);
    let commands = comm.commands.lock().unwrap().clone();
    let expected = format!(
        "echo 'path={0} host=h1'; env GREETING='hi there' PACKER_BUILDER_TYPE='null' PACKER_BUILD_NAME='unit'  /bin/sh {0}",
        path.display()
    );
    assert!(commands.contains(&expected), "{commands:#?}");

    // A build variable the builder does not provide is an error naming what exists.
    let c = config(dir.path(), json!({"inline": ["echo {{ .SSHPublicKey }}"]}));
    let (r, _) = run_with(&c, local(dir.path()), json!({"Host": "h"}).as_object().unwrap().clone()).await;
    let err = r.unwrap_err().to_string();
    assert!(err.contains("cannot render inline") && err.contains("available here: .Host"), "{err}");
}

#[tokio::test]
async fn skip_clean_keeps_the_script() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), json!({"inline": ["echo hi"], "skip_clean": true}));
    let (r, _) = run_with(&c, local(dir.path()), Map::new()).await;
    r.unwrap();
    let left = leftover_scripts(dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    let contents = std::fs::read_to_string(dir.path().join(&left[0])).unwrap();
    assert_eq!(contents, "#!/bin/sh -e\necho hi\n");
}

#[tokio::test]
async fn upload_is_retried_while_the_machine_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), json!({"inline": ["echo made-it"]}));
    let comm = Arc::new(FlakyCommunicator {
        inner: LocalCommunicator::new(dir.path()),
        fail_uploads: AtomicUsize::new(2),
        disconnect_scripts: None,
    });
    let (r, ui) = run_with(&c, comm, Map::new()).await;
    r.unwrap();
    assert_eq!(ui.messages(), vec!["made-it"]);

    // With no time to retry, the first failure is final.
    let c = config(dir.path(), json!({"inline": ["echo no"], "start_retry_timeout": "0s"}));
    let comm = Arc::new(FlakyCommunicator {
        inner: LocalCommunicator::new(dir.path()),
        fail_uploads: AtomicUsize::new(1),
        disconnect_scripts: None,
    });
    let (r, ui) = run_with(&c, comm, Map::new()).await;
    let err = r.unwrap_err().to_string();
    assert!(err.contains("connection refused") && err.contains("start_retry_timeout"), "{err}");
    assert!(ui.messages().is_empty());
}

#[tokio::test]
async fn disconnect_fails_unless_expected() {
    let dir = tempfile::tempdir().unwrap();
    for (expect, ok) in [(false, false), (true, true)] {
        let c = config(dir.path(), json!({"inline": ["echo rebooting"], "expect_disconnect": expect}));
        let comm = Arc::new(FlakyCommunicator {
            inner: LocalCommunicator::new(dir.path()),
            fail_uploads: AtomicUsize::new(0),
            disconnect_scripts: Some("PACKER_BUILD_NAME=".into()),
        });
        let (r, ui) = run_with(&c, comm, Map::new()).await;
        assert_eq!(r.is_ok(), ok, "expect_disconnect={expect}: {r:?}");
        if !ok {
            assert!(r.unwrap_err().to_string().contains("Script disconnected unexpectedly"));
        }
        assert_eq!(ui.messages(), vec!["rebooting"]);
    }
}

fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie (state Z) has stopped running.
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn cancellation_stops_the_remote_command() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), json!({"inline": ["echo $$ > pid.txt", "echo started", "sleep 600", "touch late"]}));
    let ui = Arc::new(RecordingUi::default());
    let cancel = CancellationToken::new();
    let generated = Map::new();
    let comm: Arc<dyn Communicator> = local(dir.path());
    let run = Run::new(&c, ui.clone(), comm, &generated, cancel.clone());
    let canceller = async {
        ui.wait_for(|e| *e == UiEvent::Message("started".into())).await;
        cancel.cancel();
    };
    // The guard only keeps a broken implementation from hanging the test suite.
    let (result, ()) = tokio::time::timeout(Duration::from_secs(120), async { tokio::join!(run.run(), canceller) })
        .await
        .expect("provisioning did not return after cancellation");
    assert!(matches!(result, Err(ShellError::Cancelled)), "{result:?}");
    let pid: i32 = std::fs::read_to_string(dir.path().join("pid.txt")).unwrap().trim().parse().unwrap();
    let mut gone = false;
    for _ in 0..600 {
        if process_gone(pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the script (pid {pid}) is still running after cancellation");
    assert!(!dir.path().join("late").exists());
}

#[tokio::test]
async fn pause_after_is_cancellable() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), json!({"inline": ["true"], "pause_after": "1h"}));
    let ui = Arc::new(RecordingUi::default());
    let cancel = CancellationToken::new();
    let generated = Map::new();
    let run = Run::new(&c, ui.clone(), local(dir.path()), &generated, cancel.clone());
    let canceller = async {
        ui.wait_for(|e| matches!(e, UiEvent::Say(s) if s.starts_with("Pausing"))).await;
        cancel.cancel();
    };
    let (result, ()) = tokio::time::timeout(Duration::from_secs(120), async { tokio::join!(run.run(), canceller) })
        .await
        .expect("pause_after was not cancelled");
    assert!(matches!(result, Err(ShellError::Cancelled)), "{result:?}");
}

#[tokio::test]
async fn provision_before_prepare_is_an_error() {
    let p = ShellProvisioner::default();
    let dir = tempfile::tempdir().unwrap();
    let err = p
        .provision(Arc::new(RecordingUi::default()), local(dir.path()), Map::new(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("before its configuration was prepared"));
}
