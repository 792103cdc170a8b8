//! Authentication: from an `Authorization` value to a [`Principal`].
//! Signature and claims are checked by the keyring; the token's record
//! (revoked? city still there?) is read from the database and cached per
//! instance for `auth.revocation_cache_secs` (2 s by default), so a
//! revocation made on any instance is refused everywhere within that time.
//! A revocation made on this instance also clears its cache entry at once.
//! Signing keys are re-read as often, so a key rotated or retired by another
//! process (`cityhub keys …`) is honoured within the same time. The keys
//! themselves are stored behind [`crate::KeyStore`].

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::{AuditActor, CredentialService, FirstKey, KeyError, KeyStore};
use chrono::{DateTime, Utc};
use cityhub_auth::{AuthConfig, AuthError, Issued, Keyring};
use cityhub_domain::{Actor, City, Role};
use cityhub_storage::repo::tokens::{TokenRecord, TokenRepo};
use cityhub_storage::{CityRepo, Db, StorageError};
use sha2::{Digest, Sha256};

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The acting city or the secretariat.
    pub actor: Actor,
    /// The role claim.
    pub role: Role,
    /// The token's id (`jti`).
    pub token_id: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

/// The request's own data, set by the transport before execution.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    /// The verified token's principal; `None` when anonymous.
    pub principal: Option<Principal>,
}

impl Principal {
    /// Whether a token's claims speak for this principal (same subject,
    /// role and expiry as the token it was built from).
    fn matches(&self, claims: &cityhub_auth::Claims) -> bool {
        let subject = match &self.actor {
            Actor::City { slug, .. } => claims.city_slug() == Some(slug.as_str()),
            Actor::Secretariat => claims.sub == "secretariat",
            Actor::Anonymous => false,
        };
        subject && claims.role() == Some(self.role) && claims.exp == self.expires_at.timestamp()
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// The token is not valid (bad, expired, revoked, unknown key…).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The database could not be asked about the token.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The most token records cached per instance.
const CACHE_CAPACITY: u64 = 50_000;

/// How long a verified signature is remembered (a hit is checked against
/// the clock and the keys anyway; this bounds the memory of tokens no
/// longer used).
const VERIFIED_FOR: Duration = Duration::from_secs(600);

/// At most one key reload per this interval is caused by tokens naming an
/// unknown `kid` (anyone can send those; each reload reads every key).
const UNKNOWN_KID_RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Verifies tokens and issues new ones.
pub struct Authenticator {
    db: Db,
    config: AuthConfig,
    /// Where the signing keys are stored (database or key file).
    keys: KeyStore,
    keyring: RwLock<Arc<Keyring>>,
    /// When the keys were last re-read to see rotations and retirements.
    last_refresh: Mutex<Instant>,
    /// When an unknown `kid` last made the keys be re-read; held while
    /// such a reload runs, so concurrent ones coalesce.
    last_unknown_kid_reload: tokio::sync::Mutex<Instant>,
    /// Audited token writes.
    credentials: CredentialService,
    /// What each token's record says, by `jti`, for `revocation_cache_secs`.
    cache: moka::sync::Cache<String, Option<Principal>>,
    /// Tokens whose signature was verified, by SHA-256 of the token (the
    /// token itself is not kept), with their claims and key: checking an
    /// Ed25519 signature was about 5 % of the hub's CPU on a dashboard
    /// query. A hit is still checked against the keys held now (a retired
    /// key's tokens are refused from the next key reload) and the clock.
    /// Only tokens the hub signed get in, so no client can fill it.
    verified: moka::sync::Cache<[u8; 32], Arc<(cityhub_auth::Claims, String)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Claims the next key reload if `last` is `interval` old.
fn claim(last: &Mutex<Instant>, interval: Duration) -> bool {
    match last.lock() {
        Ok(mut last) if last.elapsed() >= interval => {
            *last = Instant::now();
            true
        }
        _ => false,
    }
}

impl Authenticator {
    /// Loads the keys (creating the first one if needed; with a
    /// key-encryption key, sealing those stored in plaintext).
    pub async fn new(db: Db, config: AuthConfig) -> Result<Self, KeyError> {
        let keys = KeyStore::for_config(db.clone(), &config)?;
        let keyring = keys.keyring(&config, FirstKey::Create).await?;
        Ok(Self {
            credentials: CredentialService::new(db.clone()),
            keys,
            db,
            keyring: RwLock::new(Arc::new(keyring)),
            last_refresh: Mutex::new(Instant::now()),
            last_unknown_kid_reload: tokio::sync::Mutex::new(
                Instant::now()
                    .checked_sub(UNKNOWN_KID_RELOAD_EVERY)
                    .unwrap_or_else(Instant::now),
            ),
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(Duration::from_secs(config.revocation_cache_secs))
                .build(),
            verified: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(VERIFIED_FOR)
                .build(),
            config,
        })
    }

    /// The token settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn keyring(&self) -> Arc<Keyring> {
        cityhub_domain::sync::read(&self.keyring).clone()
    }

    /// The store the signing keys live in.
    pub fn key_store(&self) -> &KeyStore {
        &self.keys
    }

    /// Re-reads the keys from their store (after a rotation or retirement
    /// made by another process).
    pub async fn reload_keys(&self) -> Result<(), KeyError> {
        let keyring = self.keys.keyring(&self.config, FirstKey::Never).await?;
        *cityhub_domain::sync::write(&self.keyring) = Arc::new(keyring);
        Ok(())
    }

    /// Re-reads the keys for a token naming a `kid` this instance does not
    /// hold. Reloads are at most one per [`UNKNOWN_KID_RELOAD_EVERY`]: a
    /// caller arriving sooner waits for the next slot, and callers that
    /// arrived before a reload started share it instead of starting one.
    /// So a key rotated in by another process verifies its first token
    /// (within a second), and a flood of made-up kids costs one key read
    /// per second.
    async fn reload_for_unknown_kid(&self) -> Result<(), AuthFailure> {
        let arrived = Instant::now();
        let mut last = self.last_unknown_kid_reload.lock().await;
        if *last >= arrived {
            return Ok(());
        }
        let next = *last + UNKNOWN_KID_RELOAD_EVERY;
        if next > Instant::now() {
            tokio::time::sleep_until(next.into()).await;
        }
        let started = Instant::now();
        let result = self.reload_keys().await;
        *last = started;
        result.map_err(|e| match e {
            KeyError::Storage(s) => AuthFailure::Storage(s),
            KeyError::Auth(a) => AuthFailure::Invalid(a.to_string()),
            KeyError::File(f) => {
                tracing::error!(error = %f, "cannot read the key file");
                AuthFailure::Invalid(f.to_string())
            }
            // The message names the key and the KEK's fingerprint, never
            // key material.
            KeyError::AtRest(k) => {
                tracing::error!(error = %k, "cannot open the stored signing keys");
                AuthFailure::Invalid(k.to_string())
            }
        })
    }

    /// The JWKS document.
    pub fn jwks(&self) -> cityhub_auth::JwkSet {
        self.keyring().jwks()
    }

    /// Resolves an `Authorization` value; `None` in, `Ok(None)` out.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<Principal>, AuthFailure> {
        let Some(header) = authorization else {
            return Ok(None);
        };
        let token =
            cityhub_auth::bearer(header).map_err(|e| AuthFailure::Invalid(e.to_string()))?;
        self.verify(token).await.map(Some)
    }

    /// Verifies a bare JWT.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthFailure> {
        // Keys retired (or added) by another process are picked up within
        // the revocation delay; a failed reload keeps the keys already held.
        let refresh = Duration::from_secs(self.config.revocation_cache_secs.max(1));
        if claim(&self.last_refresh, refresh)
            && let Err(e) = self.reload_keys().await
        {
            tracing::warn!(error = %e, "cannot reload the signing keys; keeping the loaded ones");
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self.verified.get(&digest).filter(|known| {
            self.keyring()
                .still_valid(&known.1, &known.0, Utc::now().timestamp())
        });
        let claims = match remembered {
            Some(known) => known.0.clone(),
            None => {
                let (claims, kid) = match self.keyring().verify_keyed(token) {
                    // A key added by another process (`cityhub keys
                    // rotate`) must verify its first token: the keys are
                    // re-read, at most once a second per instance since
                    // anyone can send an unknown `kid`.
                    Err(AuthError::UnknownKey) => {
                        self.reload_for_unknown_kid().await?;
                        self.keyring().verify_keyed(token)
                    }
                    other => other,
                }
                .map_err(|e| AuthFailure::Invalid(e.to_string()))?;
                self.verified
                    .insert(digest, Arc::new((claims.clone(), kid)));
                claims
            }
        };
        if let Some(entry) = self.cache.get(&claims.jti) {
            // The record was checked against the claims of the token that
            // filled the cache; this token must carry the same ones.
            return entry
                .filter(|p| p.matches(&claims))
                .ok_or_else(|| AuthFailure::Invalid("token revoked or unknown".into()));
        }
        // The cache holds what the record says (never a verdict on one
        // token's claims), so a token whose claims do not match its record
        // cannot spoil the entry for the genuine token with the same `jti`.
        let entry = self.principal_of_record(&claims.jti).await?;
        if self.config.revocation_cache_secs > 0 {
            self.cache.insert(claims.jti.clone(), entry.clone());
        }
        entry
            .filter(|p| p.matches(&claims))
            .ok_or_else(|| AuthFailure::Invalid("token revoked or unknown".into()))
    }

    /// Who token `jti`'s record speaks for: none if there is no record, it
    /// is revoked, or (for a city) the city no longer exists. The caller
    /// checks that the token's claims match it ([`Principal::matches`]).
    async fn principal_of_record(&self, jti: &str) -> Result<Option<Principal>, StorageError> {
        let Some(record) = TokenRepo::find(self.db.conn(), jti).await? else {
            return Ok(None);
        };
        if record.revoked_at.is_some() {
            return Ok(None);
        }
        let actor = match record.role {
            Role::Secretariat if record.subject == "secretariat" => Actor::Secretariat,
            Role::Secretariat => return Ok(None),
            Role::City => {
                let Some(city_id) = record.city_id else {
                    return Ok(None);
                };
                match CityRepo::find_by_id(self.db.conn(), city_id).await? {
                    Some(city) if record.subject == format!("city:{}", city.slug) => Actor::City {
                        id: city.id,
                        slug: city.slug,
                    },
                    _ => return Ok(None),
                }
            }
        };
        Ok(Some(Principal {
            actor,
            role: record.role,
            token_id: record.id,
            expires_at: record.expires_at,
        }))
    }

    /// Issues and records a token: for `city` with role CITY, or for the
    /// secretariat. `ttl_secs` defaults to the configured TTL and may not
    /// exceed the maximum.
    pub async fn issue(
        &self,
        actor: AuditActor<'_>,
        city: Option<&City>,
        role: Role,
        ttl_secs: Option<u64>,
        label: Option<String>,
    ) -> Result<(Issued, TokenRecord), KeyError> {
        let ttl = ttl_secs
            .unwrap_or(self.config.default_ttl_secs)
            .min(self.config.max_ttl_secs);
        let subject = match (role, city) {
            (Role::City, Some(c)) => format!("city:{}", c.slug),
            _ => "secretariat".to_owned(),
        };
        let now = Utc::now();
        let issued = self.keyring().issue(&subject, role, ttl, now.timestamp())?;
        let record = TokenRecord {
            id: issued.claims.jti.clone(),
            subject,
            role,
            city_id: city.map(|c| c.id),
            label,
            kid: issued.kid.clone(),
            issued_at: DateTime::from_timestamp(issued.claims.iat, 0).unwrap_or(now),
            expires_at: DateTime::from_timestamp(issued.claims.exp, 0).unwrap_or(now),
            revoked_at: None,
        };
        self.credentials.record_token(actor, &record).await?;
        Ok((issued, record))
    }

    /// Revokes a token, audited as `actor`; false if it does not exist.
    pub async fn revoke(&self, actor: AuditActor<'_>, id: &str) -> Result<bool, StorageError> {
        let found = self.credentials.revoke_token(actor, id).await?;
        self.cache.invalidate(id);
        Ok(found)
    }
}
