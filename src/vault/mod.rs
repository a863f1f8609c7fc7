//! The credential store: passwords encrypted at rest with AES-256-GCM under a master key
//! read from a file, each ciphertext tagged with its key's id and bound to its row.

pub mod versions;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::rngs::OsRng;
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::VaultSettings;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("master key: {0}")]
    Key(String),
    #[error("ciphertext of version {version} was sealed with key {found}, but the loaded key is {loaded}")]
    WrongKey { version: i32, found: String, loaded: String },
    #[error("version {0} failed to decrypt: wrong key or tampered row")]
    Decrypt(i32),
    #[error("no pending version to promote")]
    NoPending,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub struct MasterKey {
    cipher: Aes256Gcm,
    key_id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// An encrypted password as stored.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

fn aad(credential_id: Uuid, version: i32) -> Vec<u8> {
    let mut v = b"rotor/v1/".to_vec();
    v.extend_from_slice(credential_id.as_bytes());
    v.extend_from_slice(&version.to_be_bytes());
    v
}

/// A supplied password waiting in its subtask is bound to that subtask.
fn subtask_aad(subtask_id: Uuid) -> Vec<u8> {
    let mut v = b"rotor/v1/subtask/".to_vec();
    v.extend_from_slice(subtask_id.as_bytes());
    v
}

impl MasterKey {
    pub fn load(settings: &VaultSettings) -> Result<Self, Error> {
        let text = crate::config::secret("vault.master_key", &settings.master_key, &settings.master_key_file)
            .map_err(|e| Error::Key(e.to_string()))?;
        Self::from_base64(text.expose_secret().trim())
    }

    pub fn from_base64(text: &str) -> Result<Self, Error> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| Error::Key("not base64 (write one with `rotor keygen --out FILE`)".into()))?,
        );
        if bytes.len() != 32 {
            return Err(Error::Key(format!("must be 32 bytes, found {}", bytes.len())));
        }
        let digest = Sha256::new().chain_update(b"rotor key id").chain_update(&bytes[..]).finalize();
        Ok(MasterKey {
            cipher: Aes256Gcm::new_from_slice(&bytes).expect("32-byte key"),
            key_id: hex::encode(&digest[..8]),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Writes a fresh random key, base64 on one line, mode 0600; never overwrites.
    pub fn generate_file(path: &Path) -> Result<String, Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.try_fill_bytes(&mut bytes[..]).map_err(|e| Error::Key(format!("OS random source: {e}")))?;
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&bytes[..]));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::Key(format!("cannot create {}: {e}", path.display())))?;
        writeln!(file, "{}", text.as_str()).map_err(|e| Error::Key(format!("cannot write {}: {e}", path.display())))?;
        file.sync_all().map_err(|e| Error::Key(format!("cannot sync {}: {e}", path.display())))?;
        Ok(Self::from_base64(&text)?.key_id)
    }

    pub fn seal(&self, credential_id: Uuid, version: i32, secret: &SecretString) -> Sealed {
        self.seal_bound(&aad(credential_id, version), secret)
    }

    pub fn seal_for_subtask(&self, subtask_id: Uuid, secret: &SecretString) -> Sealed {
        self.seal_bound(&subtask_aad(subtask_id), secret)
    }

    fn seal_bound(&self, aad: &[u8], secret: &SecretString) -> Sealed {
        let mut nonce = [0u8; 12];
        OsRng.try_fill_bytes(&mut nonce).expect("the OS random source works");
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.expose_secret().as_bytes(), aad })
            .expect("AES-GCM encryption of a short message cannot fail");
        Sealed { key_id: self.key_id.clone(), nonce: nonce.to_vec(), ciphertext }
    }

    pub fn open(&self, credential_id: Uuid, version: i32, sealed: &Sealed) -> Result<SecretString, Error> {
        self.open_bound(&aad(credential_id, version), version, sealed)
    }

    pub fn open_for_subtask(&self, subtask_id: Uuid, sealed: &Sealed) -> Result<SecretString, Error> {
        self.open_bound(&subtask_aad(subtask_id), 0, sealed)
    }

    fn open_bound(&self, aad: &[u8], version: i32, sealed: &Sealed) -> Result<SecretString, Error> {
        if sealed.key_id != self.key_id {
            return Err(Error::WrongKey { version, found: sealed.key_id.clone(), loaded: self.key_id.clone() });
        }
        if sealed.nonce.len() != 12 {
            return Err(Error::Decrypt(version));
        }
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad })
                .map_err(|_| Error::Decrypt(version))?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| Error::Decrypt(version))?;
        Ok(SecretString::from(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_password_opens_only_for_its_row() {
        let key = MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap();
        let id = Uuid::new_v4();
        let sealed = key.seal(id, 3, &SecretString::from("hunter2-Secret!"));
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open(id, 3, &sealed).unwrap().expose_secret(), "hunter2-Secret!");
        assert!(matches!(key.open(id, 4, &sealed), Err(Error::Decrypt(4))));
        assert!(key.open(Uuid::new_v4(), 3, &sealed).is_err());
    }

    #[test]
    fn keygen_writes_a_private_file_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("rotor-key-{}", Uuid::new_v4()));
        let id = MasterKey::generate_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(MasterKey::from_base64(text.trim()).unwrap().key_id(), id);
        assert!(MasterKey::generate_file(&path).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
