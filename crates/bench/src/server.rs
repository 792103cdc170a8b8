//! The hub under test: the real `cityhub serve` binary started as a child
//! process (so its CPU time and memory can be read from `/proc/<pid>`), a
//! hub started in-process (for smoke runs), or a hub already running at a
//! URL. Also reads a process's CPU seconds and resident memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// CPU time and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_secs: f64,
    /// Resident memory now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident memory, in KiB (`VmHWM`, since start or the last reset).
    pub peak_rss_kib: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Reads CPU seconds and memory of process `pid` (`"self"` for this one).
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces, closed by ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_secs: (utime + stime) / clock_ticks(),
        rss_kib: kib("VmRSS:"),
        peak_rss_kib: kib("VmHWM:"),
    })
}

/// Busy CPU seconds of the whole machine since boot (all cores, from
/// `/proc/stat`): compared with the hub's and the bench's own, it shows
/// whether something else was running during a measurement.
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy excludes idle and iowait.
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(busy / clock_ticks())
}

/// Resets the peak resident memory of `pid` to its current value (Linux
/// `clear_refs` 5), so a scenario's peak is its own.
pub fn reset_peak(pid: &str) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// How the hub under test runs.
pub enum HubProcess {
    /// A child process (`cityhub serve`).
    Child(Child),
    /// In this process; dropped to stop it.
    InProcess(Option<oneshot::Sender<()>>),
    /// Somewhere else; not ours to stop or measure.
    External,
}

/// A hub under test and where it listens.
pub struct Hub {
    /// `host:port` it listens on.
    pub addr: SocketAddr,
    /// How it runs.
    pub process: HubProcess,
    /// What it is, for the report.
    pub describe: String,
}

impl Hub {
    /// The process to measure: the child's pid, `self` in-process, none outside.
    pub fn pid(&self) -> Option<String> {
        match &self.process {
            HubProcess::Child(c) => c.id().map(|p| p.to_string()),
            HubProcess::InProcess(_) => Some("self".into()),
            HubProcess::External => None,
        }
    }

    /// Whether the measured process is this one (figures then include the load generator).
    pub fn in_process(&self) -> bool {
        matches!(self.process, HubProcess::InProcess(_))
    }

    /// Stops the hub if it is ours.
    pub async fn stop(mut self) {
        match &mut self.process {
            HubProcess::Child(child) => {
                // SIGTERM first, so the hub runs its graceful shutdown.
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                if tokio::time::timeout(Duration::from_secs(15), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
            HubProcess::InProcess(stop) => {
                if let Some(tx) = stop.take() {
                    let _ = tx.send(());
                }
            }
            HubProcess::External => {}
        }
    }
}

/// A free port on 127.0.0.1 (bound, then released for the child to take).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The `cityhub` binary next to this one (both live in the same target dir).
pub fn default_server_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join("cityhub");
    candidate.is_file().then_some(candidate)
}

/// Starts `bin serve` on `database`, on a free port, and waits until it answers.
/// `settings` are further `CITYHUB_*` variables, set after the bench's own.
pub async fn spawn_child(
    bin: &Path,
    database: &str,
    cache: bool,
    settings: &[(String, String)],
) -> anyhow::Result<Hub> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .env("CITYHUB_CONFIG", "/nonexistent/cityhub-bench.toml")
        .env("CITYHUB_DATABASE_URL", database)
        .env("CITYHUB_LISTEN", addr.to_string())
        .env("CITYHUB_LOG_FILTER", "warn")
        .env("CITYHUB_CACHE_ENABLED", cache.to_string())
        // Every bench subscriber connects from 127.0.0.1 without a token.
        .env(
            "CITYHUB_EVENTS_MAX_ANONYMOUS_SOCKETS_PER_ADDRESS",
            "1000000",
        )
        // The import scenario serves its calendar from loopback and syncs
        // it itself.
        .env("CITYHUB_SOURCES_ALLOW_PRIVATE_NETWORKS", "true")
        .env("CITYHUB_SOURCES_SCHEDULER", "false")
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .env_remove("RUST_LOG");
    start(
        command,
        addr,
        format!(
            "child process: {} serve (cache {})",
            bin.display(),
            if cache { "on" } else { "off" }
        ),
    )
    .await
}

/// Starts this binary's `serve-baseline` on `database`, on a free port.
pub async fn spawn_baseline_child(database: &str) -> anyhow::Result<Hub> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let exe = std::env::current_exe()?;
    let mut command = Command::new(&exe);
    command
        .arg("serve-baseline")
        .arg("--database")
        .arg(database)
        .arg("--listen")
        .arg(addr.to_string());
    start(
        command,
        addr,
        "child process: cityhub-bench serve-baseline".into(),
    )
    .await
}

async fn start(mut command: Command, addr: SocketAddr, describe: String) -> anyhow::Result<Hub> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {describe}"))?;
    let hub = Hub {
        addr,
        process: HubProcess::Child(child),
        describe,
    };
    if let Err(e) = wait_ready(addr).await {
        hub.stop().await;
        return Err(e);
    }
    Ok(hub)
}

/// Starts a hub in this process on `database`; `settings` are `CITYHUB_*`
/// variables applied to its configuration as the binary would.
pub async fn spawn_in_process(
    database: &str,
    cache: bool,
    settings: &[(String, String)],
) -> anyhow::Result<Hub> {
    // The same settings as a child's (see `spawn_child`), then `settings`.
    let mut vars: Vec<(String, String)> = [
        ("CITYHUB_DATABASE_URL", database),
        ("CITYHUB_LISTEN", "127.0.0.1:0"),
        (
            "CITYHUB_CACHE_ENABLED",
            if cache { "true" } else { "false" },
        ),
        // Every bench subscriber connects from 127.0.0.1 without a token.
        (
            "CITYHUB_EVENTS_MAX_ANONYMOUS_SOCKETS_PER_ADDRESS",
            "1000000",
        ),
        // The import scenario serves its calendar from loopback and syncs
        // it itself.
        ("CITYHUB_SOURCES_ALLOW_PRIVATE_NETWORKS", "true"),
        ("CITYHUB_SOURCES_SCHEDULER", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.retain(|(k, _)| !settings.iter().any(|(s, _)| s == k));
    vars.extend(settings.iter().cloned());
    let config = cityhub::config::Config::load_from(
        std::path::Path::new("/nonexistent/cityhub-bench.toml"),
        vars,
    )?;
    let running = cityhub::app::spawn(&config).await?;
    let addr = running.addr;
    let tx = running.stop;
    wait_ready(addr).await?;
    Ok(Hub {
        addr,
        process: HubProcess::InProcess(Some(tx)),
        describe: "in-process hub (figures include the load generator)".into(),
    })
}

/// A hub already running at `url` (`http://host:port`, any path).
pub async fn external(url: &str) -> anyhow::Result<Hub> {
    let rest = url
        .strip_prefix("http://")
        .context("--url must start with http:// (TLS is not supported)")?;
    let hostport = rest.split('/').next().unwrap_or_default();
    let addr = tokio::net::lookup_host(hostport)
        .await?
        .next()
        .with_context(|| format!("cannot resolve {hostport}"))?;
    if !addr.ip().is_loopback() {
        bail!("load is only sent to loopback addresses (got {addr})");
    }
    wait_ready(addr).await?;
    Ok(Hub {
        addr,
        process: HubProcess::External,
        describe: format!("external hub at {url}"),
    })
}

/// Waits until `GET /healthz` answers (60 s at most).
pub async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((status, _)) = crate::load::get(addr, "/healthz").await
            && status == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the hub at {addr} did not become healthy within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
