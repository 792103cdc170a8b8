//! Token records and signing keys.

use cityhub_domain::{CityId, Role};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use zeroize::Zeroizing;

use crate::decode::Row;
use crate::entities::{signing_key, token};
use crate::error::StorageError;
use crate::time::now_micros;

/// An issued token's record (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's `jti`.
    pub id: String,
    /// `city:<slug>` or `secretariat`.
    pub subject: String,
    /// Role.
    pub role: Role,
    /// The city, for city tokens.
    pub city_id: Option<CityId>,
    /// Free label.
    pub label: Option<String>,
    /// Signing key id.
    pub kid: String,
    /// Issued at.
    pub issued_at: chrono::DateTime<chrono::Utc>,
    /// Expires at.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Revoked at.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A signing key as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Key id (`kid`).
    pub kid: String,
    /// The Ed25519 private key as stored: its PKCS#8 DER, or, with a
    /// key-encryption key, that DER sealed under it
    /// (`cityhub_auth::at_rest`; `KeyStore` seals and opens).
    pub private_der: Zeroizing<Vec<u8>>,
    /// Base64url public key (JWK `x`).
    pub public_x: String,
    /// Created at (micros).
    pub created_at: i64,
    /// Retired at (micros): its tokens no longer verify.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("private_der", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// Repository of tokens and keys.
pub struct TokenRepo;

fn to_token(m: token::Model) -> Result<TokenRecord, StorageError> {
    let row = Row::new("tokens", &m.id);
    Ok(TokenRecord {
        role: row.enumeration("role", &m.role, Role::parse)?,
        issued_at: row.micros("issued_at", m.issued_at)?,
        expires_at: row.micros("expires_at", m.expires_at)?,
        revoked_at: row.micros_opt("revoked_at", m.revoked_at)?,
        id: m.id,
        subject: m.subject,
        city_id: m.city_id.map(CityId),
        label: m.label,
        kid: m.kid,
    })
}

impl TokenRepo {
    /// Records an issued token.
    pub async fn insert(
        db: &impl ConnectionTrait,
        record: &TokenRecord,
    ) -> Result<(), StorageError> {
        token::ActiveModel {
            id: Set(record.id.clone()),
            subject: Set(record.subject.clone()),
            role: Set(record.role.as_str().to_owned()),
            city_id: Set(record.city_id.map(CityId::get)),
            label: Set(record.label.clone()),
            kid: Set(record.kid.clone()),
            issued_at: Set(record.issued_at.timestamp_micros()),
            expires_at: Set(record.expires_at.timestamp_micros()),
            revoked_at: Set(None),
        }
        .insert(db)
        .await?;
        Ok(())
    }

    /// The record of token `id`.
    pub async fn find(
        db: &impl ConnectionTrait,
        id: &str,
    ) -> Result<Option<TokenRecord>, StorageError> {
        token::Entity::find_by_id(id.to_owned())
            .one(db)
            .await?
            .map(to_token)
            .transpose()
    }

    /// Every record, newest first.
    pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<TokenRecord>, StorageError> {
        token::Entity::find()
            .order_by_desc(token::Column::IssuedAt)
            .all(db)
            .await?
            .into_iter()
            .map(to_token)
            .collect()
    }

    /// Revokes token `id`; false if there is no such token.
    pub async fn revoke(db: &impl ConnectionTrait, id: &str) -> Result<bool, StorageError> {
        let result = token::Entity::update_many()
            .col_expr(token::Column::RevokedAt, Expr::value(now_micros()))
            .filter(token::Column::Id.eq(id))
            .filter(token::Column::RevokedAt.is_null())
            .exec(db)
            .await?;
        if result.rows_affected == 1 {
            return Ok(true);
        }
        Ok(Self::find(db, id).await?.is_some())
    }

    /// Every signing key, oldest first.
    pub async fn keys(db: &impl ConnectionTrait) -> Result<Vec<KeyRecord>, StorageError> {
        Ok(signing_key::Entity::find()
            .order_by_asc(signing_key::Column::CreatedAt)
            .all(db)
            .await?
            .into_iter()
            .map(|m| KeyRecord {
                kid: m.kid,
                private_der: Zeroizing::new(m.private_der),
                public_x: m.public_x,
                created_at: m.created_at,
                retired_at: m.retired_at,
            })
            .collect())
    }

    /// Stores a new signing key.
    pub async fn insert_key(
        db: &impl ConnectionTrait,
        key: &KeyRecord,
    ) -> Result<(), StorageError> {
        signing_key::ActiveModel {
            kid: Set(key.kid.clone()),
            private_der: Set(key.private_der.to_vec()),
            public_x: Set(key.public_x.clone()),
            created_at: Set(key.created_at),
            retired_at: Set(key.retired_at),
        }
        .insert(db)
        .await?;
        Ok(())
    }

    /// Replaces the stored private key of `kid` (sealing it, or sealing it
    /// anew under another key-encryption key) if it is still `expected`:
    /// false if another process changed or removed it meanwhile.
    pub async fn replace_private_key(
        db: &impl ConnectionTrait,
        kid: &str,
        expected: &[u8],
        replacement: &[u8],
    ) -> Result<bool, StorageError> {
        let result = signing_key::Entity::update_many()
            .col_expr(
                signing_key::Column::PrivateDer,
                Expr::value(replacement.to_vec()),
            )
            .filter(signing_key::Column::Kid.eq(kid))
            .filter(signing_key::Column::PrivateDer.eq(expected.to_vec()))
            .exec(db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Retires key `kid`: tokens it signed stop verifying.
    pub async fn retire_key(db: &impl ConnectionTrait, kid: &str) -> Result<bool, StorageError> {
        let result = signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, Expr::value(now_micros()))
            .filter(signing_key::Column::Kid.eq(kid))
            .filter(signing_key::Column::RetiredAt.is_null())
            .exec(db)
            .await?;
        Ok(result.rows_affected == 1)
    }
}
