//! cityhub auth: Ed25519 signing keys, and JWTs issued and verified
//! strictly (algorithm pinned, issuer, audience, time window, known key).
//!
//! This crate holds no state of its own: keys come in as [`KeyMaterial`]
//! (stored by the caller), and token records (revocation) are checked by
//! the caller after [`Keyring::verify`] succeeds.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cityhub_domain::Role;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub mod at_rest;
pub mod keyfile;

pub use jsonwebtoken::jwk::JwkSet;

/// Token settings (`[auth]` in `cityhub.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` of every token.
    pub issuer: String,
    /// The `aud` of every token.
    pub audience: String,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// Lifetime of a token when none is asked for, in seconds.
    pub default_ttl_secs: u64,
    /// Longest lifetime a token may be issued with, in seconds.
    pub max_ttl_secs: u64,
    /// Whether anonymous clients may read published data.
    pub public_read: bool,
    /// Seconds a token's record (revocation) is cached per instance.
    pub revocation_cache_secs: u64,
    /// Keep signing keys in this file (mode 0600) instead of the database.
    /// Several instances then need the same file.
    pub key_file: Option<String>,
    /// A file holding a 256-bit key-encryption key (64 hex digits or
    /// base64): private keys stored in the database are then sealed under
    /// it ([`at_rest`]), so a copy of the database alone cannot sign a
    /// token. Applies to the database only, not to `key_file`.
    pub key_encryption_key_file: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "cityhub".into(),
            audience: "cityhub".into(),
            leeway_secs: 5,
            default_ttl_secs: 30 * 24 * 3600,
            max_ttl_secs: 400 * 24 * 3600,
            public_read: true,
            revocation_cache_secs: 2,
            key_file: None,
            key_encryption_key_file: None,
        }
    }
}

/// The claims of a cityhub token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// `city:<slug>` or `secretariat`.
    pub sub: String,
    /// `CITY` or `SECRETARIAT`.
    pub role: String,
    /// Token id.
    pub jti: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Not before (seconds).
    pub nbf: i64,
    /// Expires (seconds).
    pub exp: i64,
}

impl Claims {
    /// The role claim, parsed.
    pub fn role(&self) -> Option<Role> {
        Role::parse(&self.role)
    }

    /// The city slug of a city token.
    pub fn city_slug(&self) -> Option<&str> {
        self.sub.strip_prefix("city:")
    }
}

/// Why a token was refused. Clients only ever see "invalid token" with the
/// `UNAUTHENTICATED` code; the variant is for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not `Bearer <jwt>`, or not a JWT at all.
    #[error("malformed token")]
    Malformed,
    /// Signed with another algorithm than EdDSA (including `none`).
    #[error("wrong algorithm")]
    WrongAlgorithm,
    /// No key with this `kid`, or the key is retired.
    #[error("unknown or retired key")]
    UnknownKey,
    /// Signature, issuer, audience or time window failed.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Expired.
    #[error("token expired")]
    Expired,
    /// Signing failed.
    #[error("signing failed")]
    Signing,
    /// A stored key does not decode.
    #[error("stored key {0} is unreadable")]
    BadKey(String),
}

/// A signing key as stored: PKCS#8 DER private key and JWK `x`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// Key id.
    pub kid: String,
    /// PKCS#8 v2 DER of the Ed25519 private key. Never logged; wiped from
    /// memory when dropped.
    pub private_der: Zeroizing<Vec<u8>>,
    /// Base64url raw public key.
    pub public_x: String,
    /// Retired keys verify nothing.
    pub retired: bool,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("private_der", &"<redacted>")
            .field("retired", &self.retired)
            .finish()
    }
}

impl KeyMaterial {
    /// Generates a fresh Ed25519 key from the operating system's randomness.
    pub fn generate() -> Result<Self, AuthError> {
        // `SigningKey` and the PKCS#8 document wipe themselves on drop.
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let der = key.to_pkcs8_der().map_err(|_| AuthError::Signing)?;
        let public = key.verifying_key().to_bytes();
        Ok(Self {
            kid: uuid::Uuid::now_v7().simple().to_string(),
            private_der: Zeroizing::new(der.as_bytes().to_vec()),
            public_x: URL_SAFE_NO_PAD.encode(public),
            retired: false,
        })
    }
}

struct LoadedKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_x: String,
    retired: bool,
}

/// The keys the hub signs and verifies with; the newest unretired key signs.
pub struct Keyring {
    config: AuthConfig,
    keys: HashMap<String, LoadedKey>,
    signing_kid: Option<String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("signing_kid", &self.signing_kid)
            .finish()
    }
}

/// A token just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The JWT. Shown once to whoever asked for it; never logged.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
    /// The key that signed it.
    pub kid: String,
}

impl Keyring {
    /// Loads keys, oldest first; the last unretired one signs.
    pub fn new(
        config: AuthConfig,
        keys: impl IntoIterator<Item = KeyMaterial>,
    ) -> Result<Self, AuthError> {
        let mut loaded = HashMap::new();
        let mut signing_kid = None;
        for key in keys {
            let signing = SigningKey::from_pkcs8_der(&key.private_der)
                .map_err(|_| AuthError::BadKey(key.kid.clone()))?;
            let public = signing.verifying_key().to_bytes();
            if URL_SAFE_NO_PAD.encode(public) != key.public_x {
                return Err(AuthError::BadKey(key.kid));
            }
            if !key.retired {
                signing_kid = Some(key.kid.clone());
            }
            loaded.insert(
                key.kid.clone(),
                LoadedKey {
                    encoding: EncodingKey::from_ed_der(&key.private_der),
                    decoding: DecodingKey::from_ed_der(&public),
                    public_x: key.public_x,
                    retired: key.retired,
                },
            );
        }
        Ok(Self {
            config,
            keys: loaded,
            signing_kid,
        })
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The key id new tokens are signed with.
    pub fn signing_kid(&self) -> Option<&str> {
        self.signing_kid.as_deref()
    }

    /// Issues a token for `subject` with `role`, valid `ttl_secs` from now.
    pub fn issue(
        &self,
        subject: &str,
        role: Role,
        ttl_secs: u64,
        now: i64,
    ) -> Result<Issued, AuthError> {
        let kid = self.signing_kid.clone().ok_or(AuthError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(AuthError::UnknownKey)?;
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: subject.to_owned(),
            role: role.as_str().to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX)),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|_| AuthError::Signing)?;
        Ok(Issued { token, claims, kid })
    }

    /// Verifies a token strictly: EdDSA only, a known unretired `kid`, the
    /// signature, `iss`, `aud`, `exp` and `nbf` (with the configured
    /// leeway), and every claim present.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        self.verify_keyed(token).map(|(claims, _)| claims)
    }

    /// [`Self::verify`], also naming the key that signed the token.
    pub fn verify_keyed(&self, token: &str) -> Result<(Claims, String), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self
            .keys
            .get(&kid)
            .filter(|k| !k.retired)
            .ok_or(AuthError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]);
        match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
            Ok(data) => Ok((data.claims, kid)),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(AuthError::Expired),
                jsonwebtoken::errors::ErrorKind::Base64(_)
                | jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::Utf8(_)
                | jsonwebtoken::errors::ErrorKind::InvalidToken => Err(AuthError::Malformed),
                other => Err(AuthError::Invalid(format!("{other:?}"))),
            },
        }
    }

    /// Whether claims verified earlier with key `kid` still hold at `now`
    /// (seconds): the key is held and not retired, and the token is
    /// neither expired nor not yet valid, with the configured leeway (as
    /// [`Self::verify`] judges them). The signature, issuer and audience
    /// do not change; what time and key retirement change is checked here.
    pub fn still_valid(&self, kid: &str, claims: &Claims, now: i64) -> bool {
        let leeway = i64::try_from(self.config.leeway_secs).unwrap_or(i64::MAX);
        self.keys.get(kid).is_some_and(|k| !k.retired)
            && claims.exp >= now.saturating_sub(leeway)
            && claims.nbf <= now.saturating_add(leeway)
    }

    /// The JWKS document: every key that still verifies, by `kid`.
    pub fn jwks(&self) -> JwkSet {
        let mut keys: Vec<(&String, &LoadedKey)> =
            self.keys.iter().filter(|(_, k)| !k.retired).collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        JwkSet {
            keys: keys
                .into_iter()
                .map(|(kid, k)| Jwk {
                    common: CommonParameters {
                        public_key_use: Some(PublicKeyUse::Signature),
                        key_algorithm: Some(KeyAlgorithm::EdDSA),
                        key_id: Some(kid.clone()),
                        ..CommonParameters::default()
                    },
                    algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: EllipticCurve::Ed25519,
                        x: k.public_x.clone(),
                    }),
                })
                .collect(),
        }
    }
}

/// Extracts the JWT from an `Authorization` header value: `Bearer <jwt>`
/// (scheme case-insensitive).
pub fn bearer(header: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 4096 {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Parses a TTL such as `90s`, `15m`, `12h`, `30d` (or `1d 12h`) into
/// whole seconds; a bare number, zero or less than a second is refused.
pub fn parse_ttl(text: &str) -> Option<u64> {
    humantime::parse_duration(text.trim())
        .ok()
        .map(|d| d.as_secs())
        .filter(|s| *s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> (Keyring, KeyMaterial) {
        let key = KeyMaterial::generate().expect("key");
        (
            Keyring::new(AuthConfig::default(), [key.clone()]).expect("ring"),
            key,
        )
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn issues_and_verifies() {
        let (ring, _) = ring();
        let issued = ring
            .issue("city:lyon", Role::City, 60, now())
            .expect("issue");
        let claims = ring.verify(&issued.token).expect("verify");
        assert_eq!(claims.sub, "city:lyon");
        assert_eq!(claims.city_slug(), Some("lyon"));
        assert_eq!(claims.role(), Some(Role::City));
    }

    #[test]
    fn refuses_expired_not_yet_valid_and_foreign_keys() {
        let (ring, _) = ring();
        let old = ring
            .issue("secretariat", Role::Secretariat, 60, now() - 3600)
            .expect("issue");
        assert_eq!(ring.verify(&old.token), Err(AuthError::Expired));
        let future = ring
            .issue("secretariat", Role::Secretariat, 60, now() + 3600)
            .expect("issue");
        assert!(matches!(
            ring.verify(&future.token),
            Err(AuthError::Invalid(_))
        ));
        let (other, _) = self::ring();
        let foreign = other
            .issue("secretariat", Role::Secretariat, 60, now())
            .expect("issue");
        assert_eq!(ring.verify(&foreign.token), Err(AuthError::UnknownKey));
    }

    #[test]
    fn retired_keys_verify_nothing_and_rotation_keeps_old_tokens() {
        let (ring, first) = ring();
        let old = ring
            .issue("secretariat", Role::Secretariat, 60, now())
            .expect("issue");
        let second = KeyMaterial::generate().expect("key");
        let rotated =
            Keyring::new(AuthConfig::default(), [first.clone(), second.clone()]).expect("ring");
        assert_eq!(rotated.signing_kid(), Some(second.kid.as_str()));
        assert!(rotated.verify(&old.token).is_ok());
        let retired = Keyring::new(
            AuthConfig::default(),
            [
                KeyMaterial {
                    retired: true,
                    ..first
                },
                second,
            ],
        )
        .expect("ring");
        assert_eq!(retired.verify(&old.token), Err(AuthError::UnknownKey));
        let jwks = serde_json::to_value(retired.jwks()).expect("json");
        let keys = jwks["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[0],
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "kid": retired.signing_kid().expect("signing"),
                "x": keys[0]["x"],
            })
        );
    }

    #[test]
    fn claims_verified_earlier_hold_as_long_as_a_new_verification_would() {
        let (ring, first) = ring();
        let t = now();
        let issued = ring.issue("city:lyon", Role::City, 60, t).expect("issue");
        let (claims, kid) = ring.verify_keyed(&issued.token).expect("verify");
        assert_eq!(kid, first.kid);
        let leeway = i64::try_from(AuthConfig::default().leeway_secs).expect("small");
        assert!(ring.still_valid(&kid, &claims, t));
        // Expired past the leeway, and not valid yet before it, as
        // `verify` judges them.
        assert!(ring.still_valid(&kid, &claims, t + 60 + leeway));
        assert!(!ring.still_valid(&kid, &claims, t + 61 + leeway));
        assert!(ring.still_valid(&kid, &claims, t - leeway));
        assert!(!ring.still_valid(&kid, &claims, t - leeway - 1));
        // A retired or unknown key holds nothing.
        let retired = Keyring::new(
            AuthConfig::default(),
            [
                KeyMaterial {
                    retired: true,
                    ..first
                },
                KeyMaterial::generate().expect("key"),
            ],
        )
        .expect("ring");
        assert!(!retired.still_valid(&kid, &claims, t));
        assert!(!ring.still_valid("another", &claims, t));
    }

    #[test]
    fn parses_bearer_and_ttl() {
        assert_eq!(bearer("Bearer abc"), Ok("abc"));
        assert_eq!(bearer("bearer  abc "), Ok("abc"));
        assert_eq!(bearer("Basic abc"), Err(AuthError::Malformed));
        assert_eq!(bearer("Bearer"), Err(AuthError::Malformed));
        assert_eq!(parse_ttl("90s"), Some(90));
        assert_eq!(parse_ttl("30d"), Some(2_592_000));
        assert_eq!(parse_ttl("12h"), Some(43_200));
        assert_eq!(parse_ttl("0s"), None);
        assert_eq!(parse_ttl("10"), None);
        assert_eq!(parse_ttl("x"), None);
        assert_eq!(parse_ttl("1d 12h"), Some(129_600));
        assert_eq!(parse_ttl("500ms"), None);
    }
}
