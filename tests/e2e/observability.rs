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
        // token refusal (debug) and the token issued (info).
        .env("RUST_LOG", "info,tower_http=debug,cityhub_graphql=debug")
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
