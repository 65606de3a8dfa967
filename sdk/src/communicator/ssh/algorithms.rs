//! `ssh_ciphers` and `ssh_key_exchange_algorithms`: the names a template may use (Go's and
//! OpenSSH's, which are the same wire names) mapped to the algorithms the SSH library implements.
//!
//! Packer hands these lists to Go's `x/crypto/ssh` unchecked, so a typo only shows as a failed
//! handshake; qemu-rs checks them at `Prepare` and names the supported ones instead.

use russh::{cipher, kex};

/// Symmetric ciphers `ssh_ciphers` accepts, in the order they are listed in messages.
pub const SUPPORTED_CIPHERS: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes128-cbc",
    "aes192-cbc",
    "aes256-cbc",
    "3des-cbc",
];

/// Key exchange algorithms `ssh_key_exchange_algorithms` accepts.
pub const SUPPORTED_KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group-exchange-sha1",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group17-sha512",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group15-sha512",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group14-sha1",
    "diffie-hellman-group1-sha1",
];

/// Names Go's SSH library knows but qemu-rs does not implement, with the reason.
const KNOWN_UNSUPPORTED: &[(&str, &str)] = &[
    ("arcfour", "RC4 is broken and no maintained Rust SSH library implements it"),
    ("arcfour128", "RC4 is broken and no maintained Rust SSH library implements it"),
    ("arcfour256", "RC4 is broken and no maintained Rust SSH library implements it"),
    ("sntrup761x25519-sha512@openssh.com", "the SSH library qemu-rs uses does not implement it"),
    ("sntrup761x25519-sha512", "the SSH library qemu-rs uses does not implement it"),
];

/// An algorithm name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnknownAlgorithm {
    /// The name as written.
    pub name: String,
    /// What is wrong and which names work.
    pub message: String,
}

fn unknown(name: &str, kind: &str, supported: &[&str]) -> UnknownAlgorithm {
    let why = KNOWN_UNSUPPORTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| format!("{name:?} is not supported by qemu-rs ({why})"))
        .unwrap_or_else(|| format!("{name:?} is not a {kind} qemu-rs knows"));
    UnknownAlgorithm { name: name.to_string(), message: format!("{why}; use one of: {}", supported.join(", ")) }
}

/// The ciphers for `names` (`ssh_ciphers`), in the given order (the client's preference). Every
/// unusable name is an error.
pub fn ciphers(names: &[String]) -> Result<Vec<cipher::Name>, Vec<UnknownAlgorithm>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let name = name.trim();
        match cipher::Name::try_from(name) {
            Ok(n) if SUPPORTED_CIPHERS.contains(&name) => {
                if !out.contains(&n) {
                    out.push(n)
                }
            }
            _ => errors.push(unknown(name, "cipher", SUPPORTED_CIPHERS)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The key exchange algorithms for `names` (`ssh_key_exchange_algorithms`), in the given order,
/// followed by the protocol extensions a client always announces (`ext-info-c`, strict key
/// exchange), as Go does.
pub fn kex_algorithms(names: &[String]) -> Result<Vec<kex::Name>, Vec<UnknownAlgorithm>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let name = name.trim();
        match kex::Name::try_from(name) {
            Ok(n) if SUPPORTED_KEX.contains(&name) => {
                if !out.contains(&n) {
                    out.push(n)
                }
            }
            _ => errors.push(unknown(name, "key exchange algorithm", SUPPORTED_KEX)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.push(kex::EXTENSION_SUPPORT_AS_CLIENT);
    out.push(kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_supported_name_maps_to_the_same_wire_name() {
        let c = ciphers(&strings(SUPPORTED_CIPHERS)).unwrap();
        let wire: Vec<&str> = c.iter().map(|n| n.as_ref()).collect();
        assert_eq!(wire, SUPPORTED_CIPHERS);
        let k = kex_algorithms(&strings(SUPPORTED_KEX)).unwrap();
        let wire: Vec<&str> = k.iter().map(|n| n.as_ref()).collect();
        assert_eq!(&wire[..SUPPORTED_KEX.len()], SUPPORTED_KEX);
        assert_eq!(&wire[SUPPORTED_KEX.len()..], ["ext-info-c", "kex-strict-c-v00@openssh.com"]);
    }

    #[test]
    fn order_is_kept_and_duplicates_dropped() {
        let c = ciphers(&strings(&["aes256-ctr", "aes128-ctr", "aes256-ctr"])).unwrap();
        assert_eq!(c.iter().map(|n| n.as_ref()).collect::<Vec<_>>(), ["aes256-ctr", "aes128-ctr"]);
    }

    #[test]
    fn unknown_names_are_all_reported_with_the_supported_list() {
        let errs = ciphers(&strings(&["aes128-ctr", "aes512-ctr", "arcfour", "none"])).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].message.contains("\"aes512-ctr\" is not a cipher"), "{}", errs[0]);
        assert!(errs[0].message.contains("chacha20-poly1305@openssh.com, aes128-gcm@openssh.com"), "{}", errs[0]);
        assert!(errs[1].message.contains("RC4 is broken"), "{}", errs[1]);
        // "none" and "clear" exist in the library but are never acceptable
        assert_eq!(errs[2].name, "none");
        let errs = kex_algorithms(&strings(&["curve25519"])).unwrap_err();
        assert!(errs[0].message.contains("curve25519-sha256@libssh.org"), "{}", errs[0]);
        assert!(kex_algorithms(&strings(&["ext-info-c"])).is_err());
    }
}
