//! Running the configured scripts through a [`Communicator`] (Packer's shell provisioner
//! algorithm, see `qemu-builder-reference.md` §4.2).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use packer_sdk::communicator::{CommError, CommandHandle, Communicator, FileInfo, RemoteCommand};
use packer_sdk::ui::Ui;
use packer_sdk::CancellationToken;
use rand::Rng;
use tokio::time::Instant;

use crate::config::Config;
use crate::env::{env_file_contents, flatten_vars, single_quote};
use crate::output::{forward_lines, line_writers};
use crate::template::{Template, TemplateData, TemplateError};

/// The exit status Packer's communicators report when the connection ended without an exit
/// status (`packersdk.CmdDisconnect`).
pub const CMD_DISCONNECT: i32 = 2_300_218;

/// Pause between two attempts of a retried operation (Packer uses 2 s).
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// `provision` was called without a successful `prepare`.
    #[error("the shell provisioner was run before its configuration was prepared; this is a bug in Packer or qemu-rs")]
    NotPrepared,
    /// The build was cancelled (`Provisioner.Cancel`, a `timeout`, or Ctrl-C).
    #[error("provisioning was cancelled")]
    Cancelled,
    /// A template option could not be rendered with the build's data.
    #[error("cannot render {option}: {source}")]
    Template {
        /// The option concerned.
        option: &'static str,
        /// What went wrong.
        source: TemplateError,
    },
    /// A local script file could not be read.
    #[error("cannot read script file {path}: {source}; check that it still exists and is readable")]
    ReadScript {
        /// The script.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The communicator kept failing until `start_retry_timeout` elapsed.
    #[error(
        "{what} failed: {source} (retried for {timeout:?}; raise start_retry_timeout if the machine needs longer \
         to become reachable)"
    )]
    Communicator {
        /// What was being done.
        what: String,
        /// The last error.
        source: CommError,
        /// How long it was retried.
        timeout: Duration,
    },
    /// The connection was lost while a script ran, and that was not expected.
    #[error(
        "Script disconnected unexpectedly. If you expected your script to disconnect, i.e. from a restart, \
         set expect_disconnect = true (or add 2300218 to valid_exit_codes)"
    )]
    Disconnected,
    /// A script ended with a status not in `valid_exit_codes`.
    #[error("Script exited with non-zero exit status: {status}. Allowed exit codes are: {allowed:?}")]
    ExitStatus {
        /// The script's exit status.
        status: i32,
        /// `valid_exit_codes`.
        allowed: Vec<i64>,
    },
    /// Waiting for a script failed for another reason than a lost connection.
    #[error("waiting for the script to finish failed: {0}")]
    Wait(CommError),
    /// Removing an uploaded file failed.
    #[error("Error removing temporary file {path}: {reason}; set skip_clean = true to leave it on the machine")]
    Cleanup {
        /// The remote file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One script to upload and run.
struct Script {
    /// What the UI calls it.
    name: String,
    /// Its contents, ready to upload.
    contents: Vec<u8>,
    /// Permission bits to upload it with.
    mode: u32,
}

/// One provisioning run.
pub struct Run<'a> {
    config: &'a Config,
    ui: Arc<dyn Ui>,
    comm: Arc<dyn Communicator>,
    data: TemplateData,
    generated: &'a serde_json::Map<String, serde_json::Value>,
    cancel: CancellationToken,
    retry_delay: Duration,
}

impl<'a> Run<'a> {
    /// Prepares a run of `config` through `comm`.
    pub fn new(
        config: &'a Config,
        ui: Arc<dyn Ui>,
        comm: Arc<dyn Communicator>,
        generated: &'a serde_json::Map<String, serde_json::Value>,
        cancel: CancellationToken,
    ) -> Self {
        let mut data = TemplateData::from_generated(generated);
        data.user = config.user_variables.clone();
        Run { config, ui, comm, data, generated, cancel, retry_delay: RETRY_DELAY }
    }

    /// Changes the pause between retries (tests).
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Runs every script, in order.
    pub async fn run(&self) -> Result<(), ShellError> {
        let scripts = self.scripts().await?;
        let vars = self.environment()?;
        let flat_vars = flatten_vars(&vars);

        let env_var_file = if self.config.use_env_var_file {
            let path = format!(
                "{}/varfile_{}.sh",
                self.config.remote_folder.trim_end_matches('/'),
                rand::thread_rng().gen_range(0..9999)
            );
            self.upload_env_file(&path, env_file_contents(&vars).into_bytes()).await?;
            Some(path)
        } else {
            None
        };

        let execute = Template::parse(&self.config.execute_command)
            .map_err(|source| ShellError::Template { option: "execute_command", source })?;
        let mut command_data = self.data.clone();
        command_data.data.insert("Path".into(), self.config.remote_path.clone());
        command_data.data.insert("Vars".into(), flat_vars);
        command_data.data.insert("EnvVarFile".into(), env_var_file.clone().unwrap_or_default());
        let command = execute
            .render(&command_data)
            .map_err(|source| ShellError::Template { option: "execute_command", source })?;

        for script in &scripts {
            self.ui.say(&format!("Provisioning with shell script: {}", script.name)).await;
            self.run_script(script, &command).await?;
            if !self.config.skip_clean {
                self.remove(&self.config.remote_path).await?;
            }
        }
        if let (Some(path), false) = (&env_var_file, self.config.skip_clean) {
            self.remove(path).await?;
        }

        if !self.config.pause_after.is_zero() {
            self.ui.say(&format!("Pausing {:?} after this provisioner...", self.config.pause_after)).await;
            tokio::select! {
                _ = tokio::time::sleep(self.config.pause_after) => {}
                _ = self.cancel.cancelled() => return Err(ShellError::Cancelled),
            }
        }
        Ok(())
    }

    /// The inline script and the script files, ready to upload.
    async fn scripts(&self) -> Result<Vec<Script>, ShellError> {
        let mut scripts = Vec::new();
        if !self.config.inline.is_empty() {
            let mut text = String::new();
            if !self.config.inline[0].starts_with("#!") {
                text.push_str(&format!("#!{}\n", self.config.inline_shebang));
            }
            for line in &self.config.inline {
                let t = Template::parse(line).map_err(|source| ShellError::Template { option: "inline", source })?;
                text.push_str(
                    &t.render(&self.data).map_err(|source| ShellError::Template { option: "inline", source })?,
                );
                text.push('\n');
            }
            scripts.push(Script { name: "inline commands".into(), contents: text.into_bytes(), mode: 0o755 });
        }
        for path in &self.config.scripts {
            let read = |source| ShellError::ReadScript { path: path.clone(), source };
            let contents = tokio::fs::read(path).await.map_err(read)?;
            let mode = {
                use std::os::unix::fs::PermissionsExt;
                tokio::fs::metadata(path).await.map_err(read)?.permissions().mode() & 0o7777
            };
            let contents = if self.config.binary { contents } else { crlf_to_lf(&contents) };
            scripts.push(Script { name: path.display().to_string(), contents, mode });
        }
        Ok(scripts)
    }

    /// `environment_vars`, then `env` (wins), then the variables Packer always sets.
    fn environment(&self) -> Result<BTreeMap<String, String>, ShellError> {
        let mut vars = BTreeMap::new();
        let render = |option: &'static str, text: &str| -> Result<String, ShellError> {
            Template::parse(text)
                .and_then(|t| t.render(&self.data))
                .map_err(|source| ShellError::Template { option, source })
        };
        for (k, v) in &self.config.environment_vars {
            vars.insert(k.clone(), render("environment_vars", v)?);
        }
        for (k, v) in &self.config.env {
            vars.insert(k.clone(), render("env", v)?);
        }
        vars.insert("PACKER_BUILD_NAME".into(), self.config.packer_build_name.clone());
        vars.insert("PACKER_BUILDER_TYPE".into(), self.config.packer_builder_type.clone());
        for (key, var) in [
            ("PackerHTTPAddr", "PACKER_HTTP_ADDR"),
            ("PackerHTTPIP", "PACKER_HTTP_IP"),
            ("PackerHTTPPort", "PACKER_HTTP_PORT"),
        ] {
            if let Some(v) = self.generated.get(key) {
                let v = crate::template::value_to_string(v);
                if !v.is_empty() && !v.starts_with("ERR_") {
                    vars.insert(var.into(), v);
                }
            }
        }
        Ok(vars)
    }

    async fn upload_env_file(&self, path: &str, contents: Vec<u8>) -> Result<(), ShellError> {
        let info = FileInfo { name: basename(path), size: contents.len() as i64, mode: 0o600 };
        self.retry(&format!("uploading the environment file to {path}"), || {
            let contents = contents.clone();
            let info = info.clone();
            async move {
                self.comm.upload(path, Box::new(std::io::Cursor::new(contents)), Some(info)).await?;
                self.run_quiet(&format!("chmod 0600 {}", single_quote(path))).await?;
                Ok(())
            }
        })
        .await
    }

    /// Uploads and runs one script, streaming its output, and judges its exit status.
    async fn run_script(&self, script: &Script, command: &str) -> Result<(), ShellError> {
        let path = self.config.remote_path.as_str();
        let info = FileInfo { name: basename(path), size: script.contents.len() as i64, mode: script.mode };
        // Upload and start form one retried unit, so that a machine rebooting between the two
        // gets the script again.
        let (handle, lines) = self
            .retry(&format!("uploading {} to {path} and starting it", script.name), || {
                let contents = script.contents.clone();
                let info = info.clone();
                async move {
                    self.comm.upload(path, Box::new(std::io::Cursor::new(contents)), Some(info)).await?;
                    // Its exit status is ignored: execute_command may not need the execute bit.
                    self.run_quiet(&format!("chmod 0755 {}", single_quote(path))).await?;
                    let (out, err, lines) = line_writers();
                    let cmd = RemoteCommand {
                        command: command.to_string(),
                        stdin: None,
                        stdout: Some(Box::new(out)),
                        stderr: Some(Box::new(err)),
                    };
                    let handle = self.comm.start(cmd).await?;
                    Ok((handle, lines))
                }
            })
            .await?;

        let forwarder = tokio::spawn(forward_lines(lines, self.ui.clone()));
        // Dropping the handle on cancellation tells the communicator to stop the command.
        let status = tokio::select! {
            status = handle.wait() => status,
            _ = self.cancel.cancelled() => {
                forwarder.abort();
                return Err(ShellError::Cancelled);
            }
        };
        // Show every line of output before judging the status.
        tokio::select! {
            _ = forwarder => {}
            _ = self.cancel.cancelled() => return Err(ShellError::Cancelled),
        }

        let disconnect_ok =
            self.config.expect_disconnect || self.config.valid_exit_codes.contains(&(CMD_DISCONNECT as i64));
        match status {
            Ok(CMD_DISCONNECT) | Err(CommError::Disconnected(_)) => {
                if !disconnect_ok {
                    return Err(ShellError::Disconnected);
                }
                tracing::info!("script {} disconnected, as expected", script.name);
                Ok(())
            }
            Err(e) => Err(ShellError::Wait(e)),
            Ok(status) if self.config.valid_exit_codes.contains(&(status as i64)) => Ok(()),
            Ok(status) => {
                if !self.config.skip_clean {
                    // Best effort, so a failed build does not leave the script behind.
                    let _ = self.run_quiet(&format!("rm -f {}", single_quote(path))).await;
                }
                Err(ShellError::ExitStatus { status, allowed: self.config.valid_exit_codes.clone() })
            }
        }
    }

    /// `rm -f path`, retried while the connection is down.
    async fn remove(&self, path: &str) -> Result<(), ShellError> {
        let status = self
            .retry(&format!("removing {path}"), || async move {
                match self.run_quiet(&format!("rm -f {}", single_quote(path))).await? {
                    CMD_DISCONNECT => Err(CommError::Disconnected("the connection was lost during rm".into())),
                    status => Ok(status),
                }
            })
            .await?;
        if status != 0 {
            return Err(ShellError::Cleanup {
                path: path.to_string(),
                reason: format!("rm -f exited with status {status}"),
            });
        }
        Ok(())
    }

    /// Runs `command` with its output discarded; returns its exit status.
    async fn run_quiet(&self, command: &str) -> Result<i32, CommError> {
        let handle: CommandHandle = self.comm.start(RemoteCommand::new(command)).await?;
        handle.wait().await
    }

    /// Runs `attempt` until it succeeds, a non-retryable error occurs, `start_retry_timeout`
    /// elapses, or the run is cancelled.
    async fn retry<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, ShellError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CommError>>,
    {
        let timeout = self.config.start_retry_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let result = tokio::select! {
                r = attempt() => r,
                _ = self.cancel.cancelled() => return Err(ShellError::Cancelled),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e @ CommError::Unsupported(_)) => {
                    return Err(ShellError::Communicator { what: what.to_string(), source: e, timeout: Duration::ZERO })
                }
                Err(e) if Instant::now() + self.retry_delay > deadline => {
                    return Err(ShellError::Communicator { what: what.to_string(), source: e, timeout })
                }
                Err(e) => {
                    tracing::warn!("{what} failed, retrying: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(self.retry_delay) => {}
                        _ = self.cancel.cancelled() => return Err(ShellError::Cancelled),
                    }
                }
            }
        }
    }
}

/// Converts CRLF line endings to LF (what Packer's `UnixReader` does to non-`binary` scripts).
pub fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

fn basename(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_conversion() {
        assert_eq!(crlf_to_lf(b"a\r\nb\r\n"), b"a\nb\n");
        assert_eq!(crlf_to_lf(b"a\rb\r\r\n"), b"a\rb\r\n");
        assert_eq!(crlf_to_lf(b""), b"");
    }

    #[test]
    fn basenames() {
        assert_eq!(basename("/tmp/x.sh"), "x.sh");
        assert_eq!(basename("x.sh"), "x.sh");
    }
}
