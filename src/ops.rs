//! The command line's operations as library functions.

use std::path::Path;

use anyhow::{Context, bail};
use cityhub_app::Authenticator;
use cityhub_app::seed::{self, SeedReport};
use cityhub_app::{AuditActor, CredentialService, KeyStore, RewrapReport};
use cityhub_auth::at_rest::{KekFingerprint, KeyEncryptionKey};
use cityhub_domain::Role;
use cityhub_storage::repo::tokens::{TokenRecord, TokenRepo};
use cityhub_storage::{CityRepo, Db};

/// How the audit log names changes made from the command line.
const CLI: AuditActor<'static> = AuditActor("cli");

use crate::app::hub_service;
use crate::config::Config;

/// Loads the shipped dataset (idempotent).
pub async fn seed(db: &Db, config: &Config) -> anyhow::Result<SeedReport> {
    let dataset = seed::parse(crate::DATASET)?;
    Ok(seed::load(&hub_service(db.clone(), config), &dataset).await?)
}

/// Issues a token for a city (`Some(slug)`) or the secretariat (`None`).
pub async fn issue_token(
    db: &Db,
    config: &Config,
    city: Option<&str>,
    ttl_secs: Option<u64>,
    label: Option<String>,
) -> anyhow::Result<(String, TokenRecord)> {
    let auth = Authenticator::new(db.clone(), config.auth.clone()).await?;
    let (role, city) = match city {
        Some(slug) => {
            let city = CityRepo::find_by_slug(db.conn(), slug)
                .await?
                .with_context(|| format!("no member city has the slug '{slug}'"))?;
            (Role::City, Some(city))
        }
        None => (Role::Secretariat, None),
    };
    let (issued, record) = auth
        .issue(CLI, city.as_ref(), role, ttl_secs, label)
        .await?;
    Ok((issued.token, record))
}

/// Every token record.
pub async fn list_tokens(db: &Db) -> anyhow::Result<Vec<TokenRecord>> {
    Ok(TokenRepo::list(db.conn()).await?)
}

/// Revokes a token.
pub async fn revoke_token(db: &Db, id: &str) -> anyhow::Result<()> {
    if !CredentialService::new(db.clone())
        .revoke_token(CLI, id)
        .await?
    {
        bail!("no token with id {id}");
    }
    Ok(())
}

/// Adds a signing key (database or key file); returns its id.
pub async fn rotate_keys(db: &Db, config: &Config) -> anyhow::Result<String> {
    Ok(key_store(db, config)?.rotate(CLI).await?)
}

/// Retires a signing key: its tokens stop verifying.
pub async fn retire_key(db: &Db, config: &Config, kid: &str) -> anyhow::Result<()> {
    if !key_store(db, config)?.retire(kid, CLI).await? {
        bail!("no active key with id {kid}");
    }
    Ok(())
}

/// Every signing key's id and whether it is retired.
pub async fn list_keys(db: &Db, config: &Config) -> anyhow::Result<Vec<(String, bool)>> {
    Ok(key_store(db, config)?
        .list()
        .await?
        .into_iter()
        .map(|k| (k.kid, k.retired))
        .collect())
}

/// Writes a new random key-encryption key to `out` (mode 0600; an existing
/// file is never overwritten); returns its fingerprint.
pub fn generate_kek(out: &Path) -> anyhow::Result<KekFingerprint> {
    Ok(KeyEncryptionKey::generate_file(out)?.fingerprint())
}

/// The fingerprint of the key-encryption key in `file`.
pub fn kek_fingerprint(file: &Path) -> anyhow::Result<KekFingerprint> {
    Ok(KeyEncryptionKey::read(file)?.fingerprint())
}

/// Seals every private key in the database under the key-encryption key
/// of `new_kek`, in one transaction. Keys sealed under another KEK are
/// opened with `old_kek`, or else with `auth.key_encryption_key_file`;
/// plaintext keys are sealed too.
pub async fn rewrap_keys(
    db: &Db,
    config: &Config,
    old_kek: Option<&Path>,
    new_kek: &Path,
) -> anyhow::Result<RewrapReport> {
    let store = key_store(db, config)?;
    let old = match old_kek {
        Some(path) => Some(KeyEncryptionKey::read(path).context("--old-kek")?),
        None => match &config.auth.key_encryption_key_file {
            Some(path) => Some(
                KeyEncryptionKey::read(Path::new(path)).context("auth.key_encryption_key_file")?,
            ),
            None => None,
        },
    };
    let new = KeyEncryptionKey::read(new_kek).context("--new-kek")?;
    store
        .rewrap(old.as_ref(), &new, CLI)
        .await
        .context("no key was rewrapped (the old key-encryption key is --old-kek, else auth.key_encryption_key_file)")
}

fn key_store(db: &Db, config: &Config) -> anyhow::Result<KeyStore> {
    Ok(KeyStore::for_config(db.clone(), &config.auth)?)
}

/// What `/readyz` answered a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Where it was asked (`http://127.0.0.1:4000/readyz`).
    pub url: String,
    /// The HTTP status.
    pub status: u16,
}

impl Readiness {
    /// Ready: the hub answered 200.
    pub fn is_ready(&self) -> bool {
        self.status == 200
    }
}

/// The address a health check on this machine asks: `http.admin_listen`
/// when it is set (the operators' routes are there), else `listen`; an
/// unspecified address (`0.0.0.0`, `[::]`) is asked on loopback.
pub fn healthcheck_addr(config: &Config) -> anyhow::Result<std::net::SocketAddr> {
    let mut addr = if config.http.admin_listen.is_empty() {
        config.listen_addr()?
    } else {
        config
            .http
            .admin_listen
            .parse()
            .with_context(|| format!("http.admin_listen: '{}'", config.http.admin_listen))?
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

/// The publishing desk's sign-in link for `token`:
/// `<base>/publish#token=<JWT>`, the base being `api.public_url` when set,
/// else the address the hub listens on (an unspecified one as loopback).
/// The token travels in the fragment, which browsers never send to a
/// server, so it reaches no log; the desk takes it out of the address bar.
pub fn desk_link(config: &Config, token: &str) -> anyhow::Result<String> {
    let base = if config.api.public_url.is_empty() {
        let mut addr = config.listen_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    } else {
        config.api.public_url.trim_end_matches('/').to_owned()
    };
    Ok(format!("{base}/publish#token={token}"))
}

/// Asks `GET /readyz` of the hub `config` describes (see
/// [`healthcheck_addr`]) over plain HTTP/1.1, within `timeout`: the
/// container's `HEALTHCHECK` (the runtime image has no curl). An error is
/// a hub that cannot be reached or did not answer HTTP.
pub async fn healthcheck(
    config: &Config,
    timeout: std::time::Duration,
) -> anyhow::Result<Readiness> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let addr = healthcheck_addr(config)?;
    let url = format!("http://{addr}/readyz");
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let request = format!(
            "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: cityhub-healthcheck\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        // The status line is all we need; the answer is a few bytes.
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("{url} did not answer HTTP"))?;
        anyhow::Ok(status)
    };
    let status = tokio::time::timeout(timeout, ask)
        .await
        .with_context(|| format!("{url} did not answer within {timeout:?}"))??;
    Ok(Readiness { url, status })
}

/// The sources of the hub `db` serves, for the command line (which acts as
/// the secretariat). Runs it starts end with the command.
fn sources(db: &Db, config: &Config) -> anyhow::Result<cityhub_sources::Sources> {
    Ok(cityhub_sources::Sources::new(
        hub_service(db.clone(), config),
        config.sources.clone(),
        tokio_util::sync::CancellationToken::new(),
        tokio_util::task::TaskTracker::new(),
    )?)
}

/// Connects a city's calendar (`cityhub source add`).
pub async fn add_source(
    db: &Db,
    config: &Config,
    city: &str,
    kind: cityhub_domain::SourceKind,
    url: &str,
) -> anyhow::Result<cityhub_domain::Source> {
    let sources = sources(db, config)?;
    let request = cityhub_app::service::SourceRequest {
        kind,
        url: url.to_owned(),
        city: Some(city.to_owned()),
        defaults: cityhub_domain::SourceDefaults::default(),
    };
    Ok(hub_service(db.clone(), config)
        .connect_source(
            &cityhub_domain::Actor::Secretariat,
            request,
            sources.first_run_at(),
        )
        .await?)
}

/// The connected calendars of one city or of all (`cityhub source list`),
/// each with how many activities it imported.
pub async fn list_sources(
    db: &Db,
    config: &Config,
    city: Option<&str>,
) -> anyhow::Result<Vec<(cityhub_domain::Source, i64)>> {
    let list = hub_service(db.clone(), config)
        .sources(&cityhub_domain::Actor::Secretariat, city)
        .await?;
    let mut out = Vec::with_capacity(list.len());
    for source in list {
        let count =
            cityhub_storage::repo::source::SourceRepo::imported_count(db.conn(), source.id).await?;
        out.push((source, count));
    }
    Ok(out)
}

/// Runs one source now and waits for the outcome, or (without an id)
/// every due source (`cityhub source sync`). Returns the sources run.
pub async fn sync_sources(
    db: &Db,
    config: &Config,
    id: Option<i64>,
) -> anyhow::Result<Vec<cityhub_domain::Source>> {
    let sources = sources(db, config)?;
    let service = hub_service(db.clone(), config);
    let actor = cityhub_domain::Actor::Secretariat;
    match id {
        Some(id) => {
            let id = cityhub_domain::SourceId(id);
            Ok(vec![sources.run_now(&actor, id).await?])
        }
        None => {
            sources.run_due().await?;
            Ok(service.sources(&actor, None).await?)
        }
    }
}

/// Removes a source (`cityhub source remove`): its upcoming activities are
/// cancelled, or kept as the city's own.
pub async fn remove_source(
    db: &Db,
    config: &Config,
    id: i64,
    keep_activities: bool,
) -> anyhow::Result<()> {
    hub_service(db.clone(), config)
        .remove_source(
            &cityhub_domain::Actor::Secretariat,
            cityhub_domain::SourceId(id),
            keep_activities,
            chrono::Utc::now().date_naive(),
        )
        .await?;
    Ok(())
}
