//! The command line, run as the real binary: help, schema, migrations up,
//! down and up again on both databases, idempotent seeding, configuration
//! errors, and the demo printing a working URL and tokens.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestDb, cityhub_cli as cityhub};

#[test]
fn help_lists_every_command_and_schema_matches_the_checked_in_file() {
    let (ok, out, _) = cityhub("sqlite://unused.db", &["--help"]);
    assert!(ok);
    for command in [
        "demo", "serve", "migrate", "seed", "token", "keys", "schema",
    ] {
        assert!(out.contains(command), "--help lacks {command}: {out}");
    }
    let (ok, sdl, _) = cityhub("sqlite://unused.db", &["schema"]);
    assert!(ok);
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/schema.graphql"
    ))
    .expect("schema file");
    assert_eq!(
        sdl, file,
        "schema/schema.graphql is stale: regenerate it with `cargo run -- schema`"
    );
    // Arguments carry descriptions: compare the field without them.
    let mut bare = String::new();
    for (i, part) in sdl.split("\"\"\"").enumerate() {
        if i % 2 == 0 {
            bare.push_str(part);
        }
    }
    let bare = bare
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(" )", ")");
    assert!(
        bare.contains("activityEvents(filter: ActivityFilter, after: String): ActivityEvent!"),
        "{bare}"
    );
}

#[test]
fn bad_configuration_stops_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["migrate", "status"])
        .current_dir(dir.path())
        .env("CITYHUB_DATABASE_URL", "mysql://nope")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("database.url"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["migrate", "status"])
        .current_dir(dir.path())
        .env("CITYHUB_API_MAX_PAGE_SIZE", "lots")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("max_page_size"), "{err}");
}

both_backends!(
    migrations_go_up_down_and_up_and_seeding_is_idempotent,
    |backend: Backend| async move {
        let db = TestDb::new(backend).await;
        let url = db.url.clone();
        let (ok, out, err) =
            tokio::task::spawn_blocking(move || cityhub(&url, &["migrate", "status"]))
                .await
                .expect("join");
        assert!(ok, "{err}");
        assert!(out.contains("pending m20261127_000001_initial"), "{out}");
        // Down past the kept counts, then down to nothing.
        let steps = crate::support::steps_to_undo("m20261201_000002_stats");
        let (to_stats, rolled_to_stats) = (steps.to_string(), format!("rolled back {steps}"));
        let rest = crate::support::steps_to_undo("m20261127_000001_initial") - steps;
        let (to_initial, rolled_to_initial) = (rest.to_string(), format!("rolled back {rest}"));
        for (args, expect) in [
            (vec!["migrate", "up"], "migrations applied"),
            (
                vec!["migrate", "status"],
                "applied m20261127_000001_initial",
            ),
            (vec!["migrate", "status"], "applied m20261201_000002_stats"),
            (
                vec!["migrate", "down", "--steps", to_stats.as_str()],
                rolled_to_stats.as_str(),
            ),
            (vec!["migrate", "status"], "pending m20261201_000002_stats"),
            (
                vec!["migrate", "down", "--steps", to_initial.as_str()],
                rolled_to_initial.as_str(),
            ),
            (
                vec!["migrate", "status"],
                "pending m20261127_000001_initial",
            ),
            (vec!["migrate", "up"], "migrations applied"),
            (
                vec!["seed"],
                "28 cities created (0 already there), 26 activities created (0 already there)",
            ),
            (
                vec!["seed"],
                "0 cities created (28 already there), 0 activities created (26 already there)",
            ),
        ] {
            let url = db.url.clone();
            let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            let (ok, out, err) = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                cityhub(&url, &refs)
            })
            .await
            .expect("join");
            assert!(ok, "{args:?}: {err}");
            assert!(
                out.contains(expect),
                "{args:?}: expected {expect:?} in {out}"
            );
        }
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_seeded_network_and_prints_working_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let banner = crate::support::demo_banner(&mut child).await;
    let find = |label: &str| banner.value(label);
    let url = find("GraphQL and GraphiQL:");
    let city_token = find("City token");
    // The demo binds its listener before printing the URL, so the first
    // request is queued by the kernel until it serves: no polling.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let viewer = client
        .post(&url)
        .bearer_auth(&city_token)
        .json(&json!({ "query": "{ viewer { role city { slug } } network { activityCount } }" }))
        .send()
        .await
        .expect("the demo answers")
        .json::<Value>()
        .await
        .expect("json");
    // The publishing desk's link carries the city's token in its fragment.
    let desk = find("Publishing desk (Lyon):");
    let (page, token) = desk.split_once("#token=").expect("a desk link");
    assert_eq!(token, city_token);
    assert_eq!(page, url.replace("/graphql", "/publish"));
    let desk_status = client.get(page).send().await.expect("the desk").status();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(desk_status, 200);
    assert_eq!(
        viewer["data"]["viewer"],
        json!({ "role": "CITY", "city": { "slug": "lyon" } }),
        "{viewer}"
    );
    assert_eq!(viewer["data"]["network"]["activityCount"], 26);
    assert!(
        dir.path().join("cityhub.db").exists(),
        "the demo's SQLite file is in the working directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_can_live_in_a_file_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("keys.json");
    let run = |args: &'static [&'static str]| {
        let (url, file) = (db.url.clone(), key_file.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let out = Command::new(env!("CARGO_BIN_EXE_cityhub"))
                    .args(args)
                    .env("CITYHUB_DATABASE_URL", url)
                    .env("CITYHUB_AUTH_KEY_FILE", file)
                    .env("RUST_LOG", "warn")
                    .output()
                    .expect("run");
                assert!(
                    out.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .await
            .expect("join")
        }
    };
    run(&["seed"]).await;
    let token = run(&["token", "issue", "--city", "lyon", "--ttl", "1h"])
        .await
        .trim()
        .to_owned();
    let mode = std::fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key_file).expect("read");
    run(&["keys", "rotate"]).await;
    let listed = run(&["keys", "list"]).await;
    assert_eq!(
        listed.lines().filter(|l| l.ends_with("active")).count(),
        2,
        "{listed}"
    );
    // The database holds no key: they are all in the file.
    let conn = sea_orm::Database::connect(db.url.as_str())
        .await
        .expect("db");
    let stored = cityhub_storage::repo::tokens::TokenRepo::keys(&conn)
        .await
        .expect("keys");
    assert!(stored.is_empty());
    assert!(text.contains("private_der"));
    // A hub configured with the file verifies the CLI's token.
    let path = key_file.display().to_string();
    let hub =
        crate::support::TestHub::start_on(Backend::Sqlite, std::sync::Arc::new(db), move |c| {
            c.auth.key_file = Some(path)
        })
        .await;
    let viewer = hub
        .ok("{ viewer { city { slug } } }", json!({}), Some(&token))
        .await;
    assert_eq!(viewer["viewer"]["city"]["slug"], "lyon");
}

/// Runs the binary with only `env` (no inherited `CITYHUB_*`), off the
/// async runtime: whether it succeeded, its stdout and its stderr.
async fn cityhub_with(args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(env!("CARGO_BIN_EXE_cityhub"))
            .args(&args)
            .current_dir(dir.path())
            .env_clear()
            .envs(env)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_asks_readyz_on_the_admin_listener_or_else_on_listen() {
    let hub = crate::support::TestHub::start_with(Backend::Sqlite, |c| {
        c.http.admin_listen = "127.0.0.1:0".into();
    })
    .await;
    let listen = hub.base.trim_start_matches("http://").to_owned();
    let admin = hub.admin_addr.expect("admin listener").to_string();
    // With an admin listener, the check asks it.
    let (ok, out, err) = cityhub_with(
        &["healthcheck"],
        &[
            ("CITYHUB_LISTEN", listen.clone()),
            ("CITYHUB_HTTP_ADMIN_LISTEN", admin.clone()),
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("http://{admin}/readyz")), "{out}");
    // Without one, it asks listen; an unspecified address on loopback.
    let port = listen.rsplit_once(':').expect("port").1;
    let (ok, out, err) = cityhub_with(
        &["healthcheck", "--timeout", "10"],
        &[("CITYHUB_LISTEN", format!("0.0.0.0:{port}"))],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("http://127.0.0.1:{port}/readyz")),
        "{out}"
    );
    // A hub that answers 503 is not healthy.
    let not_ready = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let not_ready_addr = not_ready.local_addr().expect("addr");
    let answering = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = not_ready.accept().await.expect("accept");
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 20\r\n\r\ndatabase unavailable")
            .await;
    });
    let (ok, _, err) = cityhub_with(
        &["healthcheck"],
        &[("CITYHUB_LISTEN", not_ready_addr.to_string())],
    )
    .await;
    answering.await.expect("join");
    assert!(!ok);
    assert!(err.contains("503"), "{err}");
    // Nothing listening: not healthy either.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    let (ok, _, err) = cityhub_with(
        &["healthcheck"],
        &[("CITYHUB_LISTEN", closed_addr.to_string())],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("cannot connect"), "{err}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_files_named_by_file_variables() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url_file = dir.path().join("database_url");
    // As secrets are written: with a trailing line break.
    std::fs::write(&url_file, format!("{}\n", db.url)).expect("write");
    let url_file = url_file.display().to_string();
    let (ok, out, err) = cityhub_with(
        &["migrate", "up"],
        &[("CITYHUB_DATABASE_URL_FILE", url_file.clone())],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("migrations applied"));
    let (ok, out, err) = cityhub_with(
        &["migrate", "status"],
        &[("CITYHUB_DATABASE_URL", db.url.clone())],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("applied m20261127_000001_initial"), "{out}");
    // `cityhub config` shows the effective value, a password hidden.
    let secret_file = dir.path().join("pg_url");
    std::fs::write(&secret_file, "postgres://cityhub:hunter2@db:5432/cityhub\n").expect("write");
    let (ok, out, err) = cityhub_with(
        &["config"],
        &[(
            "CITYHUB_DATABASE_URL_FILE",
            secret_file.display().to_string(),
        )],
    )
    .await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        shown["database"]["url"],
        "postgres://cityhub:***@db:5432/cityhub"
    );
    assert!(!out.contains("hunter2"));
    // Both ways at once, or a file that cannot be read: refused, naming
    // the variables and never the content.
    let (ok, _, err) = cityhub_with(
        &["config"],
        &[
            (
                "CITYHUB_DATABASE_URL_FILE",
                secret_file.display().to_string(),
            ),
            ("CITYHUB_DATABASE_URL", "sqlite://x.db".into()),
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("CITYHUB_DATABASE_URL and CITYHUB_DATABASE_URL_FILE"),
        "{err}"
    );
    let (ok, _, err) = cityhub_with(
        &["config"],
        &[("CITYHUB_DATABASE_URL_FILE", "/nonexistent/secret".into())],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("CITYHUB_DATABASE_URL_FILE") && err.contains("/nonexistent/secret"),
        "{err}"
    );
    // A variable whose own name is a setting keeps its meaning: the key
    // file setting is a path, not a file to read a value from.
    let (ok, out, err) = cityhub_with(
        &["config"],
        &[("CITYHUB_AUTH_KEY_FILE", "/var/lib/cityhub/keys.json".into())],
    )
    .await;
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["auth"]["key_file"], "/var/lib/cityhub/keys.json");
    // A variable that sets nothing (a typo) is refused by `config`.
    let (ok, _, err) = cityhub_with(
        &["config"],
        &[("CITYHUB_DATABSE_URL", "sqlite://x.db".into())],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("CITYHUB_DATABSE_URL"), "{err}");
}
