//! Traces over OTLP: a real hub (the binary, since the tracing subscriber
//! is the process's) exports its spans to an OTLP/HTTP receiver run by the
//! test, which decodes them with the protocol's own messages.
//!
//! One request that carries a W3C `traceparent` must continue the caller's
//! trace: the request's server span is the caller's child, the GraphQL
//! operation's span (named after the operation, with its type) is the
//! request's, and the SQL statements it ran hang below it (placeholders,
//! never values). A publish has its span; a delivery of live events to a
//! subscriber has its own.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::{Value, json};

use crate::support::{Backend, TestDb};

/// A span as received, with what the test looks at.
#[derive(Debug, Clone)]
struct Received {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
    service: String,
}

/// An OTLP/HTTP receiver on a free loopback port.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    _server: tokio::task::JoinHandle<()>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

impl Receiver {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let request =
                        ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                    let mut kept = kept.lock().expect("spans");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .map(|a| text(a.value.as_ref()))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                kept.push(Received {
                                    trace_id: hex::encode(&span.trace_id),
                                    span_id: hex::encode(&span.span_id),
                                    parent_span_id: hex::encode(&span.parent_span_id),
                                    name: span.name.clone(),
                                    kind: span.kind,
                                    attributes: span
                                        .attributes
                                        .iter()
                                        .map(|a| (a.key.clone(), text(a.value.as_ref())))
                                        .collect(),
                                    service: service.clone(),
                                });
                            }
                        }
                    }
                    // An empty ExportTraceServiceResponse: all accepted.
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver");
        });
        Self {
            url,
            spans,
            _server: server,
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("spans").clone()
    }

    /// Waits until `found` holds of the spans received so far.
    async fn until<T>(&self, what: &str, found: impl Fn(&[Received]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(t) = found(&self.spans()) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received within 30 s; spans: {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A `cityhub demo` child process, killed on drop.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn traced(backend: Backend) {
    let receiver = Receiver::start().await;
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["demo", "--listen", "127.0.0.1:0", "--database", &db.url])
        .current_dir(dir.path())
        .env("CITYHUB_OTEL_ENDPOINT", &receiver.url)
        .env("CITYHUB_OTEL_SERVICE_NAME", "cityhub-under-test")
        // Export every 100 ms instead of every 5 s (the SDK's variable).
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("CITYHUB_EVENTS_POLL_INTERVAL_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let banner = crate::support::demo_banner(&mut child).await;
    let _demo = Demo(child);
    let url = banner.value("GraphQL and GraphiQL:");
    let city = banner.value("City token (Lyon");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // A caller's trace, continued.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let answer: Value = client
        .post(&url)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .json(&json!({
            "query": "query TracedCities($n: Int) { cities(first: $n) { totalCount nodes { slug } } }",
            "operationName": "TracedCities",
            "variables": { "n": 3 },
        }))
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert!(answer["errors"].is_null(), "{answer}");
    let (request, operation) = receiver
        .until("the request and its operation", |spans| {
            let request = spans
                .iter()
                .find(|s| s.trace_id == caller_trace && s.parent_span_id == caller_span)?;
            let operation = spans
                .iter()
                .find(|s| s.trace_id == caller_trace && s.parent_span_id == request.span_id)?;
            Some((request.clone(), operation.clone()))
        })
        .await;
    assert_eq!(request.name, "POST /graphql", "{request:?}");
    // SPAN_KIND_SERVER
    assert_eq!(request.kind, 2, "{request:?}");
    assert_eq!(request.service, "cityhub-under-test");
    assert_eq!(
        request
            .attributes
            .get("http.response.status_code")
            .map(String::as_str),
        Some("200"),
        "{request:?}"
    );
    assert_eq!(operation.name, "query TracedCities", "{operation:?}");
    assert_eq!(
        operation
            .attributes
            .get("graphql.operation.name")
            .map(String::as_str),
        Some("TracedCities")
    );
    assert_eq!(
        operation
            .attributes
            .get("graphql.operation.type")
            .map(String::as_str),
        Some("query")
    );
    let system = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };
    let statements = receiver
        .until("the operation's SQL statements", |spans| {
            let below: Vec<Received> = spans
                .iter()
                .filter(|s| s.trace_id == caller_trace && s.parent_span_id == operation.span_id)
                .filter(|s| s.attributes.contains_key("db.query.text"))
                .cloned()
                .collect();
            (!below.is_empty()).then_some(below)
        })
        .await;
    for statement in &statements {
        // SPAN_KIND_CLIENT
        assert_eq!(statement.kind, 3, "{statement:?}");
        assert_eq!(
            statement
                .attributes
                .get("db.system.name")
                .map(String::as_str),
            Some(system)
        );
        let sql = &statement.attributes["db.query.text"];
        assert!(
            sql.to_ascii_uppercase().starts_with(&statement.name),
            "{statement:?}"
        );
    }

    // A publish, seen by a subscriber: its span, and the delivery's.
    let ws_url = url.replacen("http://", "ws://", 1);
    let socket = crate::ws::WsClient::connect_at(&ws_url, Some(&city)).await;
    let mut events = socket.events(json!({}), None).await;
    socket.synced().await;
    let published: Value = client
        .post(&url)
        .bearer_auth(&city)
        .json(&json!({
            "query": "mutation TracedPublish { publishActivity(input: { kind: WORKSHOP, title: \"Traced workshop\", startDate: \"2027-03-01\", fields: [GASTRONOMY] }) { id } }",
        }))
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("json");
    assert!(published["errors"].is_null(), "{published}");
    let event = events.event().await;
    assert_eq!(event.kind, "PUBLISHED", "{event:?}");
    assert_eq!(event.title, "Traced workshop");
    let mutation = receiver
        .until("the mutation's span", |spans| {
            spans
                .iter()
                .find(|s| s.name == "mutation TracedPublish")
                .cloned()
        })
        .await;
    // (The demo's seeding published too, each in a trace of its own.)
    let publish = receiver
        .until("the publish span", |spans| {
            spans
                .iter()
                .find(|s| s.name == "publish" && s.trace_id == mutation.trace_id)
                .cloned()
        })
        .await;
    assert_eq!(publish.parent_span_id, mutation.span_id);
    let delivery = receiver
        .until("a delivery span", |spans| {
            spans.iter().find(|s| s.name == "deliver").cloned()
        })
        .await;
    assert!(
        delivery
            .attributes
            .get("subscribers")
            .is_some_and(|n| n != "0"),
        "{delivery:?}"
    );
    // No value a request carried reaches a statement's text.
    assert!(
        receiver
            .spans()
            .iter()
            .filter_map(|s| s.attributes.get("db.query.text"))
            .all(|sql| !sql.contains("Traced workshop")),
        "a statement's text carries a value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_spans_continue_the_callers_trace_down_to_each_statement() {
    traced(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_spans_continue_the_callers_trace_down_to_each_statement() {
    traced(Backend::Postgres).await;
}
