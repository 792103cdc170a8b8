//! Signing keys at rest: with `auth.key_encryption_key_file` set, the
//! private keys in `signing_keys` are sealed under the key-encryption key
//! (KEK), so a copy of the database alone cannot sign a token. A hub
//! without the KEK (or with another) refuses to start; plaintext keys from
//! before are sealed when the hub starts; `cityhub keys rewrap` moves every
//! key to a new KEK; `cityhub keys kek generate` makes one.

use std::path::{Path, PathBuf};
use std::process::Command;

use cityhub::config::Config;
use cityhub_auth::at_rest::{KeyEncryptionKey, StoredForm};
use cityhub_storage::repo::audit::AuditRepo;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestDb, TestHub};

const VIEWER: &str = "{ viewer { role city { slug } } }";

/// A new KEK file in `dir`: 32 random bytes as 64 hex digits.
fn kek_file(dir: &Path, name: &str) -> PathBuf {
    let bytes: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| *u.as_bytes())
        .collect();
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).expect("write a KEK file");
    path
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// Every `signing_keys` row as stored: its `kid` and `private_der` bytes.
async fn stored_keys(url: &str) -> Vec<(String, Vec<u8>)> {
    let conn = sea_orm::Database::connect(url).await.expect("db");
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT kid, private_der FROM signing_keys ORDER BY created_at, kid",
        ))
        .await
        .expect("select signing_keys");
    let keys = rows
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "kid").expect("kid"),
                r.try_get::<Vec<u8>>("", "private_der")
                    .expect("private_der"),
            )
        })
        .collect();
    let _ = conn.close().await;
    keys
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The stored value holds no private key in the clear: no PEM, no PKCS#8
/// DER (a `SEQUENCE` first, the Ed25519 OID, the seed's OCTET STRING
/// header), and none of the seed's bytes; it is sealed under `kek`.
fn assert_sealed_under(kid: &str, stored: &[u8], kek: &KeyEncryptionKey) {
    assert!(!contains(stored, b"-----BEGIN"), "{kid}: PEM at rest");
    assert_ne!(stored.first(), Some(&0x30), "{kid}: PKCS#8 DER at rest");
    assert!(
        !contains(stored, &[0x06, 0x03, 0x2b, 0x65, 0x70]),
        "{kid}: the Ed25519 OID at rest"
    );
    assert!(
        !contains(stored, &[0x04, 0x22, 0x04, 0x20]),
        "{kid}: the seed's OCTET STRING at rest"
    );
    assert_eq!(
        StoredForm::of(stored),
        StoredForm::Sealed(kek.fingerprint()),
        "{kid}: not sealed under the KEK"
    );
    let der = kek.open(kid, stored).expect("the KEK opens it");
    let seed = &der[der.len() - 32..];
    assert!(!contains(stored, seed), "{kid}: the seed at rest");
}

/// The configuration of a hub on `db` with `kek` (or none), as
/// [`TestHub::start_on`] makes it.
fn config_on(db: &TestDb, kek: Option<&Path>) -> Config {
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.database.url = db.url.clone();
    config.database.max_connections = 8;
    config.auth.key_encryption_key_file = kek.map(text);
    config
}

/// Why a hub on `db` with `kek` (or none) refuses to start; panics if it starts.
async fn start_error(db: &TestDb, kek: Option<&Path>) -> String {
    match cityhub::app::build(&config_on(db, kek)).await {
        Ok(_) => panic!("the hub started"),
        Err(e) => format!("{e:#}"),
    }
}

/// Runs the real binary on `db_url` with `envs`: success, stdout, stderr.
async fn cli(db_url: &str, envs: &[(&str, String)], args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cityhub"));
    command
        .args(args)
        .env("CITYHUB_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn");
    for (key, value) in envs {
        command.env(key, value);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    command.current_dir(dir.path());
    let out = tokio::task::spawn_blocking(move || command.output().expect("run cityhub"))
        .await
        .expect("join");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with_kek(kek: &Path) -> (&'static str, String) {
    ("CITYHUB_AUTH_KEY_ENCRYPTION_KEY_FILE", text(kek))
}

async fn assert_viewer_is_lyon(hub: &TestHub, token: &str) {
    let data = hub.ok(VIEWER, json!({}), Some(token)).await;
    assert_eq!(
        data["viewer"],
        json!({ "role": "CITY", "city": { "slug": "lyon" } })
    );
}

/// The audit actions recorded about key `kid`, oldest first.
async fn key_audit(hub: &TestHub, kid: &str) -> Vec<(String, String)> {
    AuditRepo::for_target(hub.db.conn(), "signingKey", kid)
        .await
        .expect("audit")
        .into_iter()
        .map(|r| (r.actor, r.action))
        .collect()
}

both_backends!(
    keys_are_sealed_at_rest_and_verify_after_a_restart,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let kek_path = kek_file(dir.path(), "kek");
        let kek = KeyEncryptionKey::read(&kek_path).expect("kek");
        let path = text(&kek_path);
        let hub = TestHub::start_with(backend, |c| {
            c.auth.key_encryption_key_file = Some(path.clone())
        })
        .await;
        let token = hub.token(Some("lyon")).await;
        let kid = cityhub::ops::rotate_keys(&hub.db, &hub.config)
            .await
            .expect("rotate");
        let stored = stored_keys(&hub.test_db.url).await;
        assert_eq!(stored.len(), 2, "the first key and the rotated one");
        assert_eq!(stored[1].0, kid);
        for (kid, value) in &stored {
            assert_sealed_under(kid, value, &kek);
        }
        let test_db = hub.test_db.clone();
        hub.stop().await;
        let again = TestHub::start_on(backend, test_db, |c| {
            c.auth.key_encryption_key_file = Some(path)
        })
        .await;
        assert_viewer_is_lyon(&again, &token).await;
        // The restarted hub signs with the rotated key, sealed too.
        let fresh = again.token(Some("lyon")).await;
        assert_viewer_is_lyon(&again, &fresh).await;
        again.stop().await;
    }
);

both_backends!(
    without_its_kek_a_sealed_database_refuses_to_start,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (right, wrong) = (kek_file(dir.path(), "kek"), kek_file(dir.path(), "other"));
        let path = text(&right);
        let hub =
            TestHub::start_with(backend, |c| c.auth.key_encryption_key_file = Some(path)).await;
        let _ = hub.token(None).await;
        let kid = stored_keys(&hub.test_db.url).await[0].0.clone();
        let test_db = hub.test_db.clone();
        hub.stop().await;
        let secrets = [
            std::fs::read_to_string(&right).expect("read"),
            std::fs::read_to_string(&wrong).expect("read"),
        ];
        let right_fp = KeyEncryptionKey::read(&right).expect("kek").fingerprint();
        let wrong_fp = KeyEncryptionKey::read(&wrong).expect("kek").fingerprint();

        let missing = start_error(&test_db, None).await;
        for expected in [
            "auth.key_encryption_key_file",
            "encrypted",
            kid.as_str(),
            &right_fp.to_string(),
        ] {
            assert!(missing.contains(expected), "{expected:?} in {missing}");
        }
        let mismatch = start_error(&test_db, Some(&wrong)).await;
        for expected in [
            "auth.key_encryption_key_file",
            kid.as_str(),
            &right_fp.to_string(),
            &wrong_fp.to_string(),
        ] {
            assert!(mismatch.contains(expected), "{expected:?} in {mismatch}");
        }
        // The real binary says so too, without panicking.
        let (ok, out, err) = cli(&test_db.url, &[], &["token", "issue", "--secretariat"]).await;
        assert!(!ok, "issued without the KEK: {out}");
        assert!(err.contains("auth.key_encryption_key_file"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let (ok, out, err) = cli(
            &test_db.url,
            &[with_kek(&wrong)],
            &["token", "issue", "--secretariat"],
        )
        .await;
        assert!(!ok, "issued with another KEK: {out}");
        assert!(err.contains(&wrong_fp.to_string()), "{err}");
        for message in [&missing, &mismatch, &err] {
            for secret in &secrets {
                assert!(!message.contains(secret.trim()), "a KEK in {message}");
            }
        }
        // With its KEK, it starts.
        let back = TestHub::start_on(backend, test_db, |c| {
            c.auth.key_encryption_key_file = Some(text(&right))
        })
        .await;
        back.stop().await;
    }
);

both_backends!(
    sealed_keys_swapped_between_rows_do_not_open,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let kek = kek_file(dir.path(), "kek");
        let path = text(&kek);
        let hub = TestHub::start_with(backend, |c| {
            c.auth.key_encryption_key_file = Some(path.clone())
        })
        .await;
        cityhub::ops::rotate_keys(&hub.db, &hub.config)
            .await
            .expect("rotate");
        let stored = stored_keys(&hub.test_db.url).await;
        assert_eq!(stored.len(), 2);
        // Each row gets the other's sealed key (a copy of a row onto
        // another key id), with the KEK at hand.
        let conn = hub.db.conn();
        for ((kid, _), (_, other)) in stored.iter().zip(stored.iter().rev()) {
            conn.execute_raw(Statement::from_sql_and_values(
                conn.get_database_backend(),
                match backend {
                    Backend::Sqlite => "UPDATE signing_keys SET private_der = ? WHERE kid = ?",
                    Backend::Postgres => "UPDATE signing_keys SET private_der = $1 WHERE kid = $2",
                },
                [other.clone().into(), kid.clone().into()],
            ))
            .await
            .expect("swap");
        }
        let test_db = hub.test_db.clone();
        hub.stop().await;
        let error = start_error(&test_db, Some(&kek)).await;
        assert!(error.contains("does not decrypt"), "{error}");
        assert!(
            stored.iter().any(|(kid, _)| error.contains(kid.as_str())),
            "{error}"
        );
    }
);

both_backends!(
    plaintext_keys_are_sealed_when_the_hub_starts_with_a_kek,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let token = hub.token(Some("lyon")).await;
        cityhub::ops::rotate_keys(&hub.db, &hub.config)
            .await
            .expect("rotate");
        let before = stored_keys(&hub.test_db.url).await;
        assert_eq!(before.len(), 2);
        for (kid, value) in &before {
            assert_eq!(StoredForm::of(value), StoredForm::Plain, "{kid}");
        }
        let test_db = hub.test_db.clone();
        hub.stop().await;

        let dir = tempfile::tempdir().expect("tempdir");
        let kek_path = kek_file(dir.path(), "kek");
        let kek = KeyEncryptionKey::read(&kek_path).expect("kek");
        let path = text(&kek_path);
        let sealed = TestHub::start_on(backend, test_db, |c| {
            c.auth.key_encryption_key_file = Some(path)
        })
        .await;
        let after = stored_keys(&sealed.test_db.url).await;
        assert_eq!(
            after.iter().map(|k| &k.0).collect::<Vec<_>>(),
            before.iter().map(|k| &k.0).collect::<Vec<_>>(),
            "the same keys, sealed in place"
        );
        for (kid, value) in &after {
            assert_sealed_under(kid, value, &kek);
            let plain = &before.iter().find(|k| &k.0 == kid).expect("kid").1;
            assert_eq!(*kek.open(kid, value).expect("open"), *plain);
            assert_eq!(
                key_audit(&sealed, kid).await.last(),
                Some(&("system".to_owned(), "sealSigningKey".to_owned())),
                "{kid}"
            );
        }
        assert_viewer_is_lyon(&sealed, &token).await;
        sealed.stop().await;
    }
);

both_backends!(
    the_cli_seals_plaintext_keys_without_a_hub,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let token = hub.token(Some("lyon")).await;
        let test_db = hub.test_db.clone();
        hub.stop().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let kek_path = kek_file(dir.path(), "kek");
        let kek = KeyEncryptionKey::read(&kek_path).expect("kek");
        let (ok, out, err) = cli(
            &test_db.url,
            &[],
            &["keys", "rewrap", "--new-kek", &text(&kek_path)],
        )
        .await;
        assert!(ok, "{out}{err}");
        assert!(out.contains("1 plaintext key(s) sealed"), "{out}");
        for (kid, value) in stored_keys(&test_db.url).await {
            assert_sealed_under(&kid, &value, &kek);
        }
        let path = text(&kek_path);
        let hub = TestHub::start_on(backend, test_db, |c| {
            c.auth.key_encryption_key_file = Some(path)
        })
        .await;
        assert_viewer_is_lyon(&hub, &token).await;
        hub.stop().await;
    }
);

both_backends!(
    rewrap_moves_every_key_to_a_new_kek,
    |backend: Backend| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old_path, new_path) = (kek_file(dir.path(), "old"), kek_file(dir.path(), "new"));
        let new = KeyEncryptionKey::read(&new_path).expect("kek");
        let old = text(&old_path);
        let hub =
            TestHub::start_with(backend, |c| c.auth.key_encryption_key_file = Some(old)).await;
        let token = hub.token(Some("lyon")).await;
        cityhub::ops::rotate_keys(&hub.db, &hub.config)
            .await
            .expect("rotate");
        let newer = hub.token(Some("lyon")).await;
        let test_db = hub.test_db.clone();
        hub.stop().await;

        // The current KEK from the configuration, the new one from a flag.
        let (ok, out, err) = cli(
            &test_db.url,
            &[with_kek(&old_path)],
            &["keys", "rewrap", "--new-kek", &text(&new_path)],
        )
        .await;
        assert!(ok, "{out}{err}");
        assert!(
            out.contains(&format!(
                "2 key(s) sealed anew and 0 plaintext key(s) sealed under key-encryption key {}",
                new.fingerprint()
            )),
            "{out}"
        );
        let stored = stored_keys(&test_db.url).await;
        for (kid, value) in &stored {
            assert_sealed_under(kid, value, &new);
        }
        // Again: nothing left to do (both flags this time).
        let (ok, out, err) = cli(
            &test_db.url,
            &[],
            &[
                "keys",
                "rewrap",
                "--old-kek",
                &text(&old_path),
                "--new-kek",
                &text(&new_path),
            ],
        )
        .await;
        assert!(ok, "{out}{err}");
        assert!(out.contains("(2 already under it)"), "{out}");

        let error = start_error(&test_db, Some(&old_path)).await;
        assert!(error.contains(&new.fingerprint().to_string()), "{error}");
        let path = text(&new_path);
        let hub = TestHub::start_on(backend, test_db, |c| {
            c.auth.key_encryption_key_file = Some(path)
        })
        .await;
        assert_viewer_is_lyon(&hub, &token).await;
        assert_viewer_is_lyon(&hub, &newer).await;
        for (kid, _) in &stored {
            assert_eq!(
                key_audit(&hub, kid).await.last(),
                Some(&("cli".to_owned(), "rewrapSigningKey".to_owned())),
                "{kid}"
            );
        }
        hub.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_files_are_made_owner_only_and_bad_ones_stop_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("kek");
    let (ok, out, err) = cli(
        &db.url,
        &[],
        &["keys", "kek", "generate", "--out", &text(&out_path)],
    )
    .await;
    assert!(ok, "{out}{err}");
    let content = std::fs::read_to_string(&out_path).expect("the KEK file");
    assert_eq!(content.trim().len(), 64, "64 hex digits");
    assert!(content.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        std::fs::metadata(&out_path)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!out.contains(content.trim()) && !err.contains(content.trim()));
    let fingerprint = KeyEncryptionKey::read(&out_path)
        .expect("kek")
        .fingerprint()
        .to_string();
    assert!(out.contains(&fingerprint), "{out}");
    let (ok, shown, _) = cli(
        &db.url,
        &[],
        &["keys", "kek", "fingerprint", &text(&out_path)],
    )
    .await;
    assert!(ok);
    assert_eq!(shown.trim(), fingerprint);
    // Never overwritten.
    let (ok, _, err) = cli(
        &db.url,
        &[],
        &["keys", "kek", "generate", "--out", &text(&out_path)],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&out_path).expect("read"), content);

    // A malformed or missing KEK stops the start with the file named and
    // its content never shown.
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "correct-horse-battery-staple").expect("write");
    for (path, expected) in [
        (bad.clone(), "64 hex digits"),
        (dir.path().join("missing"), "No such file"),
    ] {
        let (ok, out, err) = cli(
            &db.url,
            &[with_kek(&path)],
            &["token", "issue", "--secretariat"],
        )
        .await;
        assert!(!ok, "started with {}: {out}", path.display());
        assert!(err.contains(&text(&path)), "{err}");
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("correct-horse"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The KEK seals the database's keys: with a key file it has no use.
    let (ok, _, err) = cli(
        &db.url,
        &[
            with_kek(&out_path),
            ("CITYHUB_AUTH_KEY_FILE", text(&dir.path().join("keys.json"))),
        ],
        &["migrate", "status"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("auth.key_encryption_key_file") && err.contains("auth.key_file"),
        "{err}"
    );
}
