//! Ed25519 key files: the gateway's own key (made on first start) and the
//! operators' (`sluice keygen`). A secret key file holds the 32-byte seed
//! in base64 on one line and is created with mode 0600; a public key file
//! holds the public key the same way, which is what `[[control.operators]]`
//! takes.

use crate::config::PublicKey;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a base64 seed of 32 bytes.
    #[error("{path}: not an Ed25519 secret key (one line of base64, 32 bytes)")]
    Malformed {
        /// The key file.
        path: String,
    },
    /// The system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// A fresh key from the system's random source.
pub fn generate() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let malformed = || KeyError::Malformed {
        path: path.display().to_string(),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| malformed())?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| malformed())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `key`'s seed to `path` (mode 0600, must not exist yet).
pub fn write_secret(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let text = base64::engine::general_purpose::STANDARD.encode(key.to_bytes());
    write_new(path, &format!("{text}\n"), 0o600)
}

/// Writes the public half of `key` to `path` (mode 0644, must not exist yet).
pub fn write_public(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    write_new(path, &format!("{}\n", public_of(key).to_base64()), 0o644)
}

/// Reads a public key file (or any file whose text is a base64 public key).
pub fn read_public(path: &Path) -> Result<PublicKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    PublicKey::parse(&text).map_err(|_| KeyError::Malformed {
        path: path.display().to_string(),
    })
}

/// The public key of `key`.
pub fn public_of(key: &SigningKey) -> PublicKey {
    PublicKey(key.verifying_key().to_bytes())
}

/// The gateway's key: read from `path`, or made and written there if the
/// file does not exist.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    match read_secret(path) {
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let key = generate()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            write_secret(path, &key)?;
            tracing::info!(path = %path.display(), public_key = %public_of(&key).to_base64(), "Gateway key created");
            Ok(key)
        }
        other => other,
    }
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_reads_back_and_the_gateway_key_is_made_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = generate().expect("key");
        write_secret(&dir.path().join("op.key"), &key).expect("write");
        write_public(&dir.path().join("op.pub"), &key).expect("write");
        assert_eq!(
            read_secret(&dir.path().join("op.key"))
                .expect("read")
                .to_bytes(),
            key.to_bytes()
        );
        assert_eq!(
            read_public(&dir.path().join("op.pub")).expect("read"),
            public_of(&key)
        );
        assert!(
            write_secret(&dir.path().join("op.key"), &key).is_err(),
            "never overwrites"
        );
        let made = load_or_create(&dir.path().join("gw/gateway.key")).expect("made");
        let again = load_or_create(&dir.path().join("gw/gateway.key")).expect("read");
        assert_eq!(made.to_bytes(), again.to_bytes());
    }
}
