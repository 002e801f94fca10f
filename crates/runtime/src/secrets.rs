//! Sealing secrets with AES-256-GCM. A sealed value is `nonce (12 bytes) ‖ ciphertext`.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::path::Path;

/// Errors of the secret box.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file cannot be read or created.
    #[error("secret key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold the base64 of 32 bytes.
    #[error("secret key file {path} must hold the base64 of 32 bytes")]
    BadKey {
        /// The file.
        path: String,
    },
    /// A sealed value was not sealed with this key, or was altered.
    #[error("a sealed value could not be opened: it was sealed with another key or altered")]
    Open,
}

/// Seals and opens secrets with one key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key hidden>)")
    }
}

impl SecretBox {
    /// A box with the key in `path`, creating the file with a random key if it is missing.
    /// Concurrent starts agree on one key: the file is created atomically.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let display = path.display().to_string();
        let io = |source| SecretError::KeyFile {
            path: display.clone(),
            source,
        };
        if !path.exists() {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let key = Aes256Gcm::generate_key(OsRng);
            let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
            std::fs::write(&temporary, STANDARD.encode(key)).map_err(io)?;
            // A hard link fails if another process created the file first; then use theirs.
            let linked = std::fs::hard_link(&temporary, path);
            let _ = std::fs::remove_file(&temporary);
            match linked {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(io(error)),
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let key = STANDARD
            .decode(text.trim())
            .ok()
            .filter(|key| key.len() == 32)
            .ok_or(SecretError::BadKey { path: display })?;
        Ok(Self::from_key(&key))
    }

    /// A box with a 32-byte key.
    pub fn from_key(key: &[u8]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    /// Seals `plaintext`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let mut sealed = nonce.to_vec();
        sealed.extend(
            self.cipher
                .encrypt(&nonce, plaintext)
                .expect("AES-GCM encryption of an in-memory buffer cannot fail"),
        );
        sealed
    }

    /// Opens a value sealed by [`SecretBox::seal`] with the same key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < 12 {
            return Err(SecretError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_other_keys() {
        let one = SecretBox::from_key(&[1; 32]);
        let sealed = one.seal(b"wJalrXUtnFEMI");
        assert!(!sealed.windows(5).any(|w| w == b"wJalr"));
        assert_eq!(one.open(&sealed).unwrap(), b"wJalrXUtnFEMI");
        assert!(SecretBox::from_key(&[2; 32]).open(&sealed).is_err());
        assert!(format!("{one:?}").contains("hidden"));
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("filedrop-key-{}", std::process::id()));
        let path = dir.join("secret.key");
        let first = SecretBox::load_or_create(&path).unwrap();
        let second = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(second.open(&first.seal(b"x")).unwrap(), b"x");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
