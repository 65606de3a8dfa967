//! Step: wait until an authenticated SSH session works — failing at once when QEMU exits or the
//! guest kernel panics, and showing the serial console's last lines on every failure.
//!
//! Packer's loop tries every 5 s; this one starts an attempt every 250 ms, and "ready" means an
//! authenticated session, never a TCP accept on QEMU's port forward. With user-mode networking
//! QEMU accepts the TCP connection at once and only then sends a SYN to the guest; while the
//! guest's network is down that SYN is lost and QEMU retries it seconds later, so an attempt
//! started before sshd listens can wait up to its 5 s timeout for a banner. Each attempt therefore
//! has two phases ([`SshCommunicator::reach`]: wait for the server's first byte; then
//! [`Reached::login`]): unanswered attempts overlap, a fresh one every 250 ms (at most
//! [`MAX_PENDING`] at once: with every slot taken, the oldest is dropped for the fresh one), and
//! the first one the guest answers logs in alone while the others are dropped. Once the guest is
//! known to answer (an attempt got bytes or was closed by it), an attempt started after that which
//! still gets no banner (an earlier one may have met the network down), or a login that fails
//! after the banner, means its sshd is there but slow (an emulated guest on a busy host): from
//! then on one attempt runs at a time, with more patience ([`SLOW_BANNER_TIMEOUT`],
//! [`LOGIN_TIMEOUT`]) — overlapping attempts would each cost the guest an sshd process and, past
//! sshd's `MaxStartups`, be refused, so that none ever finished. Through QEMU's user network,
//! QEMU's own side of the forward tells an attempt the guest has accepted (its sshd will answer)
//! from one whose SYN waits for the guest's network ([`ForwardWatch`]): while there is an accepted
//! one, it is never dropped and a fresh attempt starts beside it only every [`HOLD_PATIENCE`].
//! Measured on the test guest from sshd up (`testguest: READY`) to connected: 1.7 s
//! (ISO) and 3.5 s (cloud image) with at most 4 attempts in flight, because the 4 attempts made
//! before the network came up blocked fresh ones for up to 5 s; 0.16–0.19 s (ISO) and 0.47–0.76 s
//! (cloud, busy host) now (with RDRAND in the guest CPU, see `driver::argv`: without it the
//! guest's sshd waits about 1 s for the kernel's random pool before it sends its banner).
//! Through a bastion host or a SOCKS5 proxy, one attempt runs at a time, every
//! [`ROUTED_POLL_INTERVAL`].
//!
//! With `pause_before_connecting`, the first working connection is closed, the step waits, then
//! connects again (Packer's behaviour). The port forwards (`ssh_local_tunnels`,
//! `ssh_remote_tunnels`) are opened on the connection that is kept.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use packer_sdk::communicator::ssh::{
    Bastion, FileTransfer, Reached, ReconnectingSsh, Route, Socks5Proxy, SshAuth, SshCommunicator, SshConfig, SshError,
    Tunnel, TunnelDirection,
};
use packer_sdk::step::{Step, StepContext, StepError};
use tokio::task::{AbortHandle, JoinSet};

use crate::config::{CommunicatorType, Config, FileTransferMethod};
use crate::driver::qemu::QemuProcess;
use crate::state::{BuildState, SshKey};

/// Time between the starts of two connection attempts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Most unanswered connection attempts at once: each ends within the 5 s connect timeout and a
/// new one starts every [`POLL_INTERVAL`] while fewer are pending. Below OpenSSH's `MaxStartups`
/// (10 unauthenticated connections before it starts dropping new ones), so that when the guest's
/// sshd comes up our own waiting attempts never make it refuse one.
pub const MAX_PENDING: usize = 8;
const _: () = assert!(MAX_PENDING < 10, "below OpenSSH's MaxStartups start value");
/// Time the attempt that got a banner has for key exchange and authentication: the guest's sshd
/// is there, and on an emulated guest on a busy host its key exchange can take many seconds.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// After a login that got a banner but failed (the guest's sshd is slow, or refused the connection
/// with "Exceeded MaxStartups"), attempts run one at a time, each waiting this long for a banner:
/// overlapping attempts would each cost the slow guest an sshd process and keep it from finishing any.
pub const SLOW_BANNER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time between attempts through a bastion host or a SOCKS5 proxy (one at a time).
pub const ROUTED_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Pause after a refused authentication before the next attempt (the guest may still be writing
/// its keys; these failures count against `ssh_handshake_attempts`).
pub const AUTH_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// While the guest holds an accepted attempt, one fresh attempt starts beside it this often
/// ([`ForwardWatch`]): a slow sshd gets one more connection every few seconds instead of four a
/// second, and a guest that rebooted after accepting one is tried again soon.
pub const HOLD_PATIENCE: Duration = Duration::from_secs(5);
/// Longest wait for QEMU's answer about the port forward ([`ForwardWatch`]); without one, the
/// attempts go on as if the guest held none.
pub const FORWARD_QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Lines of the serial console shown with an error.
pub const SERIAL_TAIL_LINES: usize = 20;
/// Serial-console texts that mean the guest kernel died.
const PANIC_MARKERS: &[&str] = &["Kernel panic - not syncing", "end Kernel panic"];

/// Connects the SSH communicator; sets `comm`.
pub struct WaitForSsh<'a> {
    config: &'a Config,
}

impl<'a> WaitForSsh<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        WaitForSsh { config }
    }
}

/// The error text for a failure, with the serial console's tail.
pub fn with_serial_tail(message: &str, qemu: &QemuProcess) -> String {
    let tail = qemu.serial_tail(SERIAL_TAIL_LINES);
    if tail.is_empty() {
        return format!("{message}\n(the serial console {} is empty)", qemu.serial_log().display());
    }
    format!(
        "{message}\nLast {} lines of the serial console ({}):\n    {}",
        tail.len(),
        qemu.serial_log().display(),
        tail.join("\n    ")
    )
}

fn panicked(qemu: &QemuProcess) -> bool {
    qemu.serial_tail(200).iter().any(|l| PANIC_MARKERS.iter().any(|m| l.contains(m)))
}

/// The SSH settings of `config` for a guest reachable at 127.0.0.1:`port`, logging in with `key`
/// (the `ssh_private_key_file` or the temporary key) and, when `ssh_agent_auth` /
/// `ssh_bastion_agent_auth` is set or agent forwarding is on, the SSH agent at `agent_socket`
/// (`SSH_AUTH_SOCK`).
///
/// Credentials are tried in Packer's order: agent keys, the private key (with its
/// `ssh_certificate_file`), then `ssh_password` (password, then keyboard-interactive).
pub fn ssh_config(
    c: &Config,
    host_port: u16,
    key: Option<&SshKey>,
    agent_socket: Option<&Path>,
) -> Result<SshConfig, String> {
    let need_agent = |option: &str| {
        agent_socket.map(Path::to_path_buf).ok_or_else(|| {
            format!(
                "{option} is set, but SSH_AUTH_SOCK is not: start an ssh-agent and add the key before running packer \
                 (eval \"$(ssh-agent)\"; ssh-add KEY)"
            )
        })
    };
    let mut auth = Vec::new();
    if c.ssh_agent_auth == Some(true) {
        auth.push(SshAuth::Agent(need_agent("ssh_agent_auth")?));
    }
    if let Some(k) = key {
        auth.push(key_auth(
            &k.private_key,
            c.ssh_certificate_file.as_deref().filter(|_| !k.temporary),
            "ssh_certificate_file",
        )?);
    }
    if !c.ssh_password.expose().is_empty() {
        auth.push(SshAuth::Password(c.ssh_password.expose().to_string()));
    }
    let host = if c.ssh_host.is_empty() { "127.0.0.1".to_string() } else { c.ssh_host.clone() };
    let mut s = SshConfig::new(host, host_port, c.ssh_username.clone(), SshAuth::Password(String::new()));
    s.auth = auth; // the whole list replaces the constructor's single credential
    s.pty = c.ssh_pty;
    s.handshake_attempts = c.ssh_handshake_attempts;
    s.keepalive_interval = c.ssh_keep_alive_interval.to_std();
    s.read_write_timeout = Some(c.ssh_read_write_timeout.to_std()).filter(|d| !d.is_zero());
    s.file_transfer = match c.ssh_file_transfer_method {
        FileTransferMethod::Scp => FileTransfer::Scp,
        FileTransferMethod::Sftp => FileTransfer::Sftp,
    };
    s.connect_timeout = Duration::from_secs(5);
    s.ciphers = c.ssh_ciphers.clone().unwrap_or_default();
    s.kex_algorithms = c.ssh_key_exchange_algorithms.clone().unwrap_or_default();
    // Packer forwards the agent whenever one is reachable, unless disabled
    if c.ssh_disable_agent_forwarding != Some(true) {
        s.agent_forwarding = agent_socket.map(Path::to_path_buf);
    }
    for (list, direction) in
        [(&c.ssh_local_tunnels, TunnelDirection::Local), (&c.ssh_remote_tunnels, TunnelDirection::Remote)]
    {
        for spec in list.iter().flatten() {
            s.tunnels.push(Tunnel::parse(spec, direction)?);
        }
    }
    if let Some(host) = c.ssh_bastion_host.as_deref().filter(|h| !h.is_empty()) {
        // Packer's order for the bastion: interactive, password, private key, agent
        let mut bauth = Vec::new();
        if c.ssh_bastion_interactive == Some(true) {
            bauth.push(SshAuth::Interactive);
        }
        if let Some(p) = c.ssh_bastion_password.as_ref().filter(|p| !p.is_empty()) {
            bauth.push(SshAuth::Password(p.expose().to_string()));
        }
        if let Some(path) = c.ssh_bastion_private_key_file.as_deref().filter(|p| !p.is_empty()) {
            let text = read(path, "ssh_bastion_private_key_file")?;
            bauth.push(key_auth(&text, c.ssh_bastion_certificate_file.as_deref(), "ssh_bastion_certificate_file")?);
        }
        if c.ssh_bastion_agent_auth == Some(true) {
            bauth.push(SshAuth::Agent(need_agent("ssh_bastion_agent_auth")?));
        }
        s.route = Route::Bastion(Box::new(Bastion {
            host: host.to_string(),
            port: c.ssh_bastion_port.filter(|p| *p != 0).unwrap_or(22),
            username: c
                .ssh_bastion_username
                .clone()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| c.ssh_username.clone()),
            auth: bauth,
        }));
    } else if let Some(host) = c.ssh_proxy_host.as_deref().filter(|h| !h.is_empty()) {
        let user = c.ssh_proxy_username.clone().unwrap_or_default();
        let password = c.ssh_proxy_password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
        s.route = Route::Socks5(Socks5Proxy {
            host: host.to_string(),
            port: c.ssh_proxy_port.filter(|p| *p != 0).unwrap_or(1080),
            // as Packer: username/password authentication only when a username is set
            credentials: (!user.is_empty()).then_some((user, password)),
        });
    }
    Ok(s)
}

fn read(path: &str, option: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{option} {path:?}: {e}"))
}

/// A private key, with its certificate file if one is given.
fn key_auth(private_key: &str, certificate: Option<&str>, option: &str) -> Result<SshAuth, String> {
    Ok(match certificate.filter(|p| !p.is_empty()) {
        Some(path) => SshAuth::Certificate { private_key: private_key.to_string(), certificate: read(path, option)? },
        None => SshAuth::PrivateKey(private_key.to_string()),
    })
}

/// The agent socket of the environment (`SSH_AUTH_SOCK`), if set.
fn agent_socket_from_env() -> Option<PathBuf> {
    std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from)
}

#[async_trait]
impl Step<BuildState> for WaitForSsh<'_> {
    fn name(&self) -> &'static str {
        "wait for ssh"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        if c.communicator != CommunicatorType::Ssh {
            return Ok(());
        }
        let qemu = state.qemu.as_ref().ok_or_else(|| StepError::failed("QEMU is not running"))?;
        // net_bridge: the discovered guest address on ssh_port; else the forward (ssh_port itself
        // with skip_nat_mapping)
        let port = match state.guest_address {
            Some(_) => c.ssh_port,
            None if c.ssh_host.is_empty() => return Err(StepError::failed("no guest address and no ssh_host")),
            None => state.ssh_host_port.unwrap_or(c.ssh_port),
        };
        let agent = agent_socket_from_env();
        let mut cfg = ssh_config(c, port, state.ssh_key.as_ref(), agent.as_deref()).map_err(StepError::failed)?;
        if let Some(ip) = state.guest_address {
            cfg.host = ip.to_string();
        }
        match &cfg.route {
            Route::Bastion(b) => {
                ctx.ui.say(&format!("Connecting to SSH through the bastion host {}:{}", b.host, b.port)).await
            }
            Route::Socks5(p) => {
                ctx.ui.say(&format!("Connecting to SSH through the SOCKS5 proxy {}:{}", p.host, p.port)).await
            }
            Route::Direct => {}
        }
        // QEMU's user network forwards the port: its side of each connection tells whether the
        // guest has accepted one (not through ssh_host elsewhere, a bastion or a proxy)
        let local = c.ssh_host.is_empty() || c.ssh_host == "127.0.0.1" || c.ssh_host == "localhost";
        let forward = match (state.guest_address, state.ssh_host_port, &cfg.route) {
            (None, Some(host_port), Route::Direct) if local => Some(ForwardWatch::new(host_port, c.ssh_port)),
            _ => None,
        };
        let mut comm = self.wait(ctx, qemu, &cfg, forward.clone()).await?;
        if let Some(pause) = c.pause_before_connecting.filter(|d| !d.is_zero() && !d.is_negative()) {
            // Packer: connect once, then wait (e.g. for a first-boot reboot or configuration), then
            // connect again
            comm.close().await;
            drop(comm);
            ctx.ui.say(&format!("Pausing {pause} before connecting...")).await;
            tokio::select! {
                _ = tokio::time::sleep(pause.to_std()) => {}
                _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
            }
            comm = self.wait(ctx, qemu, &cfg, forward).await?;
        }
        comm.start_forwarding().await.map_err(|e| StepError::failed(format!("SSH: {e}")))?;
        state.comm = Some(Arc::new(ReconnectingSsh::new(comm)));
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        if let Some(comm) = state.comm.take() {
            comm.close().await;
        }
    }
}

impl WaitForSsh<'_> {
    /// Attempts connections until one authenticates, QEMU exits, the guest panics, `ssh_timeout`
    /// passes or the build is cancelled.
    ///
    /// Two phases per attempt ([`SshCommunicator::reach`], then [`Reached::login`]): a new attempt
    /// starts every `poll` until one is answered by the guest's sshd (its banner arrived), up to
    /// `max_pending` unanswered at once, each waiting up to the 5 s connect timeout — an attempt
    /// made while the guest's network is down waits in QEMU's user network for a SYN retransmit
    /// that comes seconds late, so fresh attempts must not wait for it. The first answered
    /// attempt logs in alone: the unanswered ones are dropped and no new one starts until it has
    /// succeeded or failed, so a slow sshd never handles more than one handshake at a time.
    ///
    /// With `forward` (QEMU's user network forwards the port), while QEMU reports a waiting
    /// attempt accepted by the guest (its sshd holds it and will answer, see [`ForwardWatch`]),
    /// none is dropped and a fresh one starts only every [`HOLD_PATIENCE`]; such an attempt waits
    /// up to [`SLOW_BANNER_TIMEOUT`] for its banner.
    pub async fn wait(
        &self,
        ctx: &StepContext,
        qemu: &QemuProcess,
        cfg: &SshConfig,
        mut forward: Option<ForwardWatch>,
    ) -> Result<SshCommunicator, StepError> {
        let c = self.config;
        // through a bastion or proxy every attempt costs a channel or a handshake there: fewer, slower
        let mut pace = Pace::new(&cfg.route);
        ctx.ui.say("Waiting for SSH to become available...").await;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + c.ssh_timeout.to_std();
        let mut auth_failures = 0u32;
        let mut last = String::from("no attempt finished yet");
        let mut attempts = 0u64;
        let mut pending: JoinSet<(u64, Result<Reached, SshError>)> = JoinSet::new();
        // the attempts in `pending` not yet reaped, oldest first, less those aborted
        let mut waiting: VecDeque<AbortHandle> = VecDeque::new();
        // the answered attempt logging in (at most one)
        let mut login: JoinSet<(u64, Result<SshCommunicator, SshError>)> = JoinSet::new();
        let mut next_start = tokio::time::Instant::now();
        loop {
            if let Some(status) = qemu.exit_status() {
                return Err(StepError::failed(with_serial_tail(
                    &format!("QEMU exited ({status}) before SSH became available"),
                    qemu,
                )));
            }
            if panicked(qemu) {
                return Err(StepError::failed(with_serial_tail(
                    "the guest kernel panicked before SSH became available",
                    qemu,
                )));
            }
            // fast phase, all slots taken by attempts the guest has not answered: the oldest
            // makes way for a fresh one (see `Pace::replaces_oldest`)
            let replace = pace.replaces_oldest() && waiting.len() >= pace.max_pending;
            let may_start = login.is_empty() && (waiting.len() < pace.max_pending || replace);
            let due = may_start && tokio::time::Instant::now() >= next_start;
            let accepted = match forward.as_mut() {
                Some(f) if due && !waiting.is_empty() => f.accepted(&qemu.qmp).await,
                _ => None,
            };
            // the attempt the guest accepted is never dropped: a fresh one only beside it, in a
            // free slot (so `replace` below is false then)
            let hold = match accepted {
                Some(Accepted::Wait) => true,
                Some(Accepted::AddOne) => waiting.len() >= pace.max_pending,
                None => false,
            };
            if hold {
                next_start = tokio::time::Instant::now() + pace.poll;
            } else if due {
                // (one that finished stays counted until its result is read)
                let oldest = waiting.iter().position(|h| !h.is_finished()).filter(|_| replace);
                if let Some(oldest) = oldest.and_then(|i| waiting.remove(i)) {
                    tracing::debug!(
                        pending = pending.len(),
                        "SSH: the oldest unanswered attempt makes way for a fresh one"
                    );
                    oldest.abort();
                }
                attempts += 1;
                let (n, mut attempt_cfg) = (attempts, cfg.clone());
                // an attempt the guest accepts is worth waiting for; one it does not is dropped
                // for a fresh one long before this (see `ForwardWatch`)
                if pace.slow || forward.as_ref().is_some_and(ForwardWatch::watching) {
                    attempt_cfg.connect_timeout = attempt_cfg.connect_timeout.max(SLOW_BANNER_TIMEOUT);
                }
                tracing::debug!(attempt = n, pending = pending.len(), "SSH attempt started");
                waiting.push_back(pending.spawn(async move { (n, SshCommunicator::reach(&attempt_cfg).await) }));
                next_start = tokio::time::Instant::now() + pace.poll;
            }
            let may_start = login.is_empty() && (waiting.len() < pace.max_pending || pace.replaces_oldest());
            let finished = tokio::select! {
                Some(r) = pending.join_next_with_id(), if !pending.is_empty() => {
                    let id = match &r { Ok((id, _)) => *id, Err(e) => e.id() };
                    waiting.retain(|h| h.id() != id);
                    r.map(|(_, r)| r)
                }
                Some(r) = login.join_next(), if !login.is_empty() => match r {
                    Ok((n, r)) => {
                        match self.logged_in(n, r, &mut auth_failures, &mut last, &mut next_start, &mut pace)? {
                            Some(comm) => {
                                tracing::info!(attempt = n, attempts, elapsed_ms = started.elapsed().as_millis() as u64, "SSH connected");
                                ctx.ui.say(&format!("Connected to SSH after {:.1} s", started.elapsed().as_secs_f64())).await;
                                return Ok(comm);
                            }
                            None => continue,
                        }
                    }
                    Err(e) => {
                        last = format!("an SSH attempt ended abnormally: {e}");
                        continue;
                    }
                },
                _ = tokio::time::sleep_until(next_start), if may_start => continue,
                _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(StepError::failed(with_serial_tail(
                        &format!("timeout waiting for SSH after {} (ssh_timeout); last error: {last}", c.ssh_timeout),
                        qemu,
                    )));
                }
                s = qemu.wait() => {
                    return Err(StepError::failed(with_serial_tail(
                        &format!("QEMU exited ({s}) before SSH became available"),
                        qemu,
                    )));
                }
            };
            match finished {
                Ok((n, Ok(reached))) => {
                    pace.answered(attempts);
                    if login.is_empty() {
                        // sshd answered: this attempt goes on alone
                        pending.abort_all();
                        waiting.clear();
                        tracing::debug!(attempt = n, "SSH attempt answered; logging in");
                        login.spawn(async move { (n, reached.login_within(LOGIN_TIMEOUT).await) });
                    }
                }
                Ok((n, Err(e))) if e.is_retryable() => {
                    pace.unanswered(n, &e, attempts);
                    last = e.to_string();
                    tracing::debug!(attempt = n, "SSH not ready yet: {e}");
                }
                Ok((_, Err(e))) => return Err(StepError::failed(format!("SSH: {e}"))),
                Err(e) if e.is_cancelled() => {}
                Err(e) => last = format!("an SSH attempt ended abnormally: {e}"),
            }
        }
    }

    /// Judges the end of a login: `Some` on success, `None` to keep waiting (the next attempt
    /// starts at once, or after [`AUTH_RETRY_PAUSE`] when the credentials were refused), an error
    /// when waiting longer cannot help. A login that failed after the banner sets `slow`.
    fn logged_in(
        &self,
        n: u64,
        result: Result<SshCommunicator, SshError>,
        auth_failures: &mut u32,
        last: &mut String,
        next_start: &mut tokio::time::Instant,
        pace: &mut Pace,
    ) -> Result<Option<SshCommunicator>, StepError> {
        let c = self.config;
        match result {
            Ok(comm) => Ok(Some(comm)),
            Err(e) if e.is_auth_failure() => {
                *auth_failures += 1;
                *last = e.to_string();
                tracing::warn!("SSH authentication failed ({auth_failures}): {e}");
                if c.ssh_handshake_attempts != 0 && *auth_failures >= c.ssh_handshake_attempts {
                    return Err(StepError::failed(format!(
                        "SSH authentication failed {auth_failures} times (ssh_handshake_attempts); check ssh_username, \
                         ssh_password or the key: {e}"
                    )));
                }
                *next_start = tokio::time::Instant::now() + AUTH_RETRY_PAUSE;
                Ok(None)
            }
            Err(e) if e.is_retryable() => {
                *last = e.to_string();
                tracing::debug!(attempt = n, "SSH login failed, trying again: {e}");
                *next_start = tokio::time::Instant::now();
                pace.slow_down(n, "did not finish a login");
                Ok(None)
            }
            Err(e) => Err(StepError::failed(format!("SSH: {e}"))),
        }
    }
}

/// QEMU's side of the SSH port forward, read before a fresh attempt would start while others wait
/// (`driver::usernet`). The forward accepts every connection at once, so from here an attempt
/// whose SYN QEMU keeps resending to a guest whose network is down looks the same as one the
/// guest's sshd has accepted and not answered yet; only the first should make way for a fresh
/// attempt. Measured on the Debian 12 cloud image (`make bench`, 2026-12-01): its sshd, started
/// while cloud-init keeps the emulated CPU busy, sent no banner for 3.7 s while a fresh attempt
/// came every 250 ms and the oldest was dropped, then refused two with "Exceeded MaxStartups";
/// one attempt at a time after that took 5.8 s more for its banner: sshd up → connected 10.8 s.
#[derive(Debug, Clone)]
pub struct ForwardWatch {
    host_port: u16,
    guest_port: u16,
    /// Since when the guest holds an accepted attempt (the start of the current patience).
    holding_since: Option<Instant>,
    /// QEMU could not tell (no user network, an old QEMU): attempts go on without it.
    failed: bool,
}

impl ForwardWatch {
    /// Watches the forward of host port `host_port` (on 127.0.0.1) to guest port `guest_port`.
    pub fn new(host_port: u16, guest_port: u16) -> ForwardWatch {
        ForwardWatch { host_port, guest_port, holding_since: None, failed: false }
    }

    /// Whether QEMU can be asked.
    fn watching(&self) -> bool {
        !self.failed
    }

    /// Whether the guest has accepted one of the connections through the forward (so one of the
    /// waiting attempts is with its sshd), and what that means for a fresh attempt; `None` when
    /// it has accepted none (or QEMU cannot tell).
    async fn accepted(&mut self, qmp: &crate::driver::qmp::Qmp) -> Option<Accepted> {
        if self.failed {
            return None;
        }
        // QEMU answers in milliseconds; a monitor that is busy must not hold up the attempts
        let asked = crate::driver::usernet::forwarded(qmp, self.host_port, self.guest_port);
        let answer = tokio::time::timeout(FORWARD_QUERY_TIMEOUT, asked).await.ok()?;
        match answer {
            Ok(n) if n.established > 0 => {
                let now = Instant::now();
                let since = *self.holding_since.get_or_insert_with(|| {
                    tracing::debug!(
                        connecting = n.connecting,
                        "SSH: the guest accepted a waiting attempt; it is kept, a fresh one only every HOLD_PATIENCE"
                    );
                    now
                });
                Some(self.patience(now.duration_since(since)))
            }
            Ok(_) => {
                self.holding_since = None;
                None
            }
            Err(e) => {
                tracing::debug!("SSH: QEMU's user network cannot be read ({e}); attempts go on without it");
                self.failed = true;
                None
            }
        }
    }

    /// After `held` of holding an accepted attempt: wait on, or, every [`HOLD_PATIENCE`], one
    /// fresh attempt beside it — the guest may have rebooted after accepting it (QEMU keeps such a
    /// connection open, with nothing to tell it the guest is gone).
    fn patience(&mut self, held: Duration) -> Accepted {
        if held < HOLD_PATIENCE {
            return Accepted::Wait;
        }
        self.holding_since = Some(Instant::now());
        Accepted::AddOne
    }
}

/// What an attempt the guest has accepted means for a fresh one ([`ForwardWatch::accepted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    /// None starts: the guest's sshd will answer the accepted one.
    Wait,
    /// One starts beside it (none is dropped): the accepted one has waited [`HOLD_PATIENCE`].
    AddOne,
}

/// How often attempts start and how many may wait for a banner at once. Fast at first; slow
/// (one patient attempt at a time) once the guest's sshd is known to be there but slow: on an
/// emulated guest on a busy host every connection costs the guest an sshd process, and many
/// overlapping attempts exceed sshd's `MaxStartups` (10) and keep it from finishing any.
struct Pace {
    poll: Duration,
    max_pending: usize,
    slow: bool,
    /// Attempts started when an attempt first got bytes or was closed by the guest (its network
    /// was up): a later one that gets no banner met a slow sshd; an earlier one may have sent its
    /// SYN while the network was down and waited for QEMU's retransmit, which says nothing of sshd.
    answered_after: Option<u64>,
}

impl Pace {
    fn new(route: &Route) -> Pace {
        let (poll, max_pending) =
            if matches!(route, Route::Direct) { (POLL_INTERVAL, MAX_PENDING) } else { (ROUTED_POLL_INTERVAL, 1) };
        Pace { poll, max_pending, slow: false, answered_after: None }
    }

    /// The guest answered an attempt; `started` attempts have been started so far.
    fn answered(&mut self, started: u64) {
        self.answered_after.get_or_insert(started);
    }

    /// An attempt ended before the banner with the retryable `e`; `started` attempts have been
    /// started so far.
    fn unanswered(&mut self, attempt: u64, e: &SshError, started: u64) {
        match e {
            // nothing came back: the guest's network may still be down, unless the guest had
            // already answered when this attempt started: then its sshd is there but slow
            SshError::NoBanner { .. } if self.answered_after.is_some_and(|a| attempt > a) => {
                self.slow_down(attempt, "sent no banner")
            }
            SshError::NoBanner { .. } => {}
            // closed before any byte: the guest refused it (no sshd yet, or too many)
            _ => self.answered(started),
        }
    }

    /// Whether, with every slot taken by an unanswered attempt, the oldest is dropped to start a
    /// fresh one (in the fast phase, straight to the guest). An attempt made while the guest's
    /// network was down gets its answer only when QEMU's user network resends its SYN, seconds
    /// after sshd is up; keeping all of them would let no fresh attempt start until the oldest
    /// timed out (measured on the test guest: sshd up → connected 1.0–1.6 s, 0.21–0.35 s when a
    /// fresh attempt is always under way). The number pending still never exceeds `max_pending`.
    fn replaces_oldest(&self) -> bool {
        !self.slow && self.max_pending > 1
    }

    /// One attempt at a time from now on. The pace of starting them stays: an attempt the guest
    /// refuses (no sshd listening yet) costs it nothing, and one at a time never crowds sshd.
    fn slow_down(&mut self, attempt: u64, why: &str) {
        if !self.slow {
            tracing::info!(attempt, "the guest's sshd {why}: one attempt at a time from now on");
            (self.max_pending, self.slow) = (1, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use packer_sdk::config::RawConfig;
    use serde_json::json;

    use super::*;
    use crate::config::Env;

    fn config(options: serde_json::Value) -> Config {
        let mut m = json!({"iso_url": "/x.iso", "iso_checksum": "none", "ssh_username": "root"});
        for (k, v) in options.as_object().unwrap() {
            m[k] = v.clone();
        }
        let raws = vec![
            RawConfig::Map(m.as_object().unwrap().clone()),
            RawConfig::Map(json!({"packer_build_name": "t"}).as_object().unwrap().clone()),
        ];
        let env = |k: &str| (k == "SSH_AUTH_SOCK").then(|| "/agent.sock".to_string());
        Config::prepare_with(&raws, &Env { var: &env }).unwrap_or_else(|e| panic!("{}", e.errors)).config
    }

    fn key(temporary: bool) -> SshKey {
        SshKey { private_key: "KEY".into(), public_key_line: "ssh-ed25519 AAAA".into(), temporary }
    }

    /// A guest whose network comes up late: connections made before `up` are accepted and never
    /// answered (QEMU's user network holding the SYN of a guest whose network is down), later ones
    /// are closed at once (the guest's network is up, its sshd not yet). Once every slot holds a
    /// silent attempt, fresh attempts must keep coming: before, none came until the oldest timed
    /// out after 5 s, here the whole `ssh_timeout`.
    #[tokio::test]
    async fn fresh_attempts_keep_coming_while_the_first_ones_hang() {
        use crate::steps::shutdown::test_ui::{paused_qemu, Recorder};
        use packer_sdk::CancellationToken;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let dir = tempfile::tempdir().unwrap();
        let qemu = paused_qemu(dir.path()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // every slot is taken after MAX_PENDING polls; the network comes up a second later
        let up = Instant::now() + POLL_INTERVAL * MAX_PENDING as u32 + Duration::from_secs(1);
        let (held, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (h, r) = (held.clone(), refused.clone());
        let guest = tokio::spawn(async move {
            let mut silent = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                if Instant::now() < up {
                    h.fetch_add(1, Ordering::SeqCst);
                    silent.push(conn);
                } else {
                    r.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let c = config(json!({"ssh_password": "p", "ssh_timeout": "5s"}));
        let cfg = ssh_config(&c, port, None, None).unwrap();
        let ctx = StepContext { ui: Arc::new(Recorder::default()), cancel: CancellationToken::new() };
        let Err(e) = WaitForSsh::new(&c).wait(&ctx, &qemu, &cfg, None).await else {
            panic!("connected without an sshd")
        };
        assert!(e.to_string().contains("timeout waiting for SSH"), "{e}");
        guest.abort();
        let (held, refused) = (held.load(Ordering::SeqCst), refused.load(Ordering::SeqCst));
        assert!(held >= MAX_PENDING, "only {held} attempts before the network came up");
        assert!(refused >= 2, "{refused} attempts after the network came up ({held} before)");
    }

    #[test]
    fn pace_slows_down_only_once_the_guest_is_known_to_answer() {
        let no_banner = SshError::NoBanner { addr: "127.0.0.1:22".into(), waited: Duration::from_secs(5) };
        let closed = SshError::Handshake { addr: "127.0.0.1:22".into(), reason: "closed".into() };
        let mut p = Pace::new(&Route::Direct);
        assert_eq!((p.poll, p.max_pending, p.slow), (POLL_INTERVAL, MAX_PENDING, false));
        // the guest's network is not up yet: silent attempts are no reason to slow down
        for n in 1..=50 {
            p.unanswered(n, &no_banner, 57);
        }
        assert!(!p.slow && p.max_pending == MAX_PENDING);
        // the guest refused attempt 51 while 57 had been started (its network is up)
        p.unanswered(51, &closed, 57);
        assert!(!p.slow);
        // attempts started before that may still come back silent: they met the network down
        p.unanswered(56, &no_banner, 60);
        p.unanswered(57, &no_banner, 60);
        assert!(!p.slow, "an attempt started before the guest answered does not slow down");
        // one started after the guest answered gets no banner: sshd is there but slow
        p.unanswered(58, &no_banner, 60);
        assert_eq!((p.poll, p.max_pending, p.slow), (POLL_INTERVAL, 1, true));
        // a login that fails after the banner slows down at once
        let mut p = Pace::new(&Route::Direct);
        p.slow_down(1, "did not finish a login");
        assert_eq!(p.max_pending, 1);
        // through a proxy the pace stays a second
        let proxy = packer_sdk::communicator::ssh::Socks5Proxy { host: "p".into(), port: 1080, credentials: None };
        let mut p = Pace::new(&Route::Socks5(proxy));
        p.slow_down(1, "did not finish a login");
        assert_eq!((p.poll, p.max_pending), (ROUTED_POLL_INTERVAL, 1));
    }

    #[test]
    fn an_accepted_attempt_gets_a_fresh_one_beside_it_only_every_hold_patience() {
        let mut w = ForwardWatch::new(2222, 22);
        w.holding_since = Some(Instant::now());
        assert_eq!(w.patience(Duration::from_millis(300)), Accepted::Wait);
        assert_eq!(w.patience(HOLD_PATIENCE - Duration::from_millis(1)), Accepted::Wait);
        assert_eq!(w.patience(HOLD_PATIENCE), Accepted::AddOne);
        // the patience starts again
        let since = w.holding_since.expect("still holding");
        assert!(since.elapsed() < Duration::from_secs(1));
        assert!(w.watching());
    }

    #[test]
    fn credentials_in_packers_order() {
        let agent = Path::new("/agent.sock");
        let c = config(json!({"ssh_agent_auth": true, "ssh_password": "pw"}));
        let s = ssh_config(&c, 2222, Some(&key(true)), Some(agent)).unwrap();
        assert_eq!(
            s.auth,
            vec![
                SshAuth::Agent(agent.to_path_buf()),
                SshAuth::PrivateKey("KEY".into()),
                SshAuth::Password("pw".into())
            ]
        );
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 2222));
        // the agent is forwarded whenever one runs, unless disabled
        assert_eq!(s.agent_forwarding.as_deref(), Some(agent));
        assert_eq!(s.route, Route::Direct);
        let c = config(json!({"ssh_disable_agent_forwarding": true}));
        let s = ssh_config(&c, 2222, Some(&key(true)), Some(agent)).unwrap();
        assert_eq!(s.agent_forwarding, None);
        assert_eq!(s.auth, vec![SshAuth::PrivateKey("KEY".into())]);
        assert_eq!(ssh_config(&c, 2222, Some(&key(true)), None).unwrap().agent_forwarding, None);

        // no agent when the build runs: a clear error
        let c = config(json!({"ssh_agent_auth": true}));
        let e = ssh_config(&c, 2222, None, None).unwrap_err();
        assert!(e.contains("ssh_agent_auth") && e.contains("SSH_AUTH_SOCK"), "{e}");
    }

    #[test]
    fn certificates_algorithms_and_tunnels() {
        let dir = tempfile::tempdir().unwrap();
        let pair =
            packer_sdk::communicator::ssh::TemporaryKeyPair::generate(packer_sdk::communicator::ssh::KeyType::Ed25519)
                .unwrap();
        let key_path = dir.path().join("id");
        std::fs::write(&key_path, &pair.private_key_pem).unwrap();
        std::fs::write(key_path.with_extension("pub"), &pair.public_key_line).unwrap();
        let ca = dir.path().join("ca");
        let ok = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&ca)
            .status()
            .unwrap()
            .success()
            && std::process::Command::new("ssh-keygen")
                .args(["-q", "-s"])
                .arg(&ca)
                .args(["-I", "t", "-n", "root"])
                .arg(key_path.with_extension("pub"))
                .status()
                .unwrap()
                .success();
        assert!(ok, "ssh-keygen failed");
        let cert_path = dir.path().join("id-cert.pub");
        let cert = std::fs::read_to_string(&cert_path).unwrap();
        let c = config(json!({
            "ssh_private_key_file": key_path, "ssh_certificate_file": cert_path,
            "ssh_ciphers": ["aes256-ctr"], "ssh_key_exchange_algorithms": ["curve25519-sha256"],
            "ssh_local_tunnels": ["8080:localhost:80"], "ssh_remote_tunnels": ["9090:10.0.0.1:90"],
        }));
        let file_key =
            SshKey { private_key: pair.private_key_pem.clone(), public_key_line: String::new(), temporary: false };
        let s = ssh_config(&c, 2222, Some(&file_key), None).unwrap();
        assert_eq!(s.auth, vec![SshAuth::Certificate { private_key: pair.private_key_pem.clone(), certificate: cert }]);
        assert_eq!(s.ciphers, ["aes256-ctr"]);
        assert_eq!(s.kex_algorithms, ["curve25519-sha256"]);
        assert_eq!(
            s.tunnels,
            vec![
                Tunnel::parse("8080:localhost:80", TunnelDirection::Local).unwrap(),
                Tunnel::parse("9090:10.0.0.1:90", TunnelDirection::Remote).unwrap()
            ]
        );
        // the bastion inherits the key and its certificate
        let c = config(json!({
            "ssh_private_key_file": key_path, "ssh_certificate_file": cert_path,
            "ssh_bastion_host": "jump", "ssh_bastion_password": "bpw", "ssh_bastion_agent_auth": true,
        }));
        let s = ssh_config(&c, 2222, Some(&file_key), Some(Path::new("/a"))).unwrap();
        let Route::Bastion(b) = &s.route else { panic!("{:?}", s.route) };
        assert_eq!((b.host.as_str(), b.port, b.username.as_str()), ("jump", 22, "root"));
        assert_eq!(b.auth.len(), 3, "{:?}", b.auth);
        assert_eq!(b.auth[0], SshAuth::Password("bpw".into()));
        assert!(matches!(&b.auth[1], SshAuth::Certificate { .. }));
        assert_eq!(b.auth[2], SshAuth::Agent("/a".into()));
    }

    #[test]
    fn socks5_proxy() {
        let c =
            config(json!({"ssh_proxy_host": "socks.example", "ssh_proxy_username": "u", "ssh_proxy_password": "p"}));
        let s = ssh_config(&c, 2222, None, None).unwrap();
        assert_eq!(
            s.route,
            Route::Socks5(Socks5Proxy {
                host: "socks.example".into(),
                port: 1080,
                credentials: Some(("u".into(), "p".into()))
            })
        );
        let c = config(json!({"ssh_proxy_host": "socks.example", "ssh_proxy_port": 9050}));
        let Route::Socks5(p) = ssh_config(&c, 2222, None, None).unwrap().route else { panic!() };
        assert_eq!((p.port, p.credentials), (9050, None));
    }
}
