//! The privileged writes about credentials: issuing and revoking tokens,
//! adding and retiring signing keys, and sealing stored private keys under
//! a key-encryption key. Each is one transaction with its audit record, whichever door it came through (GraphQL or the command line), so
//! the audit log answers "who could act as whom, since when".

use sea_orm::{DatabaseTransaction, TransactionTrait};
use zeroize::Zeroizing;

use cityhub_storage::StorageError;
use cityhub_storage::db::Db;
use cityhub_storage::repo::audit::{AuditRepo, AuditTarget};
use cityhub_storage::repo::tokens::{KeyRecord, TokenRecord, TokenRepo};

/// Who made a credential change, as the audit log names it
/// (`secretariat`, `city:lyon`, `cli`, `system`).
#[derive(Debug, Clone, Copy)]
pub struct AuditActor<'a>(pub &'a str);

/// What [`CredentialService::reseal_keys`] does with one stored key.
pub enum Reseal {
    /// Leave it as it is.
    Keep,
    /// Store `private_der` in its place, audited as `action`
    /// (`sealSigningKey`, `rewrapSigningKey`).
    Replace {
        /// The new stored form.
        private_der: Zeroizing<Vec<u8>>,
        /// The audit record's action.
        action: &'static str,
    },
}

impl std::fmt::Debug for Reseal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reseal::Keep => f.write_str("Keep"),
            Reseal::Replace { action, .. } => f
                .debug_struct("Replace")
                .field("action", action)
                .finish_non_exhaustive(),
        }
    }
}

/// A key [`CredentialService::reseal_keys`] replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resealed {
    /// The key's id.
    pub kid: String,
    /// The audit record's action.
    pub action: &'static str,
}

/// Token and key writes, each with its audit record.
#[derive(Debug, Clone)]
pub struct CredentialService {
    db: Db,
}

impl CredentialService {
    /// The service over `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    async fn begin(
        &self,
    ) -> Result<(DatabaseTransaction, Option<tokio::sync::MutexGuard<'_, ()>>), StorageError> {
        let guard = self.db.write_guard().await;
        let txn = self.db.conn().begin().await?;
        Ok((txn, guard))
    }

    /// Records an issued token (never the token itself).
    pub async fn record_token(
        &self,
        actor: AuditActor<'_>,
        record: &TokenRecord,
    ) -> Result<(), StorageError> {
        let (txn, _guard) = self.begin().await?;
        TokenRepo::insert(&txn, record).await?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(actor.0, "issueToken", AuditTarget::Token(&record.id)),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Revokes token `id`; false if there is no such token. Revoking a
    /// revoked token is true and records nothing new.
    pub async fn revoke_token(
        &self,
        actor: AuditActor<'_>,
        id: &str,
    ) -> Result<bool, StorageError> {
        let (txn, _guard) = self.begin().await?;
        let Some(before) = TokenRepo::find(&txn, id).await? else {
            return Ok(false);
        };
        if before.revoked_at.is_none() {
            TokenRepo::revoke(&txn, id).await?;
            AuditRepo::record(
                &txn,
                &AuditRepo::entry(actor.0, "revokeToken", AuditTarget::Token(id)),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Stores a new signing key.
    pub async fn add_key(
        &self,
        actor: AuditActor<'_>,
        key: &KeyRecord,
    ) -> Result<(), StorageError> {
        let (txn, _guard) = self.begin().await?;
        TokenRepo::insert_key(&txn, key).await?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(actor.0, "addSigningKey", AuditTarget::SigningKey(&key.kid)),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Retires a stored signing key; false if there is no such active key.
    pub async fn retire_key(&self, actor: AuditActor<'_>, kid: &str) -> Result<bool, StorageError> {
        let (txn, _guard) = self.begin().await?;
        let retired = TokenRepo::retire_key(&txn, kid).await?;
        if retired {
            AuditRepo::record(
                &txn,
                &AuditRepo::entry(actor.0, "retireSigningKey", AuditTarget::SigningKey(kid)),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(retired)
    }

    /// Decides with `reseal`, for every stored signing key, whether to
    /// store it in another form (sealed under a key-encryption key, or
    /// under a new one), and stores every replacement in one transaction,
    /// each with its audit record. The keys are read inside that
    /// transaction; a key another process changed meanwhile is left to it.
    /// If `reseal` fails for any key, nothing is written. Returns the keys
    /// replaced, oldest first.
    pub async fn reseal_keys<E: From<StorageError>>(
        &self,
        actor: AuditActor<'_>,
        mut reseal: impl FnMut(&KeyRecord) -> Result<Reseal, E>,
    ) -> Result<Vec<Resealed>, E> {
        let (txn, _guard) = self.begin().await?;
        let mut replacements = Vec::new();
        for key in TokenRepo::keys(&txn).await? {
            if let Reseal::Replace {
                private_der,
                action,
            } = reseal(&key)?
            {
                replacements.push((key, private_der, action));
            }
        }
        let mut resealed = Vec::new();
        for (key, private_der, action) in replacements {
            if TokenRepo::replace_private_key(&txn, &key.kid, &key.private_der, &private_der)
                .await?
            {
                AuditRepo::record(
                    &txn,
                    &AuditRepo::entry(actor.0, action, AuditTarget::SigningKey(&key.kid)),
                )
                .await?;
                resealed.push(Resealed {
                    kid: key.kid,
                    action,
                });
            }
        }
        txn.commit().await.map_err(StorageError::from)?;
        Ok(resealed)
    }

    /// Records a change made to a key file (the keys themselves live in the
    /// file, written atomically before this is called).
    pub async fn record_key_file_change(
        &self,
        actor: AuditActor<'_>,
        action: &str,
        kid: &str,
    ) -> Result<(), StorageError> {
        let (txn, _guard) = self.begin().await?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(actor.0, action, AuditTarget::SigningKey(kid)),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }
}
