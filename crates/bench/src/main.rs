//! `cityhub-bench`: generates a synthetic Creative Cities network at scale
//! and runs closed-loop load scenarios against a real hub, reporting
//! throughput, latency percentiles, errors, and the hub's CPU and memory.

#![expect(
    clippy::print_stdout,
    reason = "the benchmark prints its table and RESULT lines on stdout"
)]

mod abuse;
mod baseline;
mod bulk;
mod fanout;
mod generate;
mod import;
mod load;
mod poll;
mod report;
mod run;
mod scenarios;
mod server;
mod words;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Benchmarks for cityhub: a synthetic network and load scenarios.
#[derive(Parser)]
#[command(name = "cityhub-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; boxing the options would only add noise"
)]
enum Command {
    /// Generate a synthetic network into an empty database (reproducible from the seed).
    Generate {
        /// Database URL (`sqlite://file.db` or `postgres://…`); created and migrated.
        #[arg(long)]
        database: String,
        /// Member cities.
        #[arg(long, default_value_t = 350)]
        cities: usize,
        /// Activities.
        #[arg(long, default_value_t = 10_000)]
        activities: usize,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Activities per transaction.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
    },
    /// Run a scenario (or `all`) and report it.
    Run {
        /// listing, detail, overview, search, dashboard, calendar, feed, stats, stats-two-fields, baseline, fanout, publish, import, poll or all.
        scenario: String,
        /// A running hub to load (loopback only), e.g. http://127.0.0.1:4000.
        #[arg(long)]
        url: Option<String>,
        /// The database: a hub is started on it (unless --url), and tokens and rows use it.
        #[arg(long)]
        database: Option<String>,
        /// Closed-loop workers (default 32 for reads, one per publishing city).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Measured seconds per scenario (`10` or `10s`).
        #[arg(long, value_parser = seconds)]
        duration: Option<Duration>,
        /// Unmeasured warm-up seconds before each scenario.
        #[arg(long, value_parser = seconds)]
        warmup: Option<Duration>,
        /// The `cityhub` binary to start (default: the one next to this binary).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// Start the hub inside this process (figures then include the load generator).
        #[arg(long)]
        in_process: bool,
        /// Every scenario for about 2 s with tiny sizes: checks correctness, not speed.
        #[arg(long)]
        smoke: bool,
        /// Fan-out: WebSocket subscribers.
        #[arg(long)]
        subscribers: Option<usize>,
        /// Fan-out: connections opened per second.
        #[arg(long)]
        ramp_rate: Option<f64>,
        /// Fan-out: publishes to deliver.
        #[arg(long)]
        publishes: Option<usize>,
        /// Read scenarios: requests offered per second, open loop (latency
        /// counted from each request's due time, so queueing shows);
        /// fan-out: publishes per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Publish: publishes in all (instead of a measured window),
        /// measured in buckets.
        #[arg(long)]
        total: Option<u64>,
        /// Publish with --total: publishes per bucket (default a tenth).
        #[arg(long)]
        bucket: Option<u64>,
        /// Fan-out: distinct subscription documents, spread evenly over the
        /// subscribers (1: all the same).
        #[arg(long, default_value_t = 1)]
        selections: usize,
        /// Fan-out on PostgreSQL: hold a write transaction open in the
        /// server's `postgres` database for the whole run.
        #[arg(long)]
        foreign_write: bool,
        /// Publish: cities publishing at once.
        #[arg(long, default_value_t = 20)]
        publishers: usize,
        /// Import: events in the city's calendar (default 5000; 50 with --smoke).
        #[arg(long)]
        events: Option<usize>,
        /// Poll: calendars connected and polled (default 200; 5 with --smoke).
        #[arg(long)]
        sources: Option<usize>,
        /// Poll: how often each source is due (`60` or `60s`; default 60 s, 2 s with --smoke).
        #[arg(long, value_parser = seconds)]
        interval: Option<Duration>,
        /// Keep the hub's response cache on (`cache.enabled`); off by default,
        /// so every request reaches the database.
        #[arg(long)]
        cache: bool,
    },
    /// Serve the plain-axum baseline listing (started by the `baseline` scenario).
    ServeBaseline {
        /// Database URL.
        #[arg(long)]
        database: String,
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.trim_end_matches('s')
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{text}' is not a number of seconds"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate {
            database,
            cities,
            activities,
            seed,
            batch,
        } => {
            generate::generate(&generate::GenerateOptions {
                database,
                cities,
                activities,
                seed,
                batch,
            })
            .await
        }
        Command::ServeBaseline { database, listen } => baseline::serve(&database, listen).await,
        Command::Run {
            scenario,
            url,
            database,
            concurrency,
            duration,
            warmup,
            server_bin,
            in_process,
            smoke,
            subscribers,
            ramp_rate,
            publishes,
            rate,
            selections,
            foreign_write,
            publishers,
            cache,
            total,
            bucket,
            events,
            sources,
            interval,
        } => {
            let scenario_is_fanout = scenario == "fanout";
            let options = run::RunOptions {
                scenario,
                url,
                database,
                concurrency,
                duration: duration.unwrap_or(Duration::from_secs(if smoke { 2 } else { 10 })),
                warmup: warmup.unwrap_or(Duration::from_millis(if smoke { 300 } else { 2_000 })),
                server_bin,
                in_process,
                smoke,
                fanout: fanout::FanoutOptions {
                    subscribers: subscribers.unwrap_or(if smoke { 20 } else { 1_000 }),
                    ramp_rate: ramp_rate.unwrap_or(if smoke { 200.0 } else { 1_000.0 }),
                    publishes: publishes.unwrap_or(if smoke { 5 } else { 50 }),
                    rate: rate.unwrap_or(10.0),
                    grace: Duration::from_secs(10),
                    selections: selections.max(1),
                    foreign_write,
                },
                publishers,
                cache,
                rate: if scenario_is_fanout { None } else { rate },
                total,
                bucket,
                events: events.unwrap_or(if smoke { 50 } else { 5_000 }),
                sources: sources.unwrap_or(if smoke { 5 } else { 200 }),
                interval: interval.unwrap_or(Duration::from_secs(if smoke { 2 } else { 60 })),
            };
            if run::run(options).await? {
                Ok(())
            } else {
                eprintln!("cityhub-bench: some correctness checks failed (see FAILED rows)");
                std::process::exit(1);
            }
        }
    }
}
