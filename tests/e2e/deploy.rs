//! The deployment kit (`deploy/`) read as the binary reads it: the
//! Dockerfile, the compose file with its Caddyfile, and the Kubernetes
//! manifests are parsed, every `CITYHUB_*` variable they set goes through
//! the real binary's configuration (`cityhub config`, which refuses a
//! variable that sets nothing), every command they run through its command
//! line, and every probe or health check path is asked of a hub serving
//! the configuration they give, on the port they name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cityhub::config::Config;
use serde_yaml::Value;

use crate::support::{Backend, TestDb, TestHub};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One YAML document, merge keys (`<<: *anchor`) applied.
fn yaml(path: &str) -> Value {
    let mut value: Value =
        serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    value.apply_merge().expect("merge keys");
    value
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_default()
}

/// Runs the real binary with only `env` (no inherited `CITYHUB_*`).
fn cityhub(args: &[String], env: &BTreeMap<String, String>) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .envs(env)
        .env("RUST_LOG", "error")
        .output()
        .expect("run cityhub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts the command line takes `args` (as a container runs it).
fn assert_command_exists(args: &[String], what: &str) {
    let mut help = args.to_vec();
    help.push("--help".into());
    let (ok, _, err) = cityhub(&help, &BTreeMap::new());
    assert!(
        ok,
        "{what}: `cityhub {}` is not a command: {err}",
        args.join(" ")
    );
}

/// The configuration the binary builds from `env`, where every
/// `*_FILE` variable's file (a path inside the container, under one of
/// `secret_dirs`) is replaced by a local file holding a stand-in value.
fn effective_config(env: &BTreeMap<String, String>, secret_dirs: &[&str], what: &str) -> Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut local = env.clone();
    for (name, value) in env {
        if !name.ends_with("_FILE") {
            continue;
        }
        assert!(
            secret_dirs.iter().any(|d| value.starts_with(d)),
            "{what}: {name}={value} is not under a mounted secret ({secret_dirs:?})"
        );
        let file = dir.path().join(name);
        let stand_in = if name.contains("DATABASE_URL") {
            "postgres://cityhub:secret@postgres:5432/cityhub\n"
        } else {
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
        };
        std::fs::write(&file, stand_in).expect("write stand-in");
        local.insert(name.clone(), file.display().to_string());
    }
    let (ok, out, err) = cityhub(&["config".into()], &local);
    assert!(ok, "{what}: `cityhub config` refused {env:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: {e}: {out}"))
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("{addr}: {e}"))
        .port()
}

/// A hub serving `config` (its listeners moved to loopback port 0, its
/// database a fresh SQLite file, its key-encryption key a fresh one); it
/// answers on the ports `config` names through [`Served::status`].
struct Served {
    hub: TestHub,
    listen_port: u16,
    admin_port: Option<u16>,
    _kek: tempfile::TempDir,
}

impl Served {
    async fn start(config: Config) -> Self {
        let listen_port = port_of(&config.listen);
        let admin_port =
            (!config.http.admin_listen.is_empty()).then(|| port_of(&config.http.admin_listen));
        let kek = tempfile::tempdir().expect("tempdir");
        let kek_file = kek.path().join("kek");
        let has_kek = config.auth.key_encryption_key_file.is_some();
        if has_kek {
            cityhub::ops::generate_kek(&kek_file).expect("kek");
        }
        let test_db = Arc::new(TestDb::new(Backend::Sqlite).await);
        let hub = TestHub::start_on(Backend::Sqlite, test_db, move |c| {
            let url = c.database.url.clone();
            *c = config;
            c.listen = "127.0.0.1:0".into();
            c.database.url = url;
            // The manifests migrate in a step of their own; here, at start.
            c.database.migrate_on_start = true;
            if !c.http.admin_listen.is_empty() {
                c.http.admin_listen = "127.0.0.1:0".into();
            }
            if has_kek {
                c.auth.key_encryption_key_file = Some(kek_file.display().to_string());
            }
        })
        .await;
        Self {
            hub,
            listen_port,
            admin_port,
            _kek: kek,
        }
    }

    /// GETs `path` on the listener the configuration puts on `port`.
    async fn status(&self, port: u16, path: &str) -> u16 {
        let base = if Some(port) == self.admin_port {
            format!("http://{}", self.hub.admin_addr.expect("an admin listener"))
        } else {
            assert_eq!(
                port, self.listen_port,
                "port {port} is neither listen nor http.admin_listen"
            );
            self.hub.base.clone()
        };
        self.hub
            .client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }
}

// ---------------------------------------------------------------- Dockerfile

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("deploy/Dockerfile").lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, rest) = current
            .trim()
            .split_once(' ')
            .unwrap_or((current.trim(), ""));
        instructions.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    instructions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_health_check_stop_signal_and_ports_match_the_binary() {
    let instructions = dockerfile();
    // The runtime stage: everything after the last FROM.
    let last_from = instructions
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("FROM");
    let runtime = &instructions[last_from..];
    let get = |keyword: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };
    // ENV KEY=VALUE pairs (no quoting in this file).
    let mut env = BTreeMap::new();
    for pairs in get("ENV") {
        for pair in pairs.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    let config = effective_config(&env, &[], "Dockerfile");
    let exposed: Vec<u16> = get("EXPOSE")
        .iter()
        .flat_map(|e| e.split_whitespace())
        .map(|p| p.parse().expect("a port"))
        .collect();
    assert!(
        exposed.contains(&port_of(&config.listen)),
        "EXPOSE {exposed:?} lacks the listen port of {}",
        config.listen
    );
    assert_eq!(
        get("STOPSIGNAL"),
        ["SIGTERM"],
        "the hub stops gracefully on SIGTERM"
    );
    // `docker stop` kills after 10 s by default: the hub's grace ends first.
    assert!(
        config.http.shutdown_grace_secs < 10,
        "http.shutdown_grace_secs {} must end before docker's default 10 s stop timeout",
        config.http.shutdown_grace_secs
    );
    // HEALTHCHECK [options] CMD ["cityhub", "healthcheck", ...]
    let health = get("HEALTHCHECK");
    assert_eq!(health.len(), 1, "one HEALTHCHECK");
    let (_, cmd) = health[0].split_once("CMD ").expect("HEALTHCHECK … CMD");
    let cmd: Vec<String> = serde_json::from_str(cmd.trim()).expect("CMD in exec form");
    assert_eq!(cmd[0], "cityhub");
    assert_eq!(cmd[1], "healthcheck");
    assert_command_exists(&cmd[1..], "HEALTHCHECK");
    let entrypoint: Vec<String> = serde_json::from_str(get("ENTRYPOINT")[0]).expect("exec form");
    let command: Vec<String> = serde_json::from_str(get("CMD")[0]).expect("exec form");
    assert_eq!(entrypoint, ["cityhub"]);
    assert_command_exists(&command, "CMD");
    // What `cityhub healthcheck` asks is served where the image listens.
    let served = Served::start(config).await;
    assert_eq!(served.status(served.listen_port, "/readyz").await, 200);
    // The build context leaves out build output, databases and keys.
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for needed in ["target", "*.db", "keys", ".git", "deploy/compose/secrets"] {
        assert!(
            ignored.iter().any(|l| l == needed),
            ".dockerignore lacks {needed}"
        );
    }
}

// ------------------------------------------------------------------- compose

fn env_of(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (text(k), interpolate(&text(v))))
                .collect()
        })
        .unwrap_or_default()
}

/// Compose's `${NAME:-default}` as an empty environment resolves it (to
/// the default); `${NAME}` to nothing.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closing brace") + start;
        let inner = &rest[start + 2..end];
        if let Some((_, default)) = inner.split_once(":-") {
            out.push_str(default);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `30s`, `1m30s` as seconds.
fn compose_duration(text: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().unwrap_or_else(|_| panic!("duration {text}"));
        number.clear();
        total += match c {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            _ => panic!("duration {text}"),
        };
    }
    assert!(number.is_empty(), "duration {text} needs a unit");
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_runs_two_hubs_behind_caddy_with_secrets_from_files() {
    let compose = yaml("deploy/compose/compose.yaml");
    let services = compose["services"].as_mapping().expect("services");
    let service = |name: &str| -> &Value {
        services
            .get(name)
            .unwrap_or_else(|| panic!("no service {name}"))
    };
    // Every service restarts, except the one-shot migration.
    for (name, s) in services {
        let name = text(name);
        let restart = s["restart"].as_str().unwrap_or_default();
        if name == "migrate" {
            assert_eq!(restart, "no");
        } else {
            assert!(
                ["unless-stopped", "always", "on-failure"].contains(&restart),
                "{name} has no restart policy"
            );
        }
    }
    let hubs: Vec<String> = services
        .iter()
        .filter(|(_, s)| s["build"]["dockerfile"].as_str() == Some("deploy/Dockerfile"))
        .map(|(n, _)| text(n))
        .filter(|n| n != "migrate")
        .collect();
    assert!(hubs.len() >= 2, "two hubs at least: {hubs:?}");
    let top_secrets = compose["secrets"].as_mapping().expect("secrets");
    let make_secrets = read("deploy/compose/make-secrets.sh");
    let mut configs = Vec::new();
    for name in hubs.iter().map(String::as_str).chain(["migrate"]) {
        let s = service(name);
        let env = env_of(s);
        assert!(
            !env.contains_key("CITYHUB_DATABASE_URL"),
            "{name}: the database URL (and its password) comes from a file"
        );
        // Each *_FILE names a secret the service mounts, written by the
        // secrets script.
        let mounted = strings(&s["secrets"]);
        for (var, path) in env.iter().filter(|(k, _)| k.ends_with("_FILE")) {
            let secret = path.strip_prefix("/run/secrets/").expect("a Docker secret");
            assert!(
                mounted.iter().any(|m| m == secret),
                "{name}: {var} not mounted"
            );
            let file = text(&top_secrets[secret]["file"]);
            assert!(
                make_secrets.contains(file.trim_start_matches("./")),
                "make-secrets.sh does not write {file}"
            );
        }
        let config = effective_config(&env, &["/run/secrets/"], name);
        if let Some(command) = s.get("command") {
            assert_command_exists(&strings(command), name);
        }
        let grace = compose_duration(s["stop_grace_period"].as_str().unwrap_or("10s"));
        assert!(
            grace > config.http.shutdown_grace_secs,
            "{name}: stop_grace_period {grace}s must outlast http.shutdown_grace_secs {}",
            config.http.shutdown_grace_secs
        );
        configs.push((name.to_owned(), config));
    }
    // Hubs do not migrate: the migrate service does, before them.
    assert_eq!(strings(&service("migrate")["command"]), ["migrate", "up"]);
    for hub in &hubs {
        let (_, config) = configs.iter().find(|(n, _)| n == hub).expect("config");
        assert!(!config.database.migrate_on_start, "{hub} migrates at start");
        assert_eq!(
            service(hub)["depends_on"]["migrate"]["condition"].as_str(),
            Some("service_completed_successfully")
        );
        assert!(
            config.api.public_url.starts_with("http"),
            "{hub}: api.public_url is set behind the proxy"
        );
    }
    // PostgreSQL reads its password from a file too.
    let pg = env_of(service("postgres"));
    assert!(pg.contains_key("POSTGRES_PASSWORD_FILE") && !pg.contains_key("POSTGRES_PASSWORD"));
    // Caddy: the hubs' trusted proxy is its address; it proxies to each
    // hub's listen port and checks /readyz on the admin port.
    let proxy = service("proxy");
    let proxy_ip: std::net::IpAddr = proxy["networks"]["hub"]["ipv4_address"]
        .as_str()
        .expect("a fixed address for the proxy")
        .parse()
        .expect("an address");
    let (_, hub_config) = configs.iter().find(|(n, _)| n == &hubs[0]).expect("hub");
    for (name, config) in &configs {
        let trusted = config.trusted_proxies().expect("trusted proxies");
        assert!(
            trusted.iter().any(|net| net.contains(&proxy_ip)),
            "{name}: http.trusted_proxies {trusted:?} lacks the proxy {proxy_ip}"
        );
    }
    let caddyfile = read("deploy/compose/Caddyfile");
    let upstream_line = caddyfile
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("reverse_proxy "))
        .expect("reverse_proxy");
    let upstreams: Vec<&str> = upstream_line
        .trim_start_matches("reverse_proxy ")
        .trim_end_matches('{')
        .split_whitespace()
        .collect();
    let mut proxied: Vec<String> = upstreams
        .iter()
        .map(|u| {
            let (host, port) = u.rsplit_once(':').expect("host:port");
            assert_eq!(
                port.parse::<u16>().expect("port"),
                port_of(&hub_config.listen),
                "{u} is not the hubs' listen port"
            );
            host.to_owned()
        })
        .collect();
    proxied.sort();
    let mut expected = hubs.clone();
    expected.sort();
    assert_eq!(proxied, expected, "Caddy proxies to every hub");
    let directive = |name: &str| -> String {
        caddyfile
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("Caddyfile lacks {name}"))
            .trim()
            .to_owned()
    };
    let health_port: u16 = directive("health_port").parse().expect("port");
    let health_uri = directive("health_uri");
    let served = Served::start(hub_config.clone()).await;
    assert_eq!(served.status(health_port, &health_uri).await, 200);
    // The image's own health check asks the admin listener, when set.
    assert_eq!(Some(health_port), served.admin_port);
}

// ---------------------------------------------------------------- Kubernetes

fn kubernetes() -> (Value, Vec<Value>) {
    let kustomization = yaml("deploy/kubernetes/kustomization.yaml");
    let resources = strings(&kustomization["resources"])
        .iter()
        .map(|file| yaml(&format!("deploy/kubernetes/{file}")))
        .collect();
    (kustomization, resources)
}

fn of_kind<'a>(resources: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = resources
        .iter()
        .filter(|r| r["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// A container's environment: its ConfigMap (from the kustomization's
/// generator) and its own `env`.
fn container_env(kustomization: &Value, container: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in container["envFrom"].as_sequence().into_iter().flatten() {
        let name = source["configMapRef"]["name"]
            .as_str()
            .expect("a ConfigMap");
        let generator = kustomization["configMapGenerator"]
            .as_sequence()
            .expect("configMapGenerator")
            .iter()
            .find(|g| g["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no ConfigMap {name} is generated"));
        for literal in strings(&generator["literals"]) {
            let (k, v) = literal.split_once('=').expect("KEY=VALUE");
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    for var in container["env"].as_sequence().into_iter().flatten() {
        assert!(
            var.get("valueFrom").is_none() || var["valueFrom"].get("secretKeyRef").is_some(),
            "only secrets by reference"
        );
        env.insert(text(&var["name"]), text(&var["value"]));
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_manifests_probe_serve_and_scale_as_the_binary_expects() {
    let (kustomization, resources) = kubernetes();
    assert!(
        resources
            .iter()
            .all(|r| r["kind"].as_str() != Some("Secret")),
        "secrets are referenced, never shipped"
    );
    let deployment = of_kind(&resources, "Deployment");
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    assert!(spec["replicas"].as_u64().expect("replicas") >= 2);
    let pod_labels = spec["template"]["metadata"]["labels"]
        .as_mapping()
        .expect("labels");
    // Secrets: a volume of a Secret by name; *_FILE variables under it.
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v.get("secret").is_some())
        .expect("a secret volume");
    assert!(volume["secret"]["secretName"].as_str().is_some());
    let secret_files: Vec<String> = volume["secret"]["items"]
        .as_sequence()
        .expect("items")
        .iter()
        .map(|i| text(&i["path"]))
        .collect();
    let mount_of = |container: &Value| -> String {
        container["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["name"] == volume["name"])
            .map(|m| format!("{}/", text(&m["mountPath"])))
            .expect("the secret volume mounted")
    };
    let check_secret_files = |env: &BTreeMap<String, String>, mount: &str| {
        for (var, path) in env.iter().filter(|(k, _)| k.ends_with("_FILE")) {
            let file = path.strip_prefix(mount).expect("under the secret mount");
            assert!(secret_files.iter().any(|f| f == file), "{var}: no {file}");
        }
    };
    // The migration step: a real command with a real configuration.
    let init = &pod["initContainers"][0];
    let init_env = container_env(&kustomization, init);
    check_secret_files(&init_env, &mount_of(init));
    assert_eq!(strings(&init["args"]), ["migrate", "up"]);
    assert_command_exists(&strings(&init["args"]), "init container");
    effective_config(&init_env, &[&mount_of(init)], "init container");
    // The serving container.
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    assert_command_exists(&args, "container");
    let env = container_env(&kustomization, container);
    check_secret_files(&env, &mount_of(container));
    let config = effective_config(&env, &[&mount_of(container)], "container");
    assert!(
        !config.database.migrate_on_start,
        "the init container migrates"
    );
    let ports: BTreeMap<String, u16> = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                text(&p["name"]),
                p["containerPort"].as_u64().expect("port") as u16,
            )
        })
        .collect();
    assert_eq!(ports.get("http"), Some(&port_of(&config.listen)));
    assert_eq!(
        ports.get("admin"),
        Some(&port_of(&config.http.admin_listen)),
        "the admin port is http.admin_listen's"
    );
    let served = Served::start(config.clone()).await;
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let get = &container[probe]["httpGet"];
        let port = match &get["port"] {
            Value::Number(n) => n.as_u64().expect("port") as u16,
            name => *ports.get(&text(name)).expect("a named container port"),
        };
        let path = text(&get["path"]);
        assert_eq!(served.status(port, &path).await, 200, "{probe} {path}");
    }
    assert_eq!(
        text(&container["readinessProbe"]["httpGet"]["path"]),
        "/readyz"
    );
    assert_eq!(
        text(&container["livenessProbe"]["httpGet"]["path"]),
        "/healthz"
    );
    // Stopping: the pre-stop pause and the hub's grace fit in the pod's.
    let pre_stop: u64 = strings(&container["lifecycle"]["preStop"]["exec"]["command"])
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(
        termination > pre_stop + config.http.shutdown_grace_secs,
        "terminationGracePeriodSeconds {termination} must outlast preStop {pre_stop} s + http.shutdown_grace_secs {}",
        config.http.shutdown_grace_secs
    );
    // Service, Ingress, PodDisruptionBudget, HorizontalPodAutoscaler.
    let service = of_kind(&resources, "Service");
    let selects_pods = |selector: &Value| {
        let selector = selector.as_mapping().expect("a selector");
        assert!(!selector.is_empty());
        for (k, v) in selector {
            assert_eq!(pod_labels.get(k), Some(v), "selector {k:?} misses the pods");
        }
    };
    selects_pods(&service["spec"]["selector"]);
    let service_ports: Vec<String> = service["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            let target = text(&p["targetPort"]);
            assert!(ports.contains_key(&target), "targetPort {target}");
            text(&p["name"])
        })
        .collect();
    let ingress = of_kind(&resources, "Ingress");
    let backend = &ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], service["metadata"]["name"]);
    let backend_port = text(&backend["port"]["name"]);
    assert!(service_ports.contains(&backend_port));
    let service_port = service["spec"]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| text(&p["name"]) == backend_port)
        .expect("the backend port");
    assert_eq!(
        text(&service_port["targetPort"]),
        "http",
        "the Ingress reaches listen, not admin"
    );
    let read_timeout: u64 =
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]
            .as_str()
            .expect("a read timeout for WebSockets")
            .parse()
            .expect("seconds");
    assert!(read_timeout > config.http.ws_keepalive_secs);
    let pdb = of_kind(&resources, "PodDisruptionBudget");
    selects_pods(&pdb["spec"]["selector"]["matchLabels"]);
    assert!(pdb["spec"]["minAvailable"].as_u64().expect("minAvailable") >= 1);
    let hpa = of_kind(&resources, "HorizontalPodAutoscaler");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["kind"].as_str(),
        Some("Deployment")
    );
    assert!(hpa["spec"]["minReplicas"].as_u64().expect("minReplicas") >= 2);
}

#[test]
fn durations_and_variables_read_as_compose_reads_them() {
    assert_eq!(compose_duration("30s"), 30);
    assert_eq!(compose_duration("1m30s"), 90);
    assert_eq!(interpolate("${A:-http://x:1}/y"), "http://x:1/y");
    assert_eq!(interpolate("a${B}c"), "ac");
}

#[test]
fn every_setting_is_documented_in_the_configuration_reference() {
    let doc = read("docs/configuration.md");
    let defaults = serde_json::to_value(Config::defaults()).expect("serialize");
    let mut settings = Vec::new();
    fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value.as_object() {
            Some(object) => {
                for (key, child) in object {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    leaves(&path, child, out);
                }
            }
            None => out.push(prefix.to_owned()),
        }
    }
    leaves("", &defaults, &mut settings);
    assert!(settings.len() > 50, "{settings:?}");
    let missing: Vec<&String> = settings
        .iter()
        .filter(|s| !doc.contains(&format!("`{s}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks {missing:?}"
    );
}
