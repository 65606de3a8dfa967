//! Temporary SSH key pairs (Packer's `StepSSHKeyGen`) and helpers around private keys.
//!
//! A build generates a fresh key pair, installs the public half in the guest (cloud-init, HTTP
//! seed, `{{ .SSHPublicKey }}`) and authenticates with the private half. Private keys are never
//! logged: [`TemporaryKeyPair`]'s `Debug` output redacts them.

use russh::keys::ssh_key::private::{EcdsaKeypair, Ed25519Keypair, RsaKeypair};
use russh::keys::ssh_key::{Certificate, EcdsaCurve, HashAlg, LineEnding, PrivateKey};

/// The kind of key [`TemporaryKeyPair::generate`] creates (Packer's `temporary_key_pair_type` /
/// `temporary_key_pair_bits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// An RSA key of `bits` bits (Packer's default type, 4096 bits by default; at least 2048).
    Rsa {
        /// Modulus size in bits.
        bits: usize,
    },
    /// An Ed25519 key (fixed size).
    Ed25519,
    /// An ECDSA key on the NIST curve of `bits` bits: 256, 384 or 521 (Packer's default).
    Ecdsa {
        /// Curve size in bits.
        bits: usize,
    },
}

/// Errors creating or reading SSH keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The requested RSA size is too small or too large.
    #[error("cannot generate a {bits}-bit RSA key: use a size between 2048 and 16384 bits (e.g. 4096)")]
    BadRsaSize {
        /// The requested size.
        bits: usize,
    },
    /// The requested ECDSA size names no curve.
    #[error("cannot generate a {bits}-bit ECDSA key: use 256, 384 or 521 bits")]
    BadEcdsaSize {
        /// The requested size.
        bits: usize,
    },
    /// Key generation or encoding failed inside the crypto library.
    #[error("could not generate the temporary SSH key pair: {0}")]
    Generate(String),
    /// The private key text could not be parsed.
    #[error(
        "could not read the SSH private key: {0}; expected an unencrypted OpenSSH \
         (\"-----BEGIN OPENSSH PRIVATE KEY-----\") or PEM (PKCS#1/PKCS#8) private key"
    )]
    Parse(String),
    /// The private key is protected by a passphrase, which nothing can type during a build.
    #[error(
        "the SSH private key is encrypted (protected by a passphrase), and a build cannot ask for one: \
         load the key into an ssh-agent (`ssh-add KEY`) and set ssh_agent_auth = true instead, or use a key \
         without a passphrase for builds (`ssh-keygen -p -N \"\" -f KEY` removes it from a copy)"
    )]
    Encrypted,
    /// A public key was given where the private key belongs.
    #[error(
        "this is a public key, not a private key: point the option at the private half (the file without \
         `.pub`, beginning with \"-----BEGIN OPENSSH PRIVATE KEY-----\")"
    )]
    PublicKey,
    /// The certificate text could not be parsed.
    #[error(
        "could not read the SSH certificate: {0}; expected an OpenSSH user certificate \
         (one line \"ssh-ed25519-cert-v01@openssh.com AAAA…\", as `ssh-keygen -s` writes it)"
    )]
    CertificateParse(String),
    /// The certificate does not certify the private key it is used with.
    #[error(
        "the SSH certificate certifies the key {certified}, not the private key's {key}; \
         use the certificate made for this private key (`ssh-keygen -s CA -I id KEY.pub` writes KEY-cert.pub)"
    )]
    CertificateMismatch {
        /// Fingerprint of the key the certificate is for.
        certified: String,
        /// Fingerprint of the private key.
        key: String,
    },
}

/// A freshly generated key pair.
#[derive(Clone)]
pub struct TemporaryKeyPair {
    /// The private key in OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`, LF line endings).
    pub private_key_pem: String,
    /// The public key as one `authorized_keys` line without a trailing newline:
    /// `ssh-ed25519 AAAA… packer_<random>`.
    pub public_key_line: String,
    /// The SHA-256 fingerprint of the public key (`SHA256:…`), safe to log.
    pub fingerprint: String,
}

impl std::fmt::Debug for TemporaryKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporaryKeyPair")
            .field("private_key_pem", &"<redacted>")
            .field("public_key_line", &self.public_key_line)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl TemporaryKeyPair {
    /// Generates a key pair of `kind` whose public key carries the comment `packer_<random hex>`.
    ///
    /// RSA generation is CPU-heavy (seconds for 4096 bits); call it from `spawn_blocking` in async code.
    pub fn generate(kind: KeyType) -> Result<TemporaryKeyPair, KeyError> {
        let mut rng = rand_ssh::rng();
        let mut key: PrivateKey = match kind {
            KeyType::Ed25519 => Ed25519Keypair::random(&mut rng).into(),
            KeyType::Ecdsa { bits } => {
                let curve = match bits {
                    256 => EcdsaCurve::NistP256,
                    384 => EcdsaCurve::NistP384,
                    521 => EcdsaCurve::NistP521,
                    _ => return Err(KeyError::BadEcdsaSize { bits }),
                };
                EcdsaKeypair::random(&mut rng, curve).map_err(|e| KeyError::Generate(e.to_string()))?.into()
            }
            KeyType::Rsa { bits } => {
                if !(2048..=16384).contains(&bits) {
                    return Err(KeyError::BadRsaSize { bits });
                }
                RsaKeypair::random(&mut rng, bits).map_err(|e| KeyError::Generate(e.to_string()))?.into()
            }
        };
        let comment = format!("packer_{}", random_hex(16));
        key.set_comment(comment.as_str());
        let private_key_pem =
            key.to_openssh(LineEnding::LF).map_err(|e| KeyError::Generate(e.to_string()))?.to_string();
        let public_key_line = key.public_key().to_openssh().map_err(|e| KeyError::Generate(e.to_string()))?;
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        Ok(TemporaryKeyPair { private_key_pem, public_key_line, fingerprint })
    }
}

/// Parses an unencrypted private key (OpenSSH, PKCS#1 or PKCS#8 PEM).
pub(crate) fn parse_private_key(text: &str) -> Result<PrivateKey, KeyError> {
    let parsed = russh::keys::decode_secret_key(text, None).or_else(|e| match pad_short_p256_scalar(text) {
        Some(padded) => russh::keys::decode_secret_key(&padded, None).map_err(|_| e),
        None => Err(e),
    });
    parsed.map_err(|e| {
        let first = text.trim_start().lines().next().unwrap_or("");
        if matches!(e, russh::keys::Error::KeyIsEncrypted)
            || first == "-----BEGIN ENCRYPTED PRIVATE KEY-----"
            || text.lines().any(|l| l.trim() == "Proc-Type: 4,ENCRYPTED")
        {
            KeyError::Encrypted
        } else if first.starts_with("ssh-") || first.starts_with("ecdsa-sha2-") || first.starts_with("sk-") {
            KeyError::PublicKey
        } else {
            KeyError::Parse(e.to_string())
        }
    })
}

/// Parses an OpenSSH certificate (the one-line `*-cert-v01@openssh.com AAAA… [comment]` format).
pub(crate) fn parse_certificate(text: &str) -> Result<Certificate, KeyError> {
    Certificate::from_openssh(text.trim()).map_err(|e| KeyError::CertificateParse(e.to_string()))
}

/// Checks that `certificate` parses and certifies the public half of `private_key` (both texts as
/// in their files), so a wrong pairing is found before connecting.
pub fn check_certificate(private_key: &str, certificate: &str) -> Result<(), KeyError> {
    let key = parse_private_key(private_key)?;
    let cert = parse_certificate(certificate)?;
    certificate_matches(&key, &cert)
}

pub(crate) fn certificate_matches(key: &PrivateKey, cert: &Certificate) -> Result<(), KeyError> {
    if cert.public_key() == key.public_key().key_data() {
        return Ok(());
    }
    let certified = russh::keys::PublicKey::from(cert.public_key().clone()).fingerprint(HashAlg::Sha256).to_string();
    Err(KeyError::CertificateMismatch { certified, key: key.public_key().fingerprint(HashAlg::Sha256).to_string() })
}

/// Checks that `private_key` (the text of a key file) is an unencrypted private key qemu-rs can use.
pub fn check_private_key(private_key: &str) -> Result<(), KeyError> {
    parse_private_key(private_key).map(drop)
}

/// Returns the `authorized_keys` line (`<type> <base64> [comment]`) of an unencrypted private key,
/// e.g. to render `{{ .SSHPublicKey }}` for a user-supplied `ssh_private_key_file`.
pub fn public_key_line(private_key: &str) -> Result<String, KeyError> {
    let key = parse_private_key(private_key)?;
    key.public_key().to_openssh().map_err(|e| KeyError::Parse(e.to_string()))
}

/// Returns the SHA-256 fingerprint (`SHA256:…`) of an unencrypted private key's public half.
pub fn fingerprint(private_key: &str) -> Result<String, KeyError> {
    let key = parse_private_key(private_key)?;
    Ok(key.public_key().fingerprint(HashAlg::Sha256).to_string())
}

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_pair_round_trips() {
        let pair = TemporaryKeyPair::generate(KeyType::Ed25519).unwrap();
        assert!(pair.private_key_pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let mut parts = pair.public_key_line.split(' ');
        assert_eq!(parts.next(), Some("ssh-ed25519"));
        assert!(parts.next().unwrap().starts_with("AAAA"));
        let comment = parts.next().unwrap();
        assert!(comment.starts_with("packer_") && comment.len() == "packer_".len() + 32, "{comment}");
        // The public half derived from the private key is the same key.
        let derived = public_key_line(&pair.private_key_pem).unwrap();
        assert_eq!(derived, pair.public_key_line);
        assert_eq!(fingerprint(&pair.private_key_pem).unwrap(), pair.fingerprint);
        assert!(pair.fingerprint.starts_with("SHA256:"));
        // Two pairs differ.
        let other = TemporaryKeyPair::generate(KeyType::Ed25519).unwrap();
        assert_ne!(other.public_key_line, pair.public_key_line);
        // Debug output never shows the private key.
        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn rsa_pair_round_trips() {
        let pair = TemporaryKeyPair::generate(KeyType::Rsa { bits: 2048 }).unwrap();
        assert!(pair.public_key_line.starts_with("ssh-rsa AAAA"), "{}", pair.public_key_line);
        assert_eq!(public_key_line(&pair.private_key_pem).unwrap(), pair.public_key_line);
        assert_eq!(fingerprint(&pair.private_key_pem).unwrap(), pair.fingerprint);
    }

    #[test]
    fn ecdsa_pairs_use_the_requested_curve() {
        for (bits, name) in [(256, "nistp256"), (384, "nistp384"), (521, "nistp521")] {
            let pair = TemporaryKeyPair::generate(KeyType::Ecdsa { bits }).unwrap();
            assert!(pair.public_key_line.starts_with(&format!("ecdsa-sha2-{name} AAAA")), "{}", pair.public_key_line);
            assert_eq!(public_key_line(&pair.private_key_pem).unwrap(), pair.public_key_line);
        }
        assert!(matches!(
            TemporaryKeyPair::generate(KeyType::Ecdsa { bits: 512 }),
            Err(KeyError::BadEcdsaSize { bits: 512 })
        ));
    }

    /// `ssh-keygen -t TYPE -m FORMAT -N PASSPHRASE` in `dir`: (private key text, public key text).
    fn keygen(dir: &std::path::Path, name: &str, args: &[&str]) -> (String, String) {
        let path = dir.join(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-C", "test"])
            .args(args)
            .arg("-f")
            .arg(&path)
            .status()
            .expect("run ssh-keygen");
        assert!(st.success(), "ssh-keygen {args:?}");
        (std::fs::read_to_string(&path).unwrap(), std::fs::read_to_string(path.with_extension("pub")).unwrap())
    }

    #[test]
    fn encrypted_keys_and_public_keys_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        for (name, args) in [
            ("openssh", &["-t", "ed25519", "-N", "secret"][..]),
            ("pem", &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "secret"][..]),
            ("pkcs8", &["-t", "ecdsa", "-m", "PKCS8", "-N", "secret"][..]),
        ] {
            let (private, public) = keygen(dir.path(), name, args);
            let e = check_private_key(&private).unwrap_err();
            assert!(matches!(e, KeyError::Encrypted), "{name}: {e:?}");
            let m = e.to_string();
            assert!(m.contains("passphrase") && m.contains("ssh_agent_auth"), "{m}");
            let e = check_private_key(&public).unwrap_err();
            assert!(matches!(e, KeyError::PublicKey), "{name}: {e:?}");
            assert!(e.to_string().contains("without `.pub`"), "{e}");
        }
        // the same kinds without a passphrase are fine
        let (plain, _) = keygen(dir.path(), "plain", &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""]);
        assert!(check_private_key(&plain).is_ok());
        // garbage stays a parse error
        let e = check_private_key("not a key").unwrap_err();
        assert!(matches!(e, KeyError::Parse(_)), "{e:?}");
    }

    #[test]
    fn certificate_garbage_is_a_parse_error() {
        let pair = TemporaryKeyPair::generate(KeyType::Ed25519).unwrap();
        let err = check_certificate(&pair.private_key_pem, "ssh-ed25519-cert-v01@openssh.com AAAAnope").unwrap_err();
        assert!(matches!(err, KeyError::CertificateParse(_)), "{err:?}");
        // a public key is not a certificate
        let err = check_certificate(&pair.private_key_pem, &pair.public_key_line).unwrap_err();
        assert!(matches!(err, KeyError::CertificateParse(_)), "{err:?}");
        assert!(check_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n").is_err());
        assert!(check_private_key(&pair.private_key_pem).is_ok());
    }

    #[test]
    fn rsa_size_is_checked() {
        assert!(matches!(TemporaryKeyPair::generate(KeyType::Rsa { bits: 1024 }), Err(KeyError::BadRsaSize { .. })));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let err = public_key_line("not a key").unwrap_err();
        assert!(matches!(err, KeyError::Parse(_)));
        assert!(err.to_string().contains("OPENSSH PRIVATE KEY"));
    }
}

/// ssh-key (under russh) refuses an ECDSA P-256 key whose private scalar is shorter than 32 bytes,
/// and OpenSSH writes the scalar as a minimal `mpint`: one `ssh-keygen -t ecdsa` key in 256 has a
/// 31-byte scalar and would be "length invalid". This re-encodes such an unencrypted OpenSSH key with
/// the scalar left-padded to 32 bytes, which ssh-key reads; `None` for any other key. A workaround
/// here because the fix belongs upstream (ssh-key's `MIN_SIZE`).
fn pad_short_p256_scalar(text: &str) -> Option<String> {
    use base64::Engine as _;
    use russh::keys::ssh_key::encoding::{Decode, Encode};
    const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    const END: &str = "-----END OPENSSH PRIVATE KEY-----";
    const MAGIC: &[u8] = b"openssh-key-v1\0";
    let body = text.trim().strip_prefix(BEGIN)?.strip_suffix(END)?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let blob = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    // SSH wire format (RFC 4251 `uint32` and `string`), read and written with ssh-key's encoding
    let mut r = blob.strip_prefix(MAGIC)?;
    let string = |r: &mut &[u8]| Vec::<u8>::decode(r).ok();
    let (cipher, kdf, kdf_options) = (string(&mut r)?, string(&mut r)?, string(&mut r)?);
    if cipher != b"none" || kdf != b"none" || u32::decode(&mut r).ok()? != 1 {
        return None;
    }
    let public = string(&mut r)?;
    let private = string(&mut r)?;
    let mut p = private.as_slice();
    let (check1, check2) = (u32::decode(&mut p).ok()?, u32::decode(&mut p).ok()?);
    let (key_type, curve, point) = (string(&mut p)?, string(&mut p)?, string(&mut p)?);
    let (scalar, comment) = (string(&mut p)?, string(&mut p)?);
    if key_type != b"ecdsa-sha2-nistp256" || scalar.len() >= 32 {
        return None;
    }
    let mut padded = vec![0u8; 32 - scalar.len()];
    padded.extend_from_slice(&scalar);
    let mut private = Vec::new();
    check1.encode(&mut private).ok()?;
    check2.encode(&mut private).ok()?;
    for field in [&key_type, &curve, &point, &padded, &comment] {
        field.encode(&mut private).ok()?;
    }
    let mut pad = 1u8;
    while private.len() % 8 != 0 {
        private.push(pad);
        pad += 1;
    }
    let mut out = MAGIC.to_vec();
    for field in [&cipher, &kdf, &kdf_options] {
        field.encode(&mut out).ok()?;
    }
    1u32.encode(&mut out).ok()?;
    public.encode(&mut out).ok()?;
    private.encode(&mut out).ok()?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(out);
    let lines: Vec<&str> = encoded.as_bytes().chunks(70).map(|c| std::str::from_utf8(c).unwrap_or("")).collect();
    Some(format!("{BEGIN}\n{}\n{END}\n", lines.join("\n")))
}

#[cfg(test)]
mod short_scalar_tests {
    use super::*;

    /// An `ssh-keygen` ECDSA key whose scalar OpenSSH wrote in 31 bytes (found by generating keys
    /// until one was; ssh-key alone fails on it with "length invalid").
    #[test]
    fn an_ecdsa_key_with_a_short_scalar_parses() {
        let dir = tempfile::tempdir().unwrap();
        let mut tried = 0;
        let text = loop {
            tried += 1;
            assert!(tried < 5000, "no short-scalar key in {tried} ssh-keygen runs");
            let p = dir.path().join(format!("k{tried}"));
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
                .arg(&p)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ssh-keygen failed");
            let text = std::fs::read_to_string(&p).unwrap();
            if russh::keys::decode_secret_key(&text, None).is_err() {
                break text;
            }
        };
        let padded = pad_short_p256_scalar(&text).expect("recognised as a short P-256 scalar");
        let key = parse_private_key(&text).expect("parses after padding");
        let public = std::fs::read_to_string(dir.path().join(format!("k{tried}.pub"))).unwrap();
        let expected = public.split_whitespace().nth(1).unwrap();
        assert_eq!(key.public_key().to_openssh().unwrap().split_whitespace().nth(1).unwrap(), expected);
        assert!(padded.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        // other keys are left alone
        let ed = TemporaryKeyPair::generate(KeyType::Ed25519).unwrap();
        assert!(pad_short_p256_scalar(&ed.private_key_pem).is_none());
        assert!(pad_short_p256_scalar("not a key").is_none());
    }
}
