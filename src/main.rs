//! `cityhub`: the command line. It parses arguments and configuration,
//! starts tracing, and calls the library; nothing else lives here.

#![expect(
    clippy::print_stdout,
    reason = "the command line prints its results on stdout"
)]

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use cityhub::app;
use cityhub::config::Config;
use cityhub::ops;
use clap::{Args, Parser, Subcommand};

/// mimalloc instead of glibc's allocator: a profile of the uncached city
/// listing spent about 29 % of the hub's CPU in glibc `malloc`/`free`
/// (`_int_malloc`, `malloc_consolidate`, `unlink_chunk`; BENCHMARKS.md),
/// for the many short-lived allocations of rows, GraphQL values and JSON.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The UNESCO Creative Cities Network hub: one GraphQL schema to publish,
/// query and watch the network's activities.
#[derive(Parser)]
#[command(name = "cityhub", version, about, long_about = None)]
struct Cli {
    /// Configuration file (missing is fine: defaults and CITYHUB_* apply).
    #[arg(
        long,
        global = true,
        env = "CITYHUB_CONFIG",
        default_value = "cityhub.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve on a local SQLite file, migrated and seeded with the network's activities; prints the URL and ready tokens.
    Demo {
        /// Address to listen on.
        #[arg(long)]
        listen: Option<String>,
        /// Database URL (default: sqlite://cityhub.db in the working directory).
        #[arg(long)]
        database: Option<String>,
    },
    /// Serve with cityhub.toml and CITYHUB_* settings.
    Serve,
    /// Schema migrations.
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Load the network's dataset (idempotent).
    Seed,
    /// Issue, list and revoke tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Connect, list, run and remove cities' calendars (as the secretariat).
    Source {
        #[command(subcommand)]
        action: SourceAction,
    },
    /// Manage signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Print the GraphQL SDL.
    Schema,
    /// Ask the hub this configuration describes whether it is ready
    /// (`GET /readyz` on http.admin_listen when set, else on listen; an
    /// unspecified address is asked on loopback): exit 0 when it answers
    /// 200, 1 otherwise. The container image's health check.
    Healthcheck {
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Print the effective configuration (defaults, then the file, then
    /// CITYHUB_* variables) as JSON, the database URL's password hidden;
    /// fails on a CITYHUB_* variable that sets nothing.
    Config,
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply every pending migration (the default).
    Up,
    /// Roll back migrations.
    Down {
        /// How many to roll back.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// Show each migration and whether it is applied.
    Status,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Issue a token and print it (shown once).
    Issue(IssueArgs),
    /// List issued tokens (never the tokens themselves).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id (jti).
        id: String,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct Subject {
    /// Slug of the member city the token publishes as.
    #[arg(long)]
    city: Option<String>,
    /// A secretariat token.
    #[arg(long)]
    secretariat: bool,
}

#[derive(Args)]
struct IssueArgs {
    #[command(flatten)]
    subject: Subject,
    /// Lifetime, e.g. 90s, 15m, 12h, 30d (default: auth.default_ttl_secs).
    #[arg(long)]
    ttl: Option<String>,
    /// A label to recognise the token by.
    #[arg(long)]
    label: Option<String>,
    /// Print the publishing desk's sign-in link (`<public URL>/publish#token=…`)
    /// instead of the bare token.
    #[arg(long)]
    link: bool,
}

#[derive(Subcommand)]
enum SourceAction {
    /// Connect a calendar a city already publishes; prints its id.
    Add {
        /// Slug of the city whose calendar it is.
        #[arg(long)]
        city: String,
        /// What it publishes: `icalendar` (the default) or `json-ld`.
        #[arg(long, default_value = "icalendar")]
        kind: String,
        /// Where the hub fetches it (http or https).
        url: String,
    },
    /// List connected calendars: id, city, kind, status, imported count, URL, last error.
    List {
        /// Only this city's.
        #[arg(long)]
        city: Option<String>,
    },
    /// Run one source now and print its outcome; without an id, run every due source.
    Sync {
        /// The source's id.
        id: Option<i64>,
    },
    /// Remove a source: its upcoming activities are cancelled, or kept with --keep-activities.
    Remove {
        /// The source's id.
        id: i64,
        /// Keep its activities as the city's own.
        #[arg(long)]
        keep_activities: bool,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Add a new signing key; older keys keep verifying their tokens.
    Rotate,
    /// Retire a key: tokens it signed stop verifying.
    Retire {
        /// The key id (kid).
        kid: String,
    },
    /// List keys.
    List,
    /// Seal every private key in the database under a new key-encryption
    /// key, in one transaction (plaintext keys are sealed too); then set
    /// auth.key_encryption_key_file to it and restart every instance.
    Rewrap {
        /// The new key-encryption key's file (`keys kek generate`).
        #[arg(long)]
        new_kek: PathBuf,
        /// The key-encryption key the keys are sealed under now (default:
        /// auth.key_encryption_key_file).
        #[arg(long)]
        old_kek: Option<PathBuf>,
    },
    /// Key-encryption keys: private keys in the database are sealed under
    /// the one auth.key_encryption_key_file names.
    Kek {
        #[command(subcommand)]
        action: KekAction,
    },
}

#[derive(Subcommand)]
enum KekAction {
    /// Write a new random key-encryption key (mode 0600; an existing file
    /// is never overwritten) and print its fingerprint.
    Generate {
        /// The file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the fingerprint of a key-encryption key file (errors name
    /// keys by it).
    Fingerprint {
        /// The key-encryption key's file.
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Schema) {
        print!("{}", cityhub_graphql::sdl());
        return Ok(());
    }
    let mut config = Config::load(&cli.config)?;
    match &cli.command {
        Command::Healthcheck { timeout } => {
            let readiness =
                ops::healthcheck(&config, std::time::Duration::from_secs(*timeout)).await?;
            if !readiness.is_ready() {
                anyhow::bail!("not ready: {} answered {}", readiness.url, readiness.status);
            }
            println!("ready: {}", readiness.url);
            return Ok(());
        }
        Command::Config => {
            let vars: Vec<(String, String)> = std::env::vars().collect();
            let unknown = cityhub::config::unknown_variables(&vars);
            if !unknown.is_empty() {
                anyhow::bail!("these variables set nothing: {}", unknown.join(", "));
            }
            let mut shown = serde_json::to_value(&config)?;
            shown["database"]["url"] = cityhub_storage::db::redact_url(&config.database.url).into();
            // `cityhub config | head` must not panic on a closed pipe.
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&shown)?
            );
            return Ok(());
        }
        _ => {}
    }
    if let Command::Demo { listen, database } = &cli.command {
        if let Some(l) = listen {
            config.listen = l.clone();
        }
        if let Some(d) = database {
            config.database.url = d.clone();
        }
        config.validate()?;
    }
    let telemetry = cityhub::telemetry::init(&config)?;
    let vars: Vec<(String, String)> = std::env::vars().collect();
    for variable in cityhub::config::unknown_variables(&vars) {
        tracing::warn!(%variable, "this variable sets nothing (see docs/configuration.md)");
    }
    let outcome = run(cli.command, config).await;
    telemetry.shutdown().await;
    outcome
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Schema | Command::Healthcheck { .. } | Command::Config => Ok(()),
        Command::Demo { .. } => serve(config, Mode::Demo).await,
        Command::Serve => serve(config, Mode::Serve).await,
        Command::Migrate { action } => migrate(config, action.unwrap_or(MigrateAction::Up)).await,
        Command::Seed => {
            let db = app::connect(&config).await?;
            db.migrate_up().await?;
            let report = ops::seed(&db, &config).await?;
            println!(
                "seeded: {} cities created ({} already there), {} activities created ({} already there)",
                report.cities_created,
                report.cities_existing,
                report.activities_created,
                report.activities_existing
            );
            Ok(())
        }
        Command::Token { action } => token(config, action).await,
        Command::Keys { action } => keys(config, action).await,
        Command::Source { action } => source(config, action).await,
    }
}

fn print_source(source: &cityhub_domain::Source, imported: Option<i64>) {
    println!(
        "{}\tcity:{}\t{}\t{}\t{}\t{}\t{}",
        source.id,
        source.city_id,
        source.kind,
        source.status(),
        imported.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        source.url,
        source.last_error.as_deref().unwrap_or("")
    );
}

async fn source(config: Config, action: SourceAction) -> anyhow::Result<()> {
    let db = app::connect(&config).await?;
    db.migrate_up().await?;
    match action {
        SourceAction::Add { city, kind, url } => {
            let kind = match kind.to_ascii_lowercase().replace('_', "-").as_str() {
                "icalendar" | "ical" | "ics" => cityhub_domain::SourceKind::Icalendar,
                "json-ld" | "jsonld" => cityhub_domain::SourceKind::JsonLd,
                other => anyhow::bail!("--kind '{other}': use icalendar or json-ld"),
            };
            let source = ops::add_source(&db, &config, &city, kind, &url).await?;
            eprintln!(
                "connected source {} for {city}; its first run is due now",
                source.id
            );
            println!("{}", source.id);
        }
        SourceAction::List { city } => {
            for (source, imported) in ops::list_sources(&db, &config, city.as_deref()).await? {
                print_source(&source, Some(imported));
            }
        }
        SourceAction::Sync { id } => {
            for source in ops::sync_sources(&db, &config, id).await? {
                print_source(&source, None);
            }
        }
        SourceAction::Remove {
            id,
            keep_activities,
        } => {
            ops::remove_source(&db, &config, id, keep_activities).await?;
            println!("removed source {id}");
        }
    }
    Ok(())
}

/// How `serve` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `cityhub serve`: serve the database as it is.
    Serve,
    /// `cityhub demo`: seed the network first and print ready tokens.
    Demo,
}

/// Serves until Ctrl-C or SIGTERM; the demo first seeds the network and
/// prints its URL with ready tokens.
async fn serve(config: Config, mode: Mode) -> anyhow::Result<()> {
    raise_open_files_limit();
    let addr = config.listen_addr()?;
    let mut hub = app::build(&config).await?;
    let listener = app::bind(addr, config.http.listen_backlog)
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    app::start_admin(&mut hub, &config)?;
    if mode == Mode::Demo {
        print_demo(
            &config,
            hub.service.db(),
            &format!("http://{local}/graphql"),
        )
        .await?;
    }
    tracing::info!(addr = %local, database = %cityhub_storage::db::redact_url(&config.database.url), "cityhub serving");
    app::serve(
        listener,
        hub,
        app::shutdown_signal(),
        app::ServeOptions::from_config(&config),
    )
    .await?;
    Ok(())
}

async fn print_demo(config: &Config, db: &cityhub_storage::Db, url: &str) -> anyhow::Result<()> {
    let report = ops::seed(db, config).await?;
    // A closed stdout (`cityhub demo | head`) must not stop the server.
    let mut out = std::io::stdout().lock();
    macro_rules! say {
        ($($arg:tt)*) => { let _ = writeln!(out, $($arg)*); };
    }
    let week = Some(7 * 86_400);
    let (city_token, _) =
        ops::issue_token(db, config, Some("lyon"), week, Some("demo".into())).await?;
    let (secretariat_token, _) =
        ops::issue_token(db, config, None, week, Some("demo".into())).await?;
    say!(
        "cityhub demo: {} cities and {} activities seeded ({} and {} new)",
        report.cities_created + report.cities_existing,
        report.activities_created + report.activities_existing,
        report.cities_created,
        report.activities_created
    );
    say!();
    let desk = format!(
        "{}/publish#token={city_token}",
        url.trim_end_matches("/graphql")
    );
    say!("  GraphQL and GraphiQL: {url}");
    say!("  Publishing desk (Lyon): {desk}");
    say!("  City token (Lyon, 7 days):   {city_token}");
    say!("  Secretariat token (7 days):  {secretariat_token}");
    say!();
    say!("  Try: curl -s {url} -H 'Content-Type: application/json' \\");
    say!("         -d '{{\"query\":\"{{ network {{ name cityCount activityCount }} }}\"}}'");
    say!();
    Ok(())
}

async fn migrate(config: Config, action: MigrateAction) -> anyhow::Result<()> {
    let db = app::connect(&config).await?;
    match action {
        MigrateAction::Up => {
            db.migrate_up().await?;
            println!("migrations applied");
        }
        MigrateAction::Down { steps } => {
            db.migrate_down(Some(steps)).await?;
            println!("rolled back {steps} migration(s)");
        }
        MigrateAction::Status => {
            for (name, applied) in db.migration_status().await? {
                println!("{} {name}", if applied { "applied" } else { "pending" });
            }
        }
    }
    Ok(())
}

async fn token(config: Config, action: TokenAction) -> anyhow::Result<()> {
    let db = app::connect(&config).await?;
    db.migrate_up().await?;
    match action {
        TokenAction::Issue(args) => {
            let ttl = match &args.ttl {
                Some(text) => Some(cityhub_auth::parse_ttl(text).with_context(|| {
                    format!("--ttl '{text}' is not a duration like 90s, 12h or 30d")
                })?),
                None => None,
            };
            let city = if args.subject.secretariat {
                None
            } else {
                args.subject.city.as_deref()
            };
            let (token, record) = ops::issue_token(&db, &config, city, ttl, args.label).await?;
            eprintln!(
                "issued token {} for {}, expires {}",
                record.id,
                record.subject,
                record.expires_at.to_rfc3339()
            );
            if args.link {
                println!("{}", ops::desk_link(&config, &token)?);
            } else {
                println!("{token}");
            }
        }
        TokenAction::List => {
            for t in ops::list_tokens(&db).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at < chrono::Utc::now() {
                    "expired"
                } else {
                    "valid"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.subject,
                    state,
                    t.issued_at.to_rfc3339(),
                    t.expires_at.to_rfc3339(),
                    t.label.unwrap_or_default()
                );
            }
        }
        TokenAction::Revoke { id } => {
            ops::revoke_token(&db, &id).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

async fn keys(config: Config, action: KeysAction) -> anyhow::Result<()> {
    // Key-encryption keys are files: no database needed.
    if let KeysAction::Kek { action } = action {
        match action {
            KekAction::Generate { out } => {
                let fingerprint = ops::generate_kek(&out)?;
                println!(
                    "wrote key-encryption key {} (fingerprint {fingerprint})",
                    out.display()
                );
            }
            KekAction::Fingerprint { file } => println!("{}", ops::kek_fingerprint(&file)?),
        }
        return Ok(());
    }
    let db = app::connect(&config).await?;
    db.migrate_up().await?;
    match action {
        KeysAction::Rotate => println!("new signing key {}", ops::rotate_keys(&db, &config).await?),
        KeysAction::Retire { kid } => {
            ops::retire_key(&db, &config, &kid).await?;
            println!("retired {kid}");
        }
        KeysAction::List => {
            for (kid, retired) in ops::list_keys(&db, &config).await? {
                println!("{kid}\t{}", if retired { "retired" } else { "active" });
            }
        }
        KeysAction::Rewrap { new_kek, old_kek } => {
            let report = ops::rewrap_keys(&db, &config, old_kek.as_deref(), &new_kek).await?;
            println!(
                "{} key(s) sealed anew and {} plaintext key(s) sealed under key-encryption key {} ({} already under it)",
                report.rewrapped.len(),
                report.sealed.len(),
                report.kek,
                report.unchanged
            );
            println!(
                "now set auth.key_encryption_key_file to {} on every instance and restart them",
                new_kek.display()
            );
        }
        // Answered above, without a database.
        KeysAction::Kek { .. } => {}
    }
    Ok(())
}

/// Raises the open-files limit to its hard maximum: each WebSocket client
/// holds a socket.
fn raise_open_files_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-files limit");
    }
}
