//! A real headless Chromium for end-to-end tests, driven over WebDriver
//! (`chromedriver` + `fantoccini`).
//!
//! `Browser::start()` spawns `chromedriver` on a free loopback port and
//! opens a headless session with a fresh profile; `goto`, `wait_for`,
//! `wait_until`, `eval` and `requested_hosts` cover what the tests need;
//! `close` ends the session and the driver (dropping a `Browser` kills the
//! driver too). Binaries: `CHROMIUM_BIN` (default `/usr/bin/chromium`) and
//! `CHROMEDRIVER_BIN` (default `/usr/bin/chromedriver`), Debian's packages,
//! which `.ci/run` installs. When they are missing, `start` returns `None`
//! and the test skips with a printed reason, except under `CI=true`, where it
//! fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

/// How long a wait may take before the test fails (generous: 2 shared cores).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A headless Chromium session and the `chromedriver` serving it.
pub struct Browser {
    client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session; `None` (with a
    /// printed reason) when the binaries are missing outside CI.
    pub async fn start() -> Option<Browser> {
        let chromium = binary("CHROMIUM_BIN", "/usr/bin/chromium");
        let chromedriver = binary("CHROMEDRIVER_BIN", "/usr/bin/chromedriver");
        if !chromium.exists() || !chromedriver.exists() {
            let reason = format!(
                "Chromium ({}) or chromedriver ({}) is not installed (apt-get install chromium chromium-driver)",
                chromium.display(),
                chromedriver.display()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{reason} and CI=true: browser tests must run in CI");
            }
            eprintln!("skipping: {reason}");
            return None;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        // chromedriver binds the port itself; retry with another one if it
        // was taken between our probe and its bind.
        for _attempt in 0..5 {
            let port = free_port();
            let mut driver = tokio::process::Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn chromedriver");
            let url = format!("http://127.0.0.1:{port}");
            if !driver_ready(&url, &mut driver).await {
                let _ = driver.kill().await;
                continue;
            }
            let mut caps = serde_json::Map::new();
            caps.insert("browserName".into(), json!("chrome"));
            caps.insert(
                "goog:chromeOptions".into(),
                json!({
                    "binary": chromium.display().to_string(),
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-dev-shm-usage",
                        "--window-size=1024,768",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                }),
            );
            let client = ClientBuilder::new(HttpConnector::new())
                .capabilities(caps)
                .connect(&url)
                .await
                .expect("open a headless Chromium session");
            return Some(Browser {
                client,
                driver,
                _profile: profile,
            });
        }
        panic!("chromedriver did not start on any of 5 ports");
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
    }

    /// Runs `script` (a function body: use `return`) in the page and
    /// returns its result.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` (a function body) returns a truthy value, and
    /// returns it; fails the test after [`DEADLINE`].
    pub async fn wait_until(&self, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let value = self.eval(script).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out waiting for: {script}\npage:\n{}",
                    self.client.source().await.unwrap_or_default()
                );
            }
            // WebDriver announces no change of a script's value: polled,
            // under `DEADLINE`.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for an element matching the CSS `selector` in the document.
    pub async fn wait_for(&self, selector: &str) -> Element {
        self.client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
    }

    /// Every host (`host:port`) the current page requested: the document and
    /// each resource (scripts, styles, fetches), from the Resource Timing
    /// entries. Tests compare it with the hosts they allow.
    pub async fn requested_hosts(&self) -> Vec<String> {
        let value = self
            .eval(
                "const names = [location.href]
                   .concat(performance.getEntriesByType('resource').map(e => e.name));
                 return [...new Set(names.filter(n => /^https?:/.test(n))
                   .map(n => new URL(n).host))].sort();",
            )
            .await;
        serde_json::from_value(value).expect("a list of hosts")
    }

    /// Ends the session (Chromium exits) and stops the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

impl Drop for Browser {
    /// `chromedriver` dies with the `Browser` (`kill_on_drop`), but the
    /// Chromium it started would outlive it when a test fails before
    /// `close`: it is ended here, found by its profile directory, which is
    /// this `Browser`'s alone.
    fn drop(&mut self) {
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &profile])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Waits until the driver answers `/status` with `ready: true`.
async fn driver_ready(url: &str, driver: &mut tokio::process::Child) -> bool {
    let http = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Ok(Some(_)) = driver.try_wait() {
            return false;
        }
        if let Ok(resp) = http.get(format!("{url}/status")).send().await
            && let Ok(body) = resp.json::<Value>().await
            && body["value"]["ready"] == json!(true)
        {
            return true;
        }
        // An external process announces nothing: its readiness is polled,
        // under `DEADLINE`.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The axe-core script the tests inject: `AXE_CORE_JS`, else where `npm
/// install -g axe-core` puts it (`.ci/run` does).
fn axe_source() -> Option<&'static str> {
    static AXE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let candidates = std::env::var("AXE_CORE_JS")
            .map(|p| vec![p])
            .unwrap_or_else(|_| {
                vec![
                    "/usr/lib/node_modules/axe-core/axe.min.js".into(),
                    "/usr/local/lib/node_modules/axe-core/axe.min.js".into(),
                ]
            });
        candidates
            .iter()
            .find_map(|path| std::fs::read_to_string(path).ok())
    })
    .as_deref()
}

/// Whether axe-core is there; missing, the caller skips (with a printed
/// reason), except under `CI=true`, where this fails the test.
pub fn axe_available() -> bool {
    if axe_source().is_some() {
        return true;
    }
    let reason = "axe-core is not installed (npm install -g axe-core, or set AXE_CORE_JS)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} and CI=true: the accessibility checks must run in CI");
    }
    eprintln!("skipping: {reason}");
    false
}

impl Browser {
    /// Runs axe-core (WCAG 2.0–2.2 A and AA rules) on the page as it is,
    /// and fails on any serious or critical violation. Call
    /// [`axe_available`] first (a test without axe-core skips).
    pub async fn axe(&self, screen: &str) {
        let axe = axe_source().unwrap_or_else(|| panic!("axe-core is missing ({screen})"));
        self.eval(&format!("{axe}\nreturn typeof window.axe;"))
            .await;
        let result = self
            .client()
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } })
                   .then(r => done({ ok: true, violations: r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                  nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')) })) }))
                   .catch(e => done({ ok: false, error: String(e) }));",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("axe on {screen}: {e}"));
        assert_eq!(result["ok"], true, "axe failed on {screen}: {result}");
        assert_eq!(
            result["violations"],
            json!([]),
            "serious or critical accessibility violations on {screen}"
        );
    }
}
