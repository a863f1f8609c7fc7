//! The credential store: passwords encrypted at rest with AES-256-GCM under a keyring of
//! master keys read from files (`[vault] master_key_files`, newest first): the first key
//! seals, every key opens. Each ciphertext carries its key's id and is bound to its row;
//! `rekey` moves every row to the first key.

pub mod rekey;
pub mod sealing;
pub mod versions;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
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
    #[error("ciphertext of version {version} was sealed with key {found}, which is not among the loaded keys ({loaded})")]
    WrongKey {
        version: i32,
        found: String,
        loaded: String,
    },
    #[error("version {0} failed to decrypt: wrong key or tampered row")]
    Decrypt(i32),
    #[error("no pending version to promote")]
    NoPending,
    /// The database says another key seals now (a rekey ran); this process must be
    /// restarted with it in `master_key_files`. Nothing was written.
    #[error("key {0} seals new secrets now, and this process does not hold it: add it to vault.master_key_files and restart")]
    SealingKeyNotLoaded(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The keyring: the first key seals; any key opens what it sealed.
pub struct MasterKey {
    keys: Vec<(String, Aes256Gcm)>,
    /// Per key, in the same order: the key that signs API access tokens, derived from it
    /// (so every instance holding the keyring accepts the others' tokens).
    token_keys: Vec<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
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
    /// The keyring `[vault]` names: `master_key_files` (newest first) when given, else
    /// the one `master_key` or `master_key_file`.
    pub fn load(settings: &VaultSettings) -> Result<Self, Error> {
        if settings.master_key_files.is_empty() {
            let text = crate::config::secret(
                "vault.master_key",
                &settings.master_key,
                &settings.master_key_file,
            )
            .map_err(|e| Error::Key(e.to_string()))?;
            return Self::from_base64(text.expose_secret().trim());
        }
        let mut keys: Vec<(String, Aes256Gcm)> =
            Vec::with_capacity(settings.master_key_files.len());
        let mut token_keys = Vec::with_capacity(settings.master_key_files.len());
        for (i, file) in settings.master_key_files.iter().enumerate() {
            let key = format!("vault.master_key_files[{i}]");
            let text =
                crate::config::secret_file(&key, file).map_err(|e| Error::Key(e.to_string()))?;
            let one = Self::from_base64(text.expose_secret().trim())
                .map_err(|e| Error::Key(format!("{key} ({}): {e}", file.display())))?;
            token_keys.extend(one.token_keys);
            let (id, cipher) = one.keys.into_iter().next().expect("one key");
            if keys.iter().any(|(k, _)| *k == id) {
                return Err(Error::Key(format!(
                    "{key} ({}) repeats key {id}",
                    file.display()
                )));
            }
            keys.push((id, cipher));
        }
        Ok(MasterKey { keys, token_keys })
    }

    pub fn from_base64(text: &str) -> Result<Self, Error> {
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| {
                    Error::Key("not base64 (write one with `rotor keygen --out FILE`)".into())
                })?,
        );
        if bytes.len() != 32 {
            return Err(Error::Key(format!(
                "must be 32 bytes, found {}",
                bytes.len()
            )));
        }
        let digest = Sha256::new()
            .chain_update(b"rotor key id")
            .chain_update(&bytes[..])
            .finalize();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&bytes).expect("any key length");
        mac.update(b"rotor/v1/access-token");
        let token_key = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        Ok(MasterKey {
            keys: vec![(
                hex::encode(&digest[..8]),
                Aes256Gcm::new_from_slice(&bytes).expect("32-byte key"),
            )],
            token_keys: vec![token_key],
        })
    }

    /// Signs an access token's payload with the sealing key's token key.
    pub fn sign_token(&self, payload: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.token_keys[0][..]).expect("any key length");
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }

    /// Whether any loaded key signed `payload` with `tag` (compared in constant time).
    pub fn verify_token(&self, payload: &[u8], tag: &[u8]) -> bool {
        self.token_keys.iter().any(|k| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&k[..]).expect("any key length");
            mac.update(payload);
            mac.verify_slice(tag).is_ok()
        })
    }

    /// The id of the key that seals.
    pub fn key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Every loaded key's id, the sealing one first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Writes a fresh random key, base64 on one line, mode 0600; never overwrites.
    pub fn generate_file(path: &Path) -> Result<String, Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng
            .try_fill_bytes(&mut bytes[..])
            .map_err(|e| Error::Key(format!("OS random source: {e}")))?;
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&bytes[..]));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::Key(format!("cannot create {}: {e}", path.display())))?;
        writeln!(file, "{}", text.as_str())
            .map_err(|e| Error::Key(format!("cannot write {}: {e}", path.display())))?;
        file.sync_all()
            .map_err(|e| Error::Key(format!("cannot sync {}: {e}", path.display())))?;
        Ok(Self::from_base64(&text)?.key_id().to_string())
    }

    /// Whether `key_id` is in the ring.
    pub fn holds(&self, key_id: &str) -> bool {
        self.keys.iter().any(|(id, _)| id == key_id)
    }

    /// Seals under the ring's first key (the tests'; rotor seals through `seal_with`).
    #[cfg(test)]
    pub fn seal(&self, credential_id: Uuid, version: i32, secret: &SecretString) -> Sealed {
        self.seal_bound(0, &aad(credential_id, version), secret)
    }

    /// Seals under `key_id` (which must be in the ring: see `sealing::key_id`).
    pub fn seal_with(
        &self,
        key_id: &str,
        credential_id: Uuid,
        version: i32,
        secret: &SecretString,
    ) -> Result<Sealed, Error> {
        let i = self
            .keys
            .iter()
            .position(|(id, _)| id == key_id)
            .ok_or_else(|| Error::SealingKeyNotLoaded(key_id.to_string()))?;
        Ok(self.seal_bound(i, &aad(credential_id, version), secret))
    }

    pub fn seal_for_subtask_with(
        &self,
        key_id: &str,
        subtask_id: Uuid,
        secret: &SecretString,
    ) -> Result<Sealed, Error> {
        let i = self
            .keys
            .iter()
            .position(|(id, _)| id == key_id)
            .ok_or_else(|| Error::SealingKeyNotLoaded(key_id.to_string()))?;
        Ok(self.seal_bound(i, &subtask_aad(subtask_id), secret))
    }

    fn seal_bound(&self, key: usize, aad: &[u8], secret: &SecretString) -> Sealed {
        let mut nonce = [0u8; 12];
        OsRng
            .try_fill_bytes(&mut nonce)
            .expect("the OS random source works");
        let (key_id, cipher) = &self.keys[key];
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad,
                },
            )
            .expect("AES-GCM encryption of a short message cannot fail");
        Sealed {
            key_id: key_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(
        &self,
        credential_id: Uuid,
        version: i32,
        sealed: &Sealed,
    ) -> Result<SecretString, Error> {
        self.open_bound(&aad(credential_id, version), version, sealed)
    }

    pub fn open_for_subtask(
        &self,
        subtask_id: Uuid,
        sealed: &Sealed,
    ) -> Result<SecretString, Error> {
        self.open_bound(&subtask_aad(subtask_id), 0, sealed)
    }

    fn open_bound(&self, aad: &[u8], version: i32, sealed: &Sealed) -> Result<SecretString, Error> {
        let Some((_, cipher)) = self.keys.iter().find(|(id, _)| *id == sealed.key_id) else {
            return Err(Error::WrongKey {
                version,
                found: sealed.key_id.clone(),
                loaded: self.key_ids().join(", "),
            });
        };
        if sealed.nonce.len() != 12 {
            return Err(Error::Decrypt(version));
        }
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad,
                    },
                )
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
        let key =
            MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
                .unwrap();
        let id = Uuid::new_v4();
        let sealed = key.seal(id, 3, &SecretString::from("hunter2-Secret!"));
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            key.open(id, 3, &sealed).unwrap().expose_secret(),
            "hunter2-Secret!"
        );
        assert!(matches!(key.open(id, 4, &sealed), Err(Error::Decrypt(4))));
        assert!(key.open(Uuid::new_v4(), 3, &sealed).is_err());
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
        let old = MasterKey::from_base64(&b64(1)).unwrap();
        let new = MasterKey::from_base64(&b64(2)).unwrap();
        let id = Uuid::new_v4();
        let under_old = old.seal(id, 1, &SecretString::from("old-Secret-1"));
        let (old_tag, new_tag) = (old.sign_token(b"claims"), new.sign_token(b"claims"));
        let ring = MasterKey {
            keys: new.keys.into_iter().chain(old.keys).collect(),
            token_keys: new.token_keys.into_iter().chain(old.token_keys).collect(),
        };
        // Access tokens too: the first key signs, every key verifies.
        assert_eq!(ring.sign_token(b"claims"), new_tag);
        assert!(ring.verify_token(b"claims", &old_tag) && ring.verify_token(b"claims", &new_tag));
        assert!(!ring.verify_token(b"claimz", &old_tag));
        assert_eq!(
            ring.open(id, 1, &under_old).unwrap().expose_secret(),
            "old-Secret-1"
        );
        let under_new = ring.seal(id, 2, &SecretString::from("new-Secret-2"));
        assert_eq!(under_new.key_id, ring.key_ids()[0]);
        let only_old = MasterKey::from_base64(&b64(1)).unwrap();
        assert!(matches!(
            only_old.open(id, 2, &under_new),
            Err(Error::WrongKey { version: 2, .. })
        ));
    }

    #[test]
    fn keygen_writes_a_private_file_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("rotor-key-{}", Uuid::new_v4()));
        let id = MasterKey::generate_file(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(MasterKey::from_base64(text.trim()).unwrap().key_id(), id);
        assert!(MasterKey::generate_file(&path).is_err());
        std::fs::remove_file(path).unwrap();
    }
}
