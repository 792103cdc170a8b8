//! Where signing keys live: the `signing_keys` table, or a key file
//! (`auth.key_file`) shared by several instances. [`KeyStore`] is the one
//! door to both; every change goes through [`CredentialService`] so it is
//! audited. The auth crate only turns the loaded [`KeyMaterial`] into a
//! [`Keyring`]; it stores nothing.

use std::path::{Path, PathBuf};

use cityhub_auth::keyfile::{self, KeyFileError};
use cityhub_auth::{AuthConfig, AuthError, KeyMaterial, Keyring};

use crate::credentials::{AuditActor, CredentialService};
use crate::db::Db;
use crate::error::StorageError;
use crate::repo::tokens::{KeyRecord, TokenRepo};
use crate::time::now_micros;

/// Errors of key management.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A key could not be made or read.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The key file could not be read or written.
    #[error(transparent)]
    File(#[from] KeyFileError),
}

/// Whether loading the keys may create the first signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstKey {
    /// At start-up: generate (and audit) a key when none can sign.
    Create,
    /// On a reload: never create; keep what is stored.
    Never,
}

/// One stored key as listed for operators: its id and whether it is retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListing {
    /// The key id (`kid`).
    pub kid: String,
    /// Retired keys verify nothing.
    pub retired: bool,
}

/// The signing keys of a hub, in the database or in a key file.
#[derive(Debug, Clone)]
pub struct KeyStore {
    db: Db,
    credentials: CredentialService,
    key_file: Option<PathBuf>,
}

fn to_material(record: KeyRecord) -> KeyMaterial {
    KeyMaterial {
        kid: record.kid,
        private_der: record.private_der,
        public_x: record.public_x,
        retired: record.retired_at.is_some(),
    }
}

fn new_key_record() -> Result<KeyRecord, KeyError> {
    let key = KeyMaterial::generate()?;
    Ok(KeyRecord {
        kid: key.kid,
        private_der: key.private_der,
        public_x: key.public_x,
        created_at: now_micros(),
        retired_at: None,
    })
}

/// How the audit log names keys the hub made itself.
const SYSTEM: AuditActor<'static> = AuditActor("system");

impl KeyStore {
    /// The keys of `db`, or of `key_file` when one is configured.
    pub fn new(db: Db, key_file: Option<PathBuf>) -> Self {
        Self {
            credentials: CredentialService::new(db.clone()),
            db,
            key_file,
        }
    }

    /// The store `config` names (`auth.key_file`, else the database).
    pub fn for_config(db: Db, config: &AuthConfig) -> Self {
        Self::new(db, config.key_file.as_ref().map(PathBuf::from))
    }

    fn file(&self) -> Option<&Path> {
        self.key_file.as_deref()
    }

    /// Every stored key, oldest first; with [`FirstKey::Create`], first
    /// generates one (audited as `system`) if none can sign.
    pub async fn load(&self, first: FirstKey) -> Result<Vec<KeyMaterial>, KeyError> {
        match self.file() {
            Some(path) => {
                let mut keys = keyfile::read(path)?;
                if first == FirstKey::Create && keys.iter().all(|k| k.retired) {
                    let key = KeyMaterial::generate()?;
                    tracing::info!(kid = %key.kid, file = %path.display(), "generated a signing key");
                    let kid = key.kid.clone();
                    keys.push(key);
                    keyfile::write(path, &keys)?;
                    self.credentials
                        .record_key_file_change(SYSTEM, "addSigningKey", &kid)
                        .await?;
                }
                Ok(keys)
            }
            None => {
                let mut records = TokenRepo::keys(self.db.conn()).await?;
                if first == FirstKey::Create && records.iter().all(|r| r.retired_at.is_some()) {
                    let record = new_key_record()?;
                    self.credentials.add_key(SYSTEM, &record).await?;
                    tracing::info!(kid = %record.kid, "generated a signing key");
                    records.push(record);
                }
                Ok(records.into_iter().map(to_material).collect())
            }
        }
    }

    /// A keyring over every stored key (see [`KeyStore::load`]).
    pub async fn keyring(&self, config: &AuthConfig, first: FirstKey) -> Result<Keyring, KeyError> {
        Ok(Keyring::new(config.clone(), self.load(first).await?)?)
    }

    /// Adds a new signing key, audited as `actor`; tokens signed by older
    /// keys keep verifying until they expire or their key is retired.
    /// Returns the new `kid`.
    pub async fn rotate(&self, actor: AuditActor<'_>) -> Result<String, KeyError> {
        match self.file() {
            Some(path) => {
                let key = KeyMaterial::generate()?;
                let kid = key.kid.clone();
                let mut keys = keyfile::read(path)?;
                keys.push(key);
                keyfile::write(path, &keys)?;
                self.credentials
                    .record_key_file_change(actor, "addSigningKey", &kid)
                    .await?;
                Ok(kid)
            }
            None => {
                let record = new_key_record()?;
                self.credentials.add_key(actor, &record).await?;
                Ok(record.kid)
            }
        }
    }

    /// Retires key `kid` (tokens it signed stop verifying), audited as
    /// `actor`; false if there is no such active key.
    pub async fn retire(&self, kid: &str, actor: AuditActor<'_>) -> Result<bool, KeyError> {
        match self.file() {
            Some(path) => {
                let mut keys = keyfile::read(path)?;
                let Some(key) = keys.iter_mut().find(|k| k.kid == kid && !k.retired) else {
                    return Ok(false);
                };
                key.retired = true;
                keyfile::write(path, &keys)?;
                self.credentials
                    .record_key_file_change(actor, "retireSigningKey", kid)
                    .await?;
                Ok(true)
            }
            None => Ok(self.credentials.retire_key(actor, kid).await?),
        }
    }

    /// Every key's id and whether it is retired, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyListing>, KeyError> {
        Ok(match self.file() {
            Some(path) => keyfile::read(path)?
                .into_iter()
                .map(|k| KeyListing {
                    kid: k.kid,
                    retired: k.retired,
                })
                .collect(),
            None => TokenRepo::keys(self.db.conn())
                .await?
                .into_iter()
                .map(|k| KeyListing {
                    kid: k.kid,
                    retired: k.retired_at.is_some(),
                })
                .collect(),
        })
    }
}
