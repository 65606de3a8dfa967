//! Client authentication: every configured method in order until one succeeds, as Go's SSH client
//! does with Packer's list (agent keys, then private keys — with their certificate —, then
//! password and keyboard-interactive).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{AuthResult, Handle, KeyboardInteractiveAuthResponse as Kbd};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_encoding::Encode;
use russh::keys::{Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{MethodKind, MethodSet};

use super::keys::{self, KeyError};
use super::{describe_russh_error, methods_text, ClientHandler, SshAuth, SshError};

/// A credential ready to use (keys parsed before connecting).
pub(crate) enum Credential {
    Password(String),
    Key(Arc<PrivateKey>),
    Certificate(Arc<PrivateKey>, Box<Certificate>),
    Agent(PathBuf),
    Interactive,
}

impl Credential {
    /// Parses the keys and certificates of `auth` (errors here are the user's files, not the
    /// machine: they end a wait at once).
    pub(crate) fn prepare(auth: &[SshAuth]) -> Result<Vec<Credential>, SshError> {
        auth.iter()
            .map(|a| {
                Ok(match a {
                    SshAuth::Password(p) => Credential::Password(p.clone()),
                    SshAuth::PrivateKey(text) => Credential::Key(Arc::new(keys::parse_private_key(text)?)),
                    SshAuth::Certificate { private_key, certificate } => {
                        let key = keys::parse_private_key(private_key)?;
                        let cert = keys::parse_certificate(certificate)?;
                        keys::certificate_matches(&key, &cert)?;
                        Credential::Certificate(Arc::new(key), Box::new(cert))
                    }
                    SshAuth::Agent(socket) => Credential::Agent(socket.clone()),
                    SshAuth::Interactive => Credential::Interactive,
                })
            })
            .collect::<Result<Vec<_>, KeyError>>()
            .map_err(SshError::Key)
    }

    fn kind(&self) -> MethodKind {
        match self {
            Credential::Password(_) => MethodKind::Password,
            Credential::Interactive => MethodKind::KeyboardInteractive,
            _ => MethodKind::PublicKey,
        }
    }
}

/// What the attempt tried, for the error message.
#[derive(Default)]
struct Tried(Vec<String>);

impl Tried {
    fn add(&mut self, what: impl Into<String>) {
        let what = what.into();
        if !self.0.contains(&what) {
            self.0.push(what);
        }
    }
    fn text(&self) -> String {
        match self.0.len() {
            0 => "no method the server accepts".to_string(),
            _ => self.0.join(", then "),
        }
    }
}

/// Signs with a local private key for certificate authentication (russh's own certificate method
/// signs RSA keys with SHA-1, which OpenSSH 8.8+ refuses; this honours the negotiated hash).
struct KeySigner(Arc<PrivateKey>);

impl russh::Signer for KeySigner {
    type Error = russh::AgentAuthError;

    async fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        mut to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        let key = PrivateKeyWithHashAlg::new(self.0.clone(), hash_alg);
        let signature = sign(&key, &to_sign).map_err(russh::keys::Error::from)?;
        signature.as_slice().encode(&mut to_sign).map_err(russh::keys::Error::from)?;
        Ok(to_sign)
    }
}

/// The encoded SSH signature of `data` by `key` (with its RSA hash, if any).
fn sign(key: &PrivateKeyWithHashAlg, data: &[u8]) -> Result<Vec<u8>, russh::keys::ssh_key::Error> {
    use russh::keys::signature::Signer;
    use russh::keys::ssh_key::private::KeypairData;
    let sig = match (key.key_data(), key.algorithm()) {
        (KeypairData::Rsa(rsa), russh::keys::Algorithm::Rsa { hash }) => Signer::try_sign(&(rsa, hash), data)?,
        (keypair, _) => Signer::try_sign(keypair, data)?,
    };
    sig.encode_vec().map_err(Into::into)
}

/// Authenticates with each credential in turn; skips methods the server stopped offering.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    credentials: &[Credential],
    addr: &str,
) -> Result<(), SshError> {
    let transport = |e: russh::Error| SshError::Handshake {
        addr: addr.to_string(),
        reason: format!("the connection failed during authentication: {}", describe_russh_error(&e)),
    };
    // "none" tells which methods the server offers (and rarely lets one in).
    let mut offered = match handle.authenticate_none(user).await.map_err(transport)? {
        AuthResult::Success => return Ok(()),
        AuthResult::Failure { remaining_methods, .. } => remaining_methods,
    };
    let mut tried = Tried::default();
    let mut rsa_hash: Option<Option<HashAlg>> = None;
    for cred in credentials {
        let kind = cred.kind();
        let keyboard_fallback =
            matches!(cred, Credential::Password(_)) && offered.contains(&MethodKind::KeyboardInteractive);
        if !offered.contains(&kind) && !keyboard_fallback {
            tracing::debug!("skipping SSH {} authentication: the server does not offer it", <&str>::from(&kind));
            continue;
        }
        let result = match cred {
            Credential::Key(key) => {
                tried.add("private key");
                let hash =
                    if key.algorithm().is_rsa() { rsa_hash_for(handle, &mut rsa_hash, addr).await? } else { None };
                handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                    .await
                    .map_err(transport)?
            }
            Credential::Certificate(key, cert) => {
                tried.add("certificate");
                let hash =
                    if key.algorithm().is_rsa() { rsa_hash_for(handle, &mut rsa_hash, addr).await? } else { None };
                let mut signer = KeySigner(key.clone());
                match handle.authenticate_certificate_with(user, (**cert).clone(), hash, &mut signer).await {
                    Ok(r) => r,
                    Err(e) => return Err(transport(signer_error(e))),
                }
            }
            Credential::Agent(socket) => {
                let result = agent_auth(handle, user, socket, addr, &mut rsa_hash, &mut tried).await?;
                match result {
                    Some(r) => r,
                    None => continue,
                }
            }
            Credential::Password(password) => {
                tried.add("password");
                password_auth(handle, user, password, &offered).await.map_err(transport)?
            }
            Credential::Interactive => {
                tried.add("keyboard-interactive (answered on the terminal)");
                interactive_auth(handle, user, addr).await?
            }
        };
        match result {
            AuthResult::Success => return Ok(()),
            AuthResult::Failure { remaining_methods, .. } => offered = remaining_methods,
        }
    }
    Err(SshError::AuthRejected {
        addr: addr.to_string(),
        user: user.to_string(),
        method: tried.text(),
        offered: methods_text(&offered),
    })
}

fn signer_error(e: russh::AgentAuthError) -> russh::Error {
    match e {
        russh::AgentAuthError::Send(_) => russh::Error::SendError,
        russh::AgentAuthError::Key(k) => russh::Error::Keys(k),
    }
}

/// The RSA signature hash the server accepts (asked once per connection). Servers without the
/// `server-sig-algs` extension (older dropbear) still take SHA-256.
async fn rsa_hash_for(
    handle: &Handle<ClientHandler>,
    cached: &mut Option<Option<HashAlg>>,
    addr: &str,
) -> Result<Option<HashAlg>, SshError> {
    if let Some(h) = cached {
        return Ok(*h);
    }
    let h = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| SshError::Handshake { addr: addr.to_string(), reason: describe_russh_error(&e) })?
        .unwrap_or(Some(HashAlg::Sha256));
    *cached = Some(h);
    Ok(h)
}

/// Password, then (if offered) keyboard-interactive answering every prompt with the password,
/// as Packer does.
async fn password_auth(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    password: &str,
    offered: &MethodSet,
) -> Result<AuthResult, russh::Error> {
    let mut last = AuthResult::Failure { remaining_methods: offered.clone(), partial_success: false };
    if offered.contains(&MethodKind::Password) {
        last = handle.authenticate_password(user, password).await?;
        match &last {
            AuthResult::Success => return Ok(last),
            AuthResult::Failure { remaining_methods, .. }
                if !remaining_methods.contains(&MethodKind::KeyboardInteractive) =>
            {
                return Ok(last)
            }
            AuthResult::Failure { .. } => {}
        }
    }
    let mut resp = handle.authenticate_keyboard_interactive_start(user, None).await?;
    for _ in 0..8 {
        match resp {
            Kbd::Success => return Ok(AuthResult::Success),
            Kbd::Failure { remaining_methods, partial_success } => {
                return Ok(AuthResult::Failure { remaining_methods, partial_success })
            }
            Kbd::InfoRequest { prompts, .. } => {
                let answers = prompts.iter().map(|_| password.to_string()).collect();
                resp = handle.authenticate_keyboard_interactive_respond(answers).await?;
            }
        }
    }
    Ok(last)
}

/// Every key the agent at `socket` holds, in the agent's order. `Ok(None)`: the agent holds no
/// key (the next method is tried).
async fn agent_auth(
    handle: &mut Handle<ClientHandler>,
    user: &str,
    socket: &Path,
    addr: &str,
    rsa_hash: &mut Option<Option<HashAlg>>,
    tried: &mut Tried,
) -> Result<Option<AuthResult>, SshError> {
    let agent_err = |e: &dyn std::fmt::Display| SshError::Agent {
        reason: format!("cannot use the SSH agent at {} (SSH_AUTH_SOCK): {e}; is ssh-agent running?", socket.display()),
    };
    let mut agent = AgentClient::connect_uds(socket).await.map_err(|e| agent_err(&e))?;
    let identities = agent.request_identities().await.map_err(|e| agent_err(&e))?;
    if identities.is_empty() {
        tracing::warn!("the SSH agent at {} holds no keys (add one with ssh-add)", socket.display());
        tried.add("ssh-agent (it holds no keys: add one with ssh-add)");
        return Ok(None);
    }
    tried.add(format!("ssh-agent ({} key{})", identities.len(), if identities.len() == 1 { "" } else { "s" }));
    let transport = |e: russh::Error| SshError::Handshake {
        addr: addr.to_string(),
        reason: format!("the connection failed during authentication: {}", describe_russh_error(&e)),
    };
    let mut last = None;
    for id in identities {
        let result = match &id {
            AgentIdentity::PublicKey { key, comment } => {
                let hash = if key.algorithm().is_rsa() { rsa_hash_for(handle, rsa_hash, addr).await? } else { None };
                tracing::debug!("trying the agent's key {comment:?}");
                handle.authenticate_publickey_with(user, key.clone(), hash, &mut agent).await
            }
            AgentIdentity::Certificate { certificate, comment } => {
                let hash =
                    if certificate.algorithm().is_rsa() { rsa_hash_for(handle, rsa_hash, addr).await? } else { None };
                tracing::debug!("trying the agent's certificate {comment:?}");
                handle.authenticate_certificate_with(user, certificate.clone(), hash, &mut agent).await
            }
        };
        match result {
            Ok(AuthResult::Success) => return Ok(Some(AuthResult::Success)),
            Ok(failure) => last = Some(failure),
            // the agent refused to sign with this key (confirm-only, locked…): try the next
            Err(russh::AgentAuthError::Key(e)) => tracing::warn!("the SSH agent did not sign: {e}"),
            Err(russh::AgentAuthError::Send(_)) => return Err(transport(russh::Error::SendError)),
        }
    }
    Ok(last.or(Some(AuthResult::Failure { remaining_methods: MethodSet::empty(), partial_success: false })))
}

/// Keyboard-interactive with the prompts shown on, and the answers read from, the controlling
/// terminal (`ssh_bastion_interactive`).
async fn interactive_auth(handle: &mut Handle<ClientHandler>, user: &str, addr: &str) -> Result<AuthResult, SshError> {
    let transport = |e: russh::Error| SshError::Handshake {
        addr: addr.to_string(),
        reason: format!("the connection failed during authentication: {}", describe_russh_error(&e)),
    };
    let mut resp = handle.authenticate_keyboard_interactive_start(user, None).await.map_err(transport)?;
    for _ in 0..16 {
        match resp {
            Kbd::Success => return Ok(AuthResult::Success),
            Kbd::Failure { remaining_methods, partial_success } => {
                return Ok(AuthResult::Failure { remaining_methods, partial_success })
            }
            Kbd::InfoRequest { name, instructions, prompts } => {
                let questions: Vec<(String, bool)> = prompts.into_iter().map(|p| (p.prompt, p.echo)).collect();
                let header = [name, instructions].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("\n");
                let answers = tokio::task::spawn_blocking(move || super::terminal::ask(&header, &questions))
                    .await
                    .map_err(|e| SshError::Agent { reason: format!("prompting on the terminal failed: {e}") })?
                    .map_err(|e| SshError::Interactive {
                        reason: format!(
                            "ssh_bastion_interactive needs a terminal to ask on, and {e}; run packer from a \
                             terminal or use ssh_bastion_password / ssh_bastion_private_key_file"
                        ),
                    })?;
                resp = handle.authenticate_keyboard_interactive_respond(answers).await.map_err(transport)?;
            }
        }
    }
    Ok(AuthResult::Failure { remaining_methods: MethodSet::empty(), partial_success: false })
}
