//! A supergraph that works: the hub and the sample city subgraph of
//! `deploy/federation` (accessibility information keyed by the hub's
//! activity `id`), composed from the running subgraphs by the example's own
//! `compose.mjs` (`@theguild/federation-composition`) and served by a real
//! Hive Gateway, each on a free loopback port, with the example's
//! `gateway.config.mjs`. One query through the gateway reads an activity's
//! hub fields and its accessibility together; the hub's errors and its
//! reading of a forwarded token are checked through the gateway too.
//!
//! Needs Node.js 20 or newer (`NODE_BIN`, default `node` on the `PATH`) and
//! the example's packages (`npm ci` in `deploy/federation`, which `.ci/run`
//! does). When either is missing the tests skip with a printed reason,
//! except under `CI=true`, where they fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{Backend, TEST_REQUEST_ID, TestHub};

/// How long a process may take to start or a step to finish before the test
/// fails (generous: two shared cores, Node.js loading a gateway).
const DEADLINE: Duration = Duration::from_secs(60);

/// The oldest Node.js the example's packages support (`engines` of
/// `@graphql-hive/gateway`).
const MIN_NODE_MAJOR: u32 = 20;

/// An activity's hub fields, as the test reads them from the hub and then
/// through the gateway.
const HUB_FIELDS: &str = "id slug title kind startDate hosts { slug name }";

/// The sample subgraph's fields of an activity.
const ACCESSIBILITY_FIELDS: &str =
    "accessibility { stepFreeAccess signLanguages liveCaptions hearingLoop notes contact }";

/// The example in `deploy/federation` and the Node.js that runs it.
struct Example {
    node: PathBuf,
    dir: PathBuf,
}

impl Example {
    /// The example, when Node.js and its packages are installed; `None` with a
    /// printed reason otherwise, or a failure under `CI=true`.
    fn find() -> Option<Example> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/federation");
        let node =
            std::env::var_os("NODE_BIN").map_or_else(|| PathBuf::from("node"), PathBuf::from);
        let reason = match Self::missing(&node, &dir) {
            None => return Some(Example { node, dir }),
            Some(reason) => reason,
        };
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason} and CI=true: the federation tests must run in CI");
        }
        // Written to stderr itself: the harness hides the captured output
        // of a passing test, and a skip must be seen.
        let test = std::thread::current()
            .name()
            .unwrap_or("a federation test")
            .to_owned();
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
        None
    }

    /// What is missing to run the example, if anything.
    fn missing(node: &Path, dir: &Path) -> Option<String> {
        let version = std::process::Command::new(node)
            .arg("--version")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
        let Some(version) = version else {
            return Some(format!(
                "Node.js ({}) does not run (set NODE_BIN)",
                node.display()
            ));
        };
        let major = version
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        if major.is_none_or(|m| m < MIN_NODE_MAJOR) {
            return Some(format!(
                "Node.js {version} is older than {MIN_NODE_MAJOR}, which the example's packages need"
            ));
        }
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("package.json"))
                .expect("deploy/federation/package.json"),
        )
        .expect("package.json is JSON");
        let dependencies = manifest["dependencies"]
            .as_object()
            .expect("package.json lists dependencies");
        let absent: Vec<&str> = dependencies
            .keys()
            .map(String::as_str)
            .filter(|name| {
                !dir.join("node_modules")
                    .join(name)
                    .join("package.json")
                    .exists()
            })
            .collect();
        if !absent.is_empty() {
            return Some(format!(
                "the example's packages are not installed ({}; run `npm ci` in deploy/federation)",
                absent.join(", ")
            ));
        }
        None
    }

    /// A `node` command in the example's directory, so the gateway finds
    /// `gateway.config.mjs` there as the README's commands do. Its output
    /// goes to `log`; it is killed when dropped.
    fn command(&self, script: &str, log: &Path) -> Command {
        let mut command = Command::new(&self.node);
        command
            .arg(self.dir.join(script))
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file(log))
            .stderr(log_file(log))
            .kill_on_drop(true);
        command
    }
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("a log file")
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The hub, the sample subgraph and the gateway over them. Dropping it kills
/// the Node.js processes; the hub stops with its [`TestHub`].
struct Supergraph {
    // Fields drop in this order: the processes end before their directory
    // (the supergraph file, the data, the logs) is removed.
    _gateway: Child,
    _subgraph: Child,
    dir: tempfile::TempDir,
    hub: TestHub,
    gateway_url: String,
    client: reqwest::Client,
}

impl Supergraph {
    /// Starts the sample subgraph with `accessibility` as its data (the
    /// hub's activity ids mapped to their accessibility), composes the
    /// supergraph from it and `hub`, and serves it with Hive Gateway.
    async fn start(example: &Example, hub: TestHub, accessibility: &Value) -> Supergraph {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("accessibility.json");
        std::fs::write(&data, accessibility.to_string()).expect("write the subgraph's data");

        let subgraph_log = dir.path().join("subgraph.log");
        let mut subgraph = example
            .command("subgraph/server.mjs", &subgraph_log)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("ACCESSIBILITY_DATA", &data)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the sample subgraph");
        let subgraph_url = first_line(&mut subgraph, &subgraph_log)
            .await
            .rsplit(' ')
            .next()
            .expect("the subgraph prints its URL")
            .to_owned();

        let supergraph = dir.path().join("supergraph.graphql");
        let compose_log = dir.path().join("compose.log");
        let composed = tokio::time::timeout(
            DEADLINE,
            example
                .command("compose.mjs", &compose_log)
                .arg("--out")
                .arg(&supergraph)
                .arg(format!("hub={}", hub.url()))
                .arg(format!("accessibility={subgraph_url}"))
                .status(),
        )
        .await
        .expect("composition ends in time")
        .expect("run compose.mjs");
        assert!(
            composed.success(),
            "the hub and the sample subgraph compose:\n{}",
            read_log(&compose_log)
        );

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let gateway_log = dir.path().join("gateway.log");
        // The gateway binds the port itself: another one is tried if it was
        // taken between the probe and the bind.
        for _attempt in 0..5 {
            let port = free_port();
            let mut gateway = example
                .command("node_modules/.bin/hive-gateway", &gateway_log)
                .arg("supergraph")
                .arg(&supergraph)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .spawn()
                .expect("spawn Hive Gateway");
            let base = format!("http://127.0.0.1:{port}");
            if gateway_ready(&client, &base, &mut gateway, &gateway_log).await {
                return Supergraph {
                    hub,
                    gateway_url: format!("{base}/graphql"),
                    client,
                    dir,
                    _subgraph: subgraph,
                    _gateway: gateway,
                };
            }
        }
        panic!(
            "Hive Gateway did not start on any of 5 ports:\n{}",
            read_log(&gateway_log)
        );
    }

    /// POSTs a query to the gateway, with the harness's request id and an
    /// optional bearer token: the status and the JSON body.
    async fn post(&self, query: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(&self.gateway_url)
            .header("x-request-id", TEST_REQUEST_ID)
            .json(&json!({ "query": query }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// What the processes logged, for a failure's message.
    fn logs(&self) -> String {
        ["subgraph.log", "compose.log", "gateway.log"]
            .iter()
            .map(|name| format!("--- {name}\n{}", read_log(&self.dir.path().join(name))))
            .collect()
    }
}

/// The first line `child` prints on its piped standard output (the rest is
/// drained, so the child never writes into a full pipe).
async fn first_line(child: &mut Child, log: &Path) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no line printed in time:\n{}", read_log(log)))
        .expect("read stdout")
        .unwrap_or_else(|| panic!("exited before printing:\n{}", read_log(log)));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line
}

/// Waits until the gateway answers `/readiness` (its supergraph loaded);
/// false when it exits first (its port was taken).
async fn gateway_ready(
    client: &reqwest::Client,
    base: &str,
    gateway: &mut Child,
    log: &Path,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Some(status) = gateway.try_wait().expect("gateway status") {
            let output = read_log(log);
            assert!(
                output.contains("EADDRINUSE"),
                "Hive Gateway exited ({status}):\n{output}"
            );
            return false;
        }
        if let Ok(response) = client.get(format!("{base}/readiness")).send().await
            && response.status().is_success()
        {
            return true;
        }
        // The gateway announces its readiness only in a log line: polled,
        // under `DEADLINE`.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Hive Gateway was not ready in time:\n{}", read_log(log));
}

/// Accessibility a city might publish for an activity: what the sample
/// subgraph serves and the gateway must return as it is.
fn described_accessibility() -> Value {
    json!({
        "stepFreeAccess": true,
        "signLanguages": ["French Sign Language", "International Sign"],
        "liveCaptions": false,
        "hearingLoop": true,
        "notes": "Lift at the north entrance; reserved seats in the first row.",
        "contact": "access@example.org"
    })
}

crate::both_backends!(
    one_query_reads_the_hub_and_a_city_subgraph_through_the_gateway,
    |backend: Backend| async move {
        let Some(example) = Example::find() else {
            return;
        };
        let hub = TestHub::start(backend).await;
        // The two latest seeded activities, read from the hub itself.
        let listing = format!("{{ activities(first: 2) {{ nodes {{ {HUB_FIELDS} }} }} }}");
        let direct = hub.ok(&listing, json!({}), None).await;
        let activities = direct["activities"]["nodes"]
            .as_array()
            .expect("the hub lists activities")
            .clone();
        assert!(
            activities.len() == 2 && activities.iter().all(|a| a["hosts"][0]["slug"].is_string()),
            "the seeded hub has activities with hosts: {direct}"
        );
        let described = activities[0]["id"].as_str().expect("an id").to_owned();
        let accessibility = described_accessibility();
        let mut data = serde_json::Map::new();
        data.insert(described, accessibility.clone());
        let supergraph = Supergraph::start(&example, hub, &Value::Object(data)).await;

        let spanning = format!(
            "{{ activities(first: 2) {{ nodes {{ {HUB_FIELDS} {ACCESSIBILITY_FIELDS} }} }} }}"
        );
        let (status, body) = supergraph.post(&spanning, None).await;
        assert_eq!(status, 200, "{body}\n{}", supergraph.logs());
        assert!(
            body.get("errors").is_none(),
            "{body}\n{}",
            supergraph.logs()
        );
        let nodes = body["data"]["activities"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("a listing through the gateway: {body}"));
        assert_eq!(nodes.len(), activities.len(), "{body}");
        for (through_gateway, from_hub) in nodes.iter().zip(&activities) {
            // The hub's fields, as the hub itself answers them...
            let mut hub_part = through_gateway.clone();
            hub_part
                .as_object_mut()
                .expect("an activity")
                .remove("accessibility");
            assert_eq!(&hub_part, from_hub);
        }
        // ...and the subgraph's, keyed by the hub's id: the described
        // activity has them, the other one none.
        assert_eq!(nodes[0]["accessibility"], accessibility);
        assert_eq!(nodes[1]["accessibility"], Value::Null);

        // A query rooted in the subgraph gets the hub's fields of the same
        // activity from the hub.
        let rooted = format!("{{ accessibleActivities(stepFreeAccess: true) {{ {HUB_FIELDS} }} }}");
        let (status, body) = supergraph.post(&rooted, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["data"]["accessibleActivities"],
            json!([activities[0].clone()]),
            "{body}\n{}",
            supergraph.logs()
        );
        supergraph.hub.stop().await;
    }
);

crate::both_backends!(
    the_hub_answers_the_clients_request_through_the_gateway,
    |backend: Backend| async move {
        let Some(example) = Example::find() else {
            return;
        };
        let hub = TestHub::start(backend).await;
        let token = hub.token(Some("lyon")).await;
        // The hub's own refusal, read from the hub directly.
        let too_many = "{ activities(first: 101) { nodes { id } } }";
        let refused = hub.fails(too_many, json!({}), None, "BAD_USER_INPUT").await;
        let supergraph = Supergraph::start(&example, hub, &json!({})).await;

        // The gateway passes the bearer token on to the hub
        // (`gateway.config.mjs`): the hub reads the city's token.
        let (status, body) = supergraph
            .post("{ viewer { role city { slug } } }", Some(&token))
            .await;
        assert_eq!(status, 200, "{body}\n{}", supergraph.logs());
        assert_eq!(
            body["data"]["viewer"],
            json!({ "role": "CITY", "city": { "slug": "lyon" } }),
            "{body}\n{}",
            supergraph.logs()
        );

        // A query the hub refuses keeps the hub's error as it is (code,
        // input path, message, and the request id the client sent), also
        // when it spans both subgraphs; Hive Gateway adds the subgraph's
        // name and answers with its own status.
        let spanning =
            format!("{{ activities(first: 101) {{ nodes {{ id {ACCESSIBILITY_FIELDS} }} }} }}");
        let (status, body) = supergraph.post(&spanning, None).await;
        assert_eq!(status, 200, "{body}");
        let error = &body["errors"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{body}");
        assert_eq!(error["extensions"]["field"], "first", "{body}");
        assert_eq!(error["extensions"]["requestId"], TEST_REQUEST_ID, "{body}");
        assert_eq!(error["extensions"]["serviceName"], "hub", "{body}");
        assert_eq!(error["message"], refused["message"], "{body}");
        assert_eq!(body["data"], Value::Null, "{body}");

        // A token the hub does not accept is the hub's UNAUTHENTICATED,
        // never an anonymous answer. The hub says it with status 401; the
        // client of the gateway gets the error in a 200 answer.
        let (status, body) = supergraph
            .post("{ viewer { role } }", Some("not-a-token"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "UNAUTHENTICATED",
            "{body}\n{}",
            supergraph.logs()
        );
        assert_eq!(body["data"]["viewer"], Value::Null, "{body}");
        supergraph.hub.stop().await;
    }
);
