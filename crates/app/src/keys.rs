//! Where signing keys live: the `signing_keys` table, or a key file
//! (`auth.key_file`) shared by several instances. [`KeyStore`] is the one
//! door to both; every change goes through [`CredentialService`] so it is
//! audited. The auth crate only turns the loaded [`KeyMaterial`] into a
//! [`Keyring`]; it stores nothing.
//!
//! With a key-encryption key (`auth.key_encryption_key_file`), every
//! private key the store writes to the database is sealed under it
//! ([`cityhub_auth::at_rest`]), and every key it reads is opened with it:
//! a sealed key without the KEK, or under another KEK, is an error naming
//! the key and the KEK's fingerprint, so a hub refuses to start rather
//! than run without its keys. Keys stored in plaintext before the KEK was
//! set are sealed in place when the hub starts ([`FirstKey::Create`]), in
//! one audited transaction; [`KeyStore::rewrap`] moves every key to a new
//! KEK. A key file is not sealed: the KEK applies to the database only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cityhub_auth::at_rest::{self, KekError, KekFingerprint, KeyEncryptionKey, StoredForm};
use cityhub_auth::keyfile::{self, KeyFileError};
use cityhub_auth::{AuthConfig, AuthError, KeyMaterial, Keyring};

use crate::credentials::{AuditActor, CredentialService, Reseal};
use cityhub_storage::StorageError;
use cityhub_storage::db::Db;
use cityhub_storage::repo::tokens::{KeyRecord, TokenRepo};
use cityhub_storage::time::now_micros;

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
    /// The key-encryption key could not be read, or a stored key could not
    /// be opened with it.
    #[error(transparent)]
    AtRest(#[from] KekError),
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

/// What [`KeyStore::rewrap`] did, key by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    /// The KEK every key is now sealed under.
    pub kek: KekFingerprint,
    /// Keys that were stored in plaintext, now sealed.
    pub sealed: Vec<String>,
    /// Keys that were sealed under another KEK, now under this one.
    pub rewrapped: Vec<String>,
    /// Keys already sealed under this KEK (checked to open with it).
    pub unchanged: usize,
}

/// The audit action of a plaintext key sealed under a KEK.
const SEAL_ACTION: &str = "sealSigningKey";
/// The audit action of a sealed key sealed anew under another KEK.
const REWRAP_ACTION: &str = "rewrapSigningKey";

/// The signing keys of a hub, in the database or in a key file.
#[derive(Debug, Clone)]
pub struct KeyStore {
    db: Db,
    credentials: CredentialService,
    key_file: Option<PathBuf>,
    /// Seals the private keys stored in the database, when set.
    kek: Option<Arc<KeyEncryptionKey>>,
}

/// How the audit log names keys the hub made itself.
const SYSTEM: AuditActor<'static> = AuditActor("system");

impl KeyStore {
    /// The keys of `db`, or of `key_file` when one is configured; private
    /// keys in the database are sealed under `kek` when one is given.
    pub fn new(db: Db, key_file: Option<PathBuf>, kek: Option<KeyEncryptionKey>) -> Self {
        Self {
            credentials: CredentialService::new(db.clone()),
            db,
            key_file,
            kek: kek.map(Arc::new),
        }
    }

    /// The store `config` names (`auth.key_file`, else the database),
    /// with the key-encryption key of `auth.key_encryption_key_file` read
    /// (an error names the file, never its content).
    pub fn for_config(db: Db, config: &AuthConfig) -> Result<Self, KeyError> {
        let kek = config
            .key_encryption_key_file
            .as_deref()
            .map(|path| KeyEncryptionKey::read(Path::new(path)))
            .transpose()?;
        Ok(Self::new(
            db,
            config.key_file.as_ref().map(PathBuf::from),
            kek,
        ))
    }

    fn file(&self) -> Option<&Path> {
        self.key_file.as_deref()
    }

    fn kek(&self) -> Option<&KeyEncryptionKey> {
        self.kek.as_deref()
    }

    /// A stored key as the keyring takes it: its private key opened.
    fn open(&self, record: KeyRecord) -> Result<KeyMaterial, KeyError> {
        Ok(KeyMaterial {
            private_der: at_rest::open(self.kek(), &record.kid, &record.private_der)?,
            kid: record.kid,
            public_x: record.public_x,
            retired: record.retired_at.is_some(),
        })
    }

    /// A new key, its record (the private key in its stored form) and the
    /// key itself.
    fn new_key(&self) -> Result<(KeyRecord, KeyMaterial), KeyError> {
        let key = KeyMaterial::generate()?;
        let record = KeyRecord {
            kid: key.kid.clone(),
            private_der: at_rest::store(self.kek(), &key.kid, &key.private_der)?,
            public_x: key.public_x.clone(),
            created_at: now_micros(),
            retired_at: None,
        };
        Ok((record, key))
    }

    /// Every key of the database, opened (see [`KeyStore::open`]).
    async fn database_keys(&self) -> Result<Vec<KeyMaterial>, KeyError> {
        TokenRepo::keys(self.db.conn())
            .await?
            .into_iter()
            .map(|record| self.open(record))
            .collect()
    }

    /// Every stored key, oldest first; with [`FirstKey::Create`], first
    /// seals the keys the database holds in plaintext when a KEK is set,
    /// and generates a key (audited as `system`) if none can sign.
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
                if first == FirstKey::Create {
                    self.seal_plaintext_keys().await?;
                }
                let mut keys = self.database_keys().await?;
                if first == FirstKey::Create && keys.iter().all(|k| k.retired) {
                    let (record, key) = self.new_key()?;
                    self.credentials.add_key(SYSTEM, &record).await?;
                    tracing::info!(kid = %record.kid, "generated a signing key");
                    keys.push(key);
                }
                Ok(keys)
            }
        }
    }

    /// With a KEK, seals the keys still stored in plaintext (those written
    /// before it was set), in one transaction audited as `system`.
    async fn seal_plaintext_keys(&self) -> Result<(), KeyError> {
        let Some(kek) = self.kek() else {
            return Ok(());
        };
        let plaintext = TokenRepo::keys(self.db.conn())
            .await?
            .iter()
            .any(|r| StoredForm::of(&r.private_der) == StoredForm::Plain);
        if plaintext {
            let report = self.reseal(Some(kek), kek, SYSTEM).await?;
            tracing::info!(
                sealed = report.sealed.len(),
                kek = %report.kek,
                "sealed the signing keys stored in plaintext under the key-encryption key"
            );
        }
        Ok(())
    }

    /// Seals every private key in the database under `new`, in one
    /// transaction with an audit record per key changed (as `actor`):
    /// plaintext keys are sealed (`sealSigningKey`), keys sealed under
    /// `old` are opened with it and sealed anew (`rewrapSigningKey`), keys
    /// already under `new` are checked to open and left alone. If any key
    /// cannot be opened (sealed under a KEK that is neither), nothing is
    /// written. Run it again after a failure: it is idempotent.
    ///
    /// Instances still running with `old` keep the keys they hold but can
    /// no longer load them; restart them with `new` (README, "Signing keys
    /// at rest").
    pub async fn rewrap(
        &self,
        old: Option<&KeyEncryptionKey>,
        new: &KeyEncryptionKey,
        actor: AuditActor<'_>,
    ) -> Result<RewrapReport, KeyError> {
        if self.file().is_some() {
            return Err(KekError::KeysInFile.into());
        }
        self.reseal(old, new, actor).await
    }

    /// [`KeyStore::rewrap`] for the database, whatever `auth.key_file` says.
    async fn reseal(
        &self,
        old: Option<&KeyEncryptionKey>,
        new: &KeyEncryptionKey,
        actor: AuditActor<'_>,
    ) -> Result<RewrapReport, KeyError> {
        let mut unchanged = 0;
        let resealed = self
            .credentials
            .reseal_keys(actor, |record| -> Result<Reseal, KeyError> {
                let (kid, stored) = (&record.kid, &record.private_der);
                let (private_der, action) = match StoredForm::of(stored) {
                    StoredForm::Sealed(under) if under == new.fingerprint() => {
                        new.open(kid, stored)?;
                        unchanged += 1;
                        return Ok(Reseal::Keep);
                    }
                    StoredForm::Sealed(_) => (at_rest::open(old, kid, stored)?, REWRAP_ACTION),
                    StoredForm::Plain => (at_rest::open(None, kid, stored)?, SEAL_ACTION),
                    StoredForm::Unknown => {
                        return Err(KekError::UnknownForm { kid: kid.clone() }.into());
                    }
                };
                Ok(Reseal::Replace {
                    private_der: at_rest::store(Some(new), kid, &private_der)?,
                    action,
                })
            })
            .await?;
        let kids = |action: &str| -> Vec<String> {
            resealed
                .iter()
                .filter(|r| r.action == action)
                .map(|r| r.kid.clone())
                .collect()
        };
        Ok(RewrapReport {
            kek: new.fingerprint(),
            sealed: kids(SEAL_ACTION),
            rewrapped: kids(REWRAP_ACTION),
            unchanged,
        })
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
                // Every stored key must open with the configured KEK (or
                // none be sealed without one) before a key is added, so
                // the table never mixes keys sealed under different KEKs.
                self.database_keys().await?;
                let (record, _) = self.new_key()?;
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
