//! What operators see of a request: its id (the client's `x-request-id` or
//! a new one) on the response, in every error's `extensions.requestId`,
//! and in every log line the request writes.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Backend, TestHub};

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("an x-request-id on every response")
        .to_str()
        .expect("text")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_is_kept_or_made_and_returned_with_every_error() {
    let hub = TestHub::start(Backend::Sqlite).await;
    let post = |body: Value, id: Option<&'static str>| {
        let mut request = hub.client.post(hub.url()).json(&body);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    // The client's id comes back, on the response and on each error.
    let response = post(json!({ "query": "{ nope }" }), Some("client-req-42"))
        .await
        .expect("request");
    assert_eq!(request_id(&response), "client-req-42");
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["requestId"],
        "client-req-42"
    );
    // Without one, the hub makes one (a UUID), the same on both.
    let response = post(
        json!({ "query": "{ activity(slug: \"nope\") { id } cities(first: -1) { totalCount } }" }),
        None,
    )
    .await
    .expect("request");
    let made = request_id(&response);
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let body: Value = response.json().await.expect("json");
    let errors = body["errors"].as_array().expect("errors");
    assert!(!errors.is_empty(), "{body}");
    for error in errors {
        assert_eq!(error["extensions"]["requestId"], made.as_str(), "{body}");
    }
    // An id that is not a plain token is replaced, never echoed.
    let response = post(json!({ "query": "{ nope }" }), Some("two words\"}"))
        .await
        .expect("request");
    let replaced = request_id(&response);
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
    // A successful answer carries the header, its body is untouched.
    let response = post(json!({ "query": "{ network { name } }" }), Some("ok-1"))
        .await
        .expect("request");
    assert_eq!(request_id(&response), "ok-1");
    let body: Value = response.json().await.expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    // Refusals before execution and the web endpoints' errors too.
    let response = hub
        .client
        .post(hub.url())
        .header("content-type", "text/plain")
        .header("x-request-id", "plain-1")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["requestId"], "plain-1");
    let response = hub
        .client
        .post(hub.url())
        .bearer_auth("not-a-token")
        .header("x-request-id", "auth-1")
        .json(&json!({ "query": "{ network { name } }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(body["errors"][0]["extensions"]["requestId"], "auth-1");
    let response = hub
        .client
        .get(format!("{}/calendar.ics?field=music", hub.base))
        .header("x-request-id", "web-1")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    assert_eq!(request_id(&response), "web-1");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["requestId"], "web-1");
    // Pages and calendars carry the header too, bodies as they were.
    let response = hub
        .client
        .get(format!("{}/calendar.ics", hub.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    request_id(&response);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .starts_with("BEGIN:VCALENDAR")
    );
    // Browsers on other origins may send it and read it.
    let preflight = hub
        .client
        .request(reqwest::Method::OPTIONS, hub.url())
        .header("origin", "https://www.lyon.fr")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-request-id",
        )
        .send()
        .await
        .expect("preflight");
    let allowed = preflight
        .headers()
        .get("access-control-allow-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-request-id"), "{allowed}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_of_a_request_names_its_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("hub.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("CITYHUB_LOG_FORMAT", "json")
        // The request's own lines: tower-http's start and finish, the
        // token refusal (debug, where a request's principal is read:
        // cityhub_app) and the token issued (info).
        .env("RUST_LOG", "info,tower_http=debug,cityhub_app=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn demo");
    let banner = crate::support::demo_banner(&mut child).await;
    let find = |label: &str| banner.value(label);
    let url = find("GraphQL and GraphiQL:");
    let secretariat = find("Secretariat token");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let issued = client
        .post(&url)
        .bearer_auth(&secretariat)
        .header("x-request-id", "log-issue-1")
        .json(&json!({ "query": "mutation { issueToken(city: \"lyon\", role: CITY, label: \"obs\") { id } }" }))
        .send()
        .await
        .expect("issue");
    assert_eq!(issued.status(), 200);
    let refused = client
        .post(&url)
        .bearer_auth("not-a-token")
        .header("x-request-id", "log-refused-1")
        .json(&json!({ "query": "{ network { name } }" }))
        .send()
        .await
        .expect("refused");
    assert_eq!(refused.status(), 401);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).expect("log");
    let records: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let id_of = |record: &Value| -> Option<String> {
        record["span"]["request_id"].as_str().map(str::to_owned)
    };
    let message = |record: &Value| {
        record["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for (id, own_line) in [
        ("log-issue-1", "token issued"),
        ("log-refused-1", "token refused"),
    ] {
        let of_request: Vec<&Value> = records
            .iter()
            .filter(|r| id_of(r).as_deref() == Some(id))
            .collect();
        let messages: Vec<String> = of_request.iter().map(|r| message(r)).collect();
        assert!(
            messages.iter().any(|m| m == own_line),
            "{id}: no {own_line:?} line in its span: {messages:?}\n{text}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("started processing request"))
                && messages
                    .iter()
                    .any(|m| m.contains("finished processing request")),
            "{id}: {messages:?}"
        );
    }
    // Every line the hub wrote about these requests is in their span.
    for record in &records {
        let m = message(record);
        if m == "token issued" || m == "token refused" {
            assert!(
                id_of(record).is_some(),
                "a request's line without its id: {record}"
            );
        }
    }
}

/// The metrics `docs/observability.md` lists, by name.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/observability.md"
    ))
    .expect("docs/observability.md");
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `cityhub_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("cityhub_{name}"))
        .collect()
}

/// The value of the first sample line starting with `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_documented_and_counts_what_it_says() {
    let hub = crate::support::TestHub::start_with(Backend::Sqlite, |config| {
        config.rate_limit.anonymous_per_sec = 1;
        config.rate_limit.anonymous_burst = 2;
    })
    .await;
    let token = hub.token(Some("lyon")).await;
    // A subscriber, and an event it receives.
    let socket = crate::ws::WsClient::connect(&hub, Some(&token)).await;
    let mut events = socket.events(json!({}), None).await;
    socket.synced().await;
    hub.ok(
        "mutation Publish { publishActivity(input: { kind: WORKSHOP, title: \"Measured\", startDate: \"2027-03-01\", fields: [GASTRONOMY] }) { id } }",
        json!({}),
        Some(&token),
    )
    .await;
    assert_eq!(events.event().await.title, "Measured");
    // Anonymous requests past the budget are refused.
    let mut refused = 0;
    for i in 0..6 {
        // Each its own document: cached answers are not rate limited.
        let query = format!("query Anon {{ n{i}: network {{ name }} }}");
        let (_, body) = hub.post(&query, json!({}), None).await;
        if body["errors"][0]["extensions"]["code"] == "RATE_LIMITED" {
            refused += 1;
        }
    }
    assert!(refused > 0, "the anonymous budget refused nothing");
    let metrics = hub.metrics().await;
    let exposed: std::collections::BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        exposed,
        documented_metrics(),
        "what /metrics exposes and what docs/observability.md lists differ"
    );
    assert_eq!(sample(&metrics, "cityhub_websockets "), 1.0);
    assert_eq!(sample(&metrics, "cityhub_subscribers "), 1.0);
    assert!(sample(&metrics, "cityhub_event_delivery_lag_seconds_count ") >= 1.0);
    assert_eq!(
        sample(&metrics, "cityhub_rate_limited_total{limit=\"anonymous\"} "),
        f64::from(refused)
    );
    assert!(
        sample(
            &metrics,
            "cityhub_graphql_request_duration_seconds_count{operation=\"Publish\",type=\"mutation\"} "
        ) >= 1.0
    );
    socket.close().await;
    // The socket is counted until it is gone.
    crate::support::eventually(
        "the closed socket uncounted",
        Duration::from_secs(10),
        || async {
            let open = sample(&hub.metrics().await, "cityhub_websockets ");
            if open == 0.0 { Ok(()) } else { Err(open) }
        },
    )
    .await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_over_a_websocket_carry_the_id_of_the_request_that_opened_it() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let hub = crate::support::TestHub::start(Backend::Sqlite).await;
    let mut request = hub.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    request
        .headers_mut()
        .insert("x-request-id", "ws-req-7".parse().expect("header"));
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("handshake");
    assert_eq!(
        response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("ws-req-7")
    );
    let mut send = async |value: Value| {
        socket
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("send");
    };
    send(json!({ "type": "connection_init", "payload": {} })).await;
    send(json!({ "id": "bad-page", "type": "subscribe",
        "payload": { "query": "{ cities(first: -1) { totalCount } }" } }))
    .await;
    send(json!({ "id": "bad-field", "type": "subscribe",
        "payload": { "query": "subscription { nope }" } }))
    .await;
    let mut seen = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 2 {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("answers within 10 s")
            .expect("open")
            .expect("message");
        let Message::Text(text) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).expect("json");
        let errors = match value["type"].as_str() {
            Some("next") => value["payload"]["errors"].clone(),
            Some("error") => value["payload"].clone(),
            _ => continue,
        };
        seen.insert(value["id"].as_str().expect("id").to_owned(), errors);
    }
    for (id, errors) in seen {
        let errors = errors
            .as_array()
            .unwrap_or_else(|| panic!("{id}: {errors}"));
        assert!(!errors.is_empty(), "{id}");
        for error in errors {
            assert_eq!(
                error["extensions"]["requestId"], "ws-req-7",
                "{id}: {error}"
            );
        }
    }
    hub.stop().await;
}
