//! City tokens over HTTP: who a token is, every way a token can be bad
//! (each a 401 with `UNAUTHENTICATED`, never served as anonymous),
//! revocation on every instance, key rotation and retirement, the JWKS, and
//! the `cityhub token` command line.

use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use cityhub_storage::repo::tokens::{TokenRecord, TokenRepo};
use jwt_simple::prelude::{
    Audiences, Ed25519KeyPair, Ed25519PublicKey, EdDSAKeyPairLike, EdDSAPublicKeyLike, HS256Key,
    JWTClaims, MACLike, UnixTimeStamp, VerificationOptions,
};
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};

const VIEWER: &str = "{ viewer { role city { slug } tokenId expiresAt } }";
const PLAIN: &str = "{ network { name } }";
const MUTATION: &str =
    "mutation { publishActivity(input: { kind: WORKSHOP, title: \"Should not exist\" }) { id } }";

/// A generous deadline for a revocation or a key change to reach an
/// instance (the contract is "within `auth.revocation_cache_secs`"; how
/// fast is not asserted here: on 2 shared cores a tight bound is flaky).
const PROPAGATION: Duration = Duration::from_secs(30);

/// POSTs `query` with a raw `Authorization` value (or none).
async fn with_authorization(
    hub: &TestHub,
    authorization: Option<&str>,
    query: &str,
) -> (u16, Value) {
    let mut request = hub.client.post(hub.url()).json(&json!({ "query": query }));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Whether this `Authorization` value is refused the way the contract says:
/// 401, `UNAUTHENTICATED`, no data. Returns the problem otherwise.
async fn refusal_problem(hub: &TestHub, authorization: &str) -> Option<String> {
    for query in [PLAIN, VIEWER, MUTATION] {
        let (status, body) = with_authorization(hub, Some(authorization), query).await;
        let code = &body["errors"][0]["extensions"]["code"];
        if status != 401 || code != "UNAUTHENTICATED" || !body["data"].is_null() {
            return Some(format!("{query}: {status} {body}"));
        }
    }
    None
}

/// Asserts the token works: returns its `viewer`.
async fn viewer(hub: &TestHub, token: &str) -> Value {
    hub.ok(VIEWER, json!({}), Some(token)).await["viewer"].clone()
}

/// Polls until `token` is refused with 401; panics after `PROPAGATION`.
/// Polling is the only way: the change reaches other instances when their
/// cached record expires, and nothing announces that.
async fn refused_within(hub: &TestHub, token: &str, what: &str) {
    let started = Instant::now();
    loop {
        let (status, body) = with_authorization(hub, Some(&format!("Bearer {token}")), PLAIN).await;
        if status == 401 {
            assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
            return;
        }
        assert_eq!(status, 200, "{what}: {body}");
        assert!(
            started.elapsed() < PROPAGATION,
            "{what}: still accepted after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issues a token the way `cityhub token issue` does.
async fn issue(hub: &TestHub, city: Option<&str>, ttl: u64) -> (String, TokenRecord) {
    cityhub::ops::issue_token(
        &hub.db,
        &hub.config,
        city,
        Some(ttl),
        Some("tokens test".into()),
    )
    .await
    .expect("issue token")
}

/// A JWT's header and claims, decoded without verification.
fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// The claims a crafted token carries; each test spoils one.
#[derive(Debug, Clone)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    role: String,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: Option<i64>,
}

impl Claims {
    /// The claims of a recorded token, valid for an hour from now.
    fn of(record: &TokenRecord, hub: &TestHub) -> Self {
        let t = now();
        Self {
            iss: hub.config.auth.issuer.clone(),
            aud: hub.config.auth.audience.clone(),
            sub: record.subject.clone(),
            role: record.role.as_str().to_owned(),
            jti: record.id.clone(),
            iat: t,
            nbf: t,
            exp: Some(t + 3600),
        }
    }

    fn jwt(&self) -> JWTClaims<Value> {
        let at = |secs: i64| UnixTimeStamp::from_secs(u64::try_from(secs).expect("time"));
        JWTClaims {
            issued_at: Some(at(self.iat)),
            expires_at: self.exp.map(at),
            invalid_before: Some(at(self.nbf)),
            issuer: Some(self.iss.clone()),
            subject: Some(self.sub.clone()),
            audiences: Some(Audiences::AsString(self.aud.clone())),
            jwt_id: Some(self.jti.clone()),
            nonce: None,
            custom: json!({ "role": self.role }),
        }
    }

    fn json(&self) -> Value {
        json!({
            "iss": self.iss, "aud": self.aud, "sub": self.sub, "role": self.role,
            "jti": self.jti, "iat": self.iat, "nbf": self.nbf, "exp": self.exp,
        })
    }
}

/// A hub signing key, read from the `signing_keys` table.
struct HubKey {
    kid: String,
    public_x: String,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

/// The Ed25519 seed inside a PKCS#8 (v1 or v2) DER: the OCTET STRING
/// wrapped in the private-key OCTET STRING (`04 22 04 20 <32 bytes>`).
fn seed_of(der: &[u8]) -> [u8; 32] {
    let at = der
        .windows(4)
        .position(|w| w == [0x04, 0x22, 0x04, 0x20])
        .expect("an Ed25519 PKCS#8 key");
    der[at + 4..at + 36].try_into().expect("32 bytes")
}

fn pair_from_seed(seed: [u8; 32]) -> Ed25519KeyPair {
    // PKCS#8 v1 for Ed25519 is this fixed prefix and the seed.
    let mut v1 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    v1.extend_from_slice(&seed);
    Ed25519KeyPair::from_der(&v1).expect("key pair")
}

/// The hub's keys that are not retired, oldest first.
async fn hub_keys(hub: &TestHub) -> Vec<HubKey> {
    TokenRepo::keys(hub.db.conn())
        .await
        .expect("keys")
        .into_iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| {
            let seed = seed_of(&k.private_der);
            let pair = pair_from_seed(seed).with_key_id(&k.kid);
            HubKey {
                kid: k.kid,
                public_x: k.public_x,
                seed,
                pair,
            }
        })
        .collect()
}

/// The key the hub signs with now (the newest unretired one).
async fn signing_key(hub: &TestHub) -> HubKey {
    hub_keys(hub).await.pop().expect("a signing key")
}

fn sign(pair: &Ed25519KeyPair, claims: &Claims) -> String {
    pair.sign(claims.jwt()).expect("sign")
}

/// A JWT assembled by hand, with any header and signature.
fn assemble(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fn parse_time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a DateTime"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

// One hub for verification; rotation and retirement come last, as
// retiring the first key ends every token issued before.
// One story per test, each on its own hub: a failure never hides the rest.
both_backends!(
    viewer_answers_who_the_token_is,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        viewer_answers_who_the_token_is(&hub).await;
        hub.stop().await;
    }
);

both_backends!(
    every_bad_credential_is_a_401,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        every_bad_credential_is_a_401(&hub).await;
        hub.stop().await;
    }
);

both_backends!(jwks_verifies_hub_tokens, |backend: Backend| async move {
    let hub = TestHub::start(backend).await;
    jwks_verifies_hub_tokens(&hub).await;
    hub.stop().await;
});

both_backends!(
    rotated_keys_verify_and_retired_keys_do_not,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        rotated_keys_verify_and_retired_keys_do_not(&hub).await;
        hub.stop().await;
    }
);

both_backends!(
    revoked_tokens_stop_working_on_every_instance,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        revoked_tokens_stop_working_on_every_instance(&hub).await;
        hub.stop().await;
    }
);

both_backends!(
    cli_issues_lists_and_revokes_tokens,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        cli_issues_lists_and_revokes_tokens(&hub).await;
        hub.stop().await;
    }
);

/// `viewer` answers who the token is; `issueToken` records what it issues.
async fn viewer_answers_who_the_token_is(hub: &TestHub) {
    let (lyon, record) = issue(hub, Some("lyon"), 3600).await;
    let v = viewer(hub, &lyon).await;
    assert_eq!(v["role"], "CITY");
    assert_eq!(v["city"]["slug"], "lyon");
    assert_eq!(v["tokenId"], record.id.as_str());
    assert_eq!(parse_time(&v["expiresAt"]), record.expires_at);
    let claims = decode_part(&lyon, 1);
    assert_eq!(claims["sub"], "city:lyon");
    assert_eq!(claims["role"], "CITY");
    assert_eq!(claims["jti"], record.id.as_str());
    assert_eq!(claims["exp"].as_i64(), Some(record.expires_at.timestamp()));
    assert_eq!(decode_part(&lyon, 0)["alg"], "EdDSA");

    let (secretariat, record) = issue(hub, None, 600).await;
    let v = viewer(hub, &secretariat).await;
    assert_eq!(v["role"], "SECRETARIAT");
    assert!(v["city"].is_null(), "{v}");
    assert_eq!(v["tokenId"], record.id.as_str());

    let (status, body) = with_authorization(hub, None, VIEWER).await;
    assert_eq!(status, 200);
    assert!(
        body["data"].is_object() && body["data"]["viewer"].is_null(),
        "{body}"
    );

    // A token issued over GraphQL answers the same way, with its TTL.
    let issued = hub
        .ok(
            "mutation { issueToken(city: \"seoul\", role: CITY, ttlSeconds: 120, label: \"seoul site\") { id token expiresAt } }",
            json!({}),
            Some(&secretariat),
        )
        .await["issueToken"]
        .clone();
    let token = issued["token"].as_str().expect("token");
    let v = viewer(hub, token).await;
    assert_eq!(v["city"]["slug"], "seoul");
    assert_eq!(v["tokenId"], issued["id"]);
    assert_eq!(v["expiresAt"], issued["expiresAt"]);
    let ttl = (parse_time(&issued["expiresAt"]) - Utc::now()).num_seconds();
    assert!((100..=120).contains(&ttl), "ttl {ttl}");
    let listed = hub
        .ok(
            "{ tokens { id subject role label revokedAt } }",
            json!({}),
            Some(&secretariat),
        )
        .await;
    let entry = listed["tokens"]
        .as_array()
        .and_then(|t| t.iter().find(|x| x["id"] == issued["id"]).cloned())
        .expect("listed");
    assert_eq!(
        entry,
        json!({ "id": issued["id"], "subject": "city:seoul", "role": "CITY", "label": "seoul site", "revokedAt": null })
    );
    // Bad issue requests name their argument.
    for (args, field) in [
        ("city: \"atlantis\", role: CITY", "city"),
        ("role: CITY", "city"),
        ("city: \"lyon\", role: SECRETARIAT", "city"),
        ("city: \"lyon\", role: CITY, ttlSeconds: 0", "ttlSeconds"),
    ] {
        let err = hub
            .fails(
                &format!("mutation {{ issueToken({args}) {{ id }} }}"),
                json!({}),
                Some(&secretariat),
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(err["extensions"]["field"], field, "{args}");
    }
}

/// Every defect of a credential is a 401 `UNAUTHENTICATED`, on any operation.
async fn every_bad_credential_is_a_401(hub: &TestHub) {
    let (lyon, record) = issue(hub, Some("lyon"), 3600).await;
    let key = signing_key(hub).await;
    assert_eq!(decode_part(&lyon, 0)["kid"], key.kid.as_str());
    let good = Claims::of(&record, hub);

    // The control: a token crafted here with the hub's key and the right
    // claims works, so each refusal below is about its one defect.
    let crafted = sign(&key.pair, &good);
    assert_eq!(viewer(hub, &crafted).await["tokenId"], record.id.as_str());

    let spoiled = |f: &dyn Fn(&mut Claims)| {
        let mut c = good.clone();
        f(&mut c);
        sign(&key.pair, &c)
    };
    let (head, payload, signature) = {
        let mut parts = lyon.split('.');
        (
            parts.next().expect("header").to_owned(),
            parts.next().expect("payload").to_owned(),
            parts.next().expect("signature").to_owned(),
        )
    };
    let other_key = Ed25519KeyPair::generate();
    let x_bytes = URL_SAFE_NO_PAD.decode(&key.public_x).expect("x");
    let hs256 = |secret: &[u8]| {
        HS256Key::from_bytes(secret)
            .with_key_id(&key.kid)
            .authenticate(good.jwt())
            .expect("HS256")
    };
    let mut tampered = decode_part(&lyon, 1);
    tampered["sub"] = json!("city:seoul");
    let tampered = URL_SAFE_NO_PAD.encode(tampered.to_string());

    let cases: Vec<(&str, String)> = vec![
        ("another scheme", "Basic x".into()),
        ("Bearer alone", "Bearer".into()),
        ("Bearer and spaces", "Bearer   ".into()),
        ("not a JWT", "Bearer not-a-jwt".into()),
        ("two parts", format!("Bearer {head}.{payload}")),
        (
            "bad base64 in the payload",
            format!(
                "Bearer {head}.{}!*.{signature}",
                &payload[..payload.len() - 2]
            ),
        ),
        (
            "bad base64 in the signature",
            format!("Bearer {head}.{payload}.%%%%"),
        ),
        (
            "a flipped signature",
            format!("Bearer {head}.{payload}.{}", flip_last(&signature)),
        ),
        (
            "a payload changed under the signature",
            format!("Bearer {head}.{tampered}.{signature}"),
        ),
        (
            "alg none",
            format!(
                "Bearer {}",
                assemble(
                    &json!({ "alg": "none", "typ": "JWT", "kid": key.kid }),
                    &good.json(),
                    b""
                )
            ),
        ),
        (
            "alg none without a kid",
            format!(
                "Bearer {}",
                assemble(&json!({ "alg": "none", "typ": "JWT" }), &good.json(), b"")
            ),
        ),
        (
            "HS256 keyed with the JWKS x text",
            format!("Bearer {}", hs256(key.public_x.as_bytes())),
        ),
        (
            "HS256 keyed with the raw public key",
            format!("Bearer {}", hs256(&x_bytes)),
        ),
        (
            "another Ed25519 key under the hub's kid",
            format!(
                "Bearer {}",
                sign(&other_key.clone().with_key_id(&key.kid), &good)
            ),
        ),
        (
            "another Ed25519 key under its own kid",
            format!(
                "Bearer {}",
                sign(&other_key.with_key_id("someone-elses-key"), &good)
            ),
        ),
        (
            "the hub's key without a kid",
            format!("Bearer {}", sign(&pair_from_seed(key.seed), &good)),
        ),
        (
            "expired",
            format!(
                "Bearer {}",
                spoiled(&|c| {
                    c.iat = now() - 7200;
                    c.nbf = c.iat;
                    c.exp = Some(now() - 3600);
                })
            ),
        ),
        (
            "not yet valid",
            format!(
                "Bearer {}",
                spoiled(&|c| {
                    c.nbf = now() + 3600;
                    c.exp = Some(now() + 7200);
                })
            ),
        ),
        (
            "without exp",
            format!("Bearer {}", spoiled(&|c| c.exp = None)),
        ),
        (
            "the wrong issuer",
            format!("Bearer {}", spoiled(&|c| c.iss = "someone-else".into())),
        ),
        (
            "the wrong audience",
            format!("Bearer {}", spoiled(&|c| c.aud = "another-api".into())),
        ),
        (
            "an unrecorded jti",
            format!(
                "Bearer {}",
                spoiled(&|c| c.jti = uuid::Uuid::new_v4().to_string())
            ),
        ),
        (
            "another city's subject",
            format!("Bearer {}", spoiled(&|c| c.sub = "city:seoul".into())),
        ),
        (
            "a raised role",
            format!(
                "Bearer {}",
                spoiled(&|c| {
                    c.role = "SECRETARIAT".into();
                    c.sub = "secretariat".into();
                })
            ),
        ),
    ];
    let mut problems = Vec::new();
    for (why, authorization) in &cases {
        if let Some(problem) = refusal_problem(hub, authorization).await {
            problems.push(format!("{why}: {problem}"));
        }
    }
    assert!(
        problems.is_empty(),
        "accepted or wrongly refused:\n{}",
        problems.join("\n")
    );
    // Nothing was published by any of them, and the real token still works.
    assert_eq!(viewer(hub, &lyon).await["city"]["slug"], "lyon");
    let count = hub
        .ok(
            "{ activities(filter: { text: \"Should not exist\" }) { totalCount } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(count["activities"]["totalCount"], 0);
    // The scheme is case-insensitive, as HTTP says.
    let (status, body) = with_authorization(hub, Some(&format!("bearer {lyon}")), VIEWER).await;
    assert_eq!(status, 200, "{body}");
}

/// The signature with its last character changed (still valid base64url).
fn flip_last(signature: &str) -> String {
    let mut s = signature.to_owned();
    let last = s.pop().expect("a signature");
    s.push(if last == 'A' { 'Q' } else { 'A' });
    s
}

/// A revoked token is refused within seconds by every instance.
async fn revoked_tokens_stop_working_on_every_instance(hub: &TestHub) {
    let other = TestHub::start_on(hub.backend, hub.test_db.clone(), |_| {}).await;
    let secretariat = hub.token(None).await;
    let revoke = "mutation($id: ID!) { revokeToken(id: $id) }";

    // Revoked over GraphQL on one instance; both had it cached as valid.
    let (lyon, record) = issue(hub, Some("lyon"), 3600).await;
    viewer(hub, &lyon).await;
    viewer(&other, &lyon).await;
    let data = hub
        .ok(revoke, json!({ "id": record.id }), Some(&secretariat))
        .await;
    assert_eq!(data["revokeToken"], true);
    refused_within(hub, &lyon, "the revoking instance").await;
    refused_within(&other, &lyon, "another instance").await;
    // Revoking again is harmless; an unknown id is not found.
    assert_eq!(
        hub.ok(revoke, json!({ "id": record.id }), Some(&secretariat))
            .await["revokeToken"],
        true
    );
    hub.fails(
        revoke,
        json!({ "id": "no-such-token" }),
        Some(&secretariat),
        "NOT_FOUND",
    )
    .await;
    let listed = hub
        .ok("{ tokens { id revokedAt } }", json!({}), Some(&secretariat))
        .await;
    let entry = listed["tokens"]
        .as_array()
        .and_then(|t| t.iter().find(|x| x["id"] == record.id.as_str()).cloned())
        .expect("listed");
    assert!(entry["revokedAt"].is_string(), "{entry}");

    // Revoked in the database only (the command line): refused everywhere.
    let (seoul, record) = issue(hub, Some("seoul"), 3600).await;
    viewer(hub, &seoul).await;
    viewer(&other, &seoul).await;
    cityhub::ops::revoke_token(&hub.db, &record.id)
        .await
        .expect("revoke");
    refused_within(hub, &seoul, "an instance told nothing").await;
    refused_within(&other, &seoul, "another instance told nothing").await;

    // A revoked secretariat token can no longer revoke anything.
    let (boss, record) = issue(hub, None, 3600).await;
    viewer(hub, &boss).await;
    hub.ok(revoke, json!({ "id": record.id }), Some(&secretariat))
        .await;
    refused_within(hub, &boss, "a revoked secretariat token").await;
    // Tokens that were not revoked still work.
    assert_eq!(viewer(&other, &secretariat).await["role"], "SECRETARIAT");
    other.stop().await;
}

/// Rotation keeps old tokens working and signs new ones with the new key; retirement ends the old key's tokens.
async fn rotated_keys_verify_and_retired_keys_do_not(hub: &TestHub) {
    let secretariat = hub.token(None).await;
    let (old, _) = issue(hub, Some("lyon"), 3600).await;
    let old_kid = decode_part(&old, 0)["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    assert_eq!(viewer(hub, &old).await["city"]["slug"], "lyon");

    let new_kid = cityhub::ops::rotate_keys(&hub.db, &hub.config)
        .await
        .expect("rotate");
    assert_ne!(new_kid, old_kid);
    // Tokens of the old key keep working.
    assert_eq!(viewer(hub, &old).await["city"]["slug"], "lyon");
    // New tokens carry the new key, from the command line and over GraphQL.
    let (new, _) = issue(hub, Some("lyon"), 3600).await;
    assert_eq!(decode_part(&new, 0)["kid"], new_kid.as_str());
    assert_eq!(viewer(hub, &new).await["city"]["slug"], "lyon");
    let issued = hub
        .ok(
            "mutation { issueToken(city: \"seoul\", role: CITY, ttlSeconds: 600) { token } }",
            json!({}),
            Some(&secretariat),
        )
        .await;
    let over_graphql = issued["issueToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(decode_part(&over_graphql, 0)["kid"], new_kid.as_str());
    assert_eq!(viewer(hub, &over_graphql).await["city"]["slug"], "seoul");
    assert_eq!(viewer(hub, &old).await["city"]["slug"], "lyon");
    let kids = jwks_kids(hub).await;
    assert!(
        kids.contains(&old_kid) && kids.contains(&new_kid),
        "{kids:?}"
    );

    // Retiring the old key: its tokens stop working, the new key's do not.
    cityhub::ops::retire_key(&hub.db, &hub.config, &old_kid)
        .await
        .expect("retire");
    refused_within(hub, &old, "a token of a retired key").await;
    refused_within(hub, &secretariat, "a secretariat token of a retired key").await;
    assert_eq!(viewer(hub, &new).await["city"]["slug"], "lyon");
    assert_eq!(viewer(hub, &over_graphql).await["city"]["slug"], "seoul");
    assert_eq!(jwks_kids(hub).await, vec![new_kid.clone()]);
    // Retiring it twice, or a key that does not exist, is an error.
    assert!(
        cityhub::ops::retire_key(&hub.db, &hub.config, &old_kid)
            .await
            .is_err()
    );
    assert!(
        cityhub::ops::retire_key(&hub.db, &hub.config, "no-such-key")
            .await
            .is_err()
    );
}

async fn jwks(hub: &TestHub) -> Value {
    let response = hub
        .client
        .get(format!("{}/.well-known/jwks.json", hub.base))
        .send()
        .await
        .expect("jwks");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("JSON")
}

async fn jwks_kids(hub: &TestHub) -> Vec<String> {
    let mut kids: Vec<String> = jwks(hub).await["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect();
    kids.sort();
    kids
}

/// The JWKS verifies the hub's tokens with another JWT library.
async fn jwks_verifies_hub_tokens(hub: &TestHub) {
    let (token, record) = issue(hub, Some("lyon"), 3600).await;
    let document = jwks(hub).await;
    let keys = document["keys"].as_array().expect("keys");
    let stored = hub_keys(hub).await;
    assert_eq!(keys.len(), stored.len());
    let kid = decode_part(&token, 0)["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    let jwk = keys
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's key is published");
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert!(jwk.get("d").is_none(), "no private part: {jwk}");
    let x = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().expect("x"))
        .expect("base64url");
    let public = Ed25519PublicKey::from_bytes(&x).expect("public key");
    let options = VerificationOptions {
        allowed_issuers: Some([hub.config.auth.issuer.clone()].into()),
        allowed_audiences: Some([hub.config.auth.audience.clone()].into()),
        required_key_id: Some(kid.clone()),
        ..Default::default()
    };
    let claims = public
        .verify_token::<Value>(&token, Some(options.clone()))
        .expect("the JWKS verifies a hub token");
    assert_eq!(claims.subject.as_deref(), Some("city:lyon"));
    assert_eq!(claims.jwt_id.as_deref(), Some(record.id.as_str()));
    assert_eq!(claims.custom["role"], "CITY");
    // And it refuses a token signed by any other key.
    let forged = Ed25519KeyPair::generate()
        .with_key_id(&kid)
        .sign(Claims::of(&record, hub).jwt())
        .expect("sign");
    assert!(
        public
            .verify_token::<Value>(&forged, Some(options))
            .is_err()
    );
}

// ---------------------------------------------------------------------------
// The command line.
// ---------------------------------------------------------------------------

/// Runs `cityhub ARGS` on the hub's database, from an empty directory (so
/// no `cityhub.toml` is picked up).
async fn cli(hub: &TestHub, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(args)
        .current_dir(dir.path())
        .env("CITYHUB_DATABASE_URL", &hub.test_db.url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run cityhub")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `cityhub token issue|list|revoke`, run as the real binary.
async fn cli_issues_lists_and_revokes_tokens(hub: &TestHub) {
    let out = cli(
        hub,
        &[
            "token", "issue", "--city", "lyon", "--ttl", "90s", "--label", "x",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(
        token.split('.').count(),
        3,
        "stdout is the JWT alone: {token}"
    );
    let v = viewer(hub, &token).await;
    assert_eq!(v["role"], "CITY");
    assert_eq!(v["city"]["slug"], "lyon");
    let id = v["tokenId"].as_str().expect("id").to_owned();
    let ttl = (parse_time(&v["expiresAt"]) - Utc::now()).num_seconds();
    assert!((80..=90).contains(&ttl), "ttl {ttl}");
    assert!(text(&out.stderr).contains(&id), "{}", text(&out.stderr));

    let out = cli(hub, &["token", "issue", "--secretariat", "--ttl", "12h"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let boss = text(&out.stdout).trim().to_owned();
    assert_eq!(viewer(hub, &boss).await["role"], "SECRETARIAT");

    let out = cli(hub, &["token", "list"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{listing}"));
    let columns: Vec<&str> = line.split('\t').collect();
    assert_eq!(columns[1], "city:lyon", "{line}");
    assert_eq!(columns[2], "valid", "{line}");
    assert_eq!(columns.last().copied(), Some("x"), "{line}");
    assert!(!listing.contains(&token), "the list never shows tokens");

    let out = cli(hub, &["token", "revoke", &id]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&id));
    refused_within(hub, &token, "a token revoked from the command line").await;
    let out = cli(hub, &["token", "list"]).await;
    let listing = text(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("listed");
    assert_eq!(line.split('\t').nth(2), Some("revoked"), "{line}");
    assert_eq!(viewer(hub, &boss).await["role"], "SECRETARIAT");

    let out = cli(hub, &["token", "revoke", "no-such-token"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no token with id no-such-token"),
        "{}",
        text(&out.stderr)
    );

    // Bad TTLs and unknown cities fail clearly, issuing nothing.
    let before = cityhub::ops::list_tokens(&hub.db)
        .await
        .expect("list")
        .len();
    for ttl in ["0s", "banana", "10"] {
        let out = cli(hub, &["token", "issue", "--city", "lyon", "--ttl", ttl]).await;
        assert!(!out.status.success(), "--ttl {ttl} was accepted");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("--ttl '{ttl}'")) && stderr.contains("90s"),
            "--ttl {ttl}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "no token printed for --ttl {ttl}");
    }
    let out = cli(hub, &["token", "issue", "--city", "atlantis"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("atlantis"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(hub, &["token", "issue", "--city", "lyon", "--secretariat"]).await;
    assert!(
        !out.status.success(),
        "a token is for a city or the secretariat, not both"
    );
    assert_eq!(
        cityhub::ops::list_tokens(&hub.db)
            .await
            .expect("list")
            .len(),
        before
    );
}
