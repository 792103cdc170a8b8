//! Logs and traces: the `tracing` subscriber the binary installs.
//!
//! Logs always go to standard error (`log.format`, `log.filter`). With
//! `otel.endpoint` set, spans are also exported over OTLP/HTTP (protobuf):
//! the request (continuing a caller's W3C `traceparent`), the GraphQL
//! operation (`graphql.operation.name` and `.type`), each SQL statement, a
//! publish, and each delivery of live events. The exporter's HTTP client is
//! hyper's, driven on the hub's tokio runtime: the SDK's batch processor
//! exports from a thread of its own, which has no runtime.
//!
//! SQL statements become spans without storage knowing of OpenTelemetry:
//! storage emits one `cityhub::sql` event per statement with its duration,
//! and [`SqlSpans`] turns each into a client span under the current span,
//! back-dated by that duration. Statements outside any traced operation
//! (the event pump's polls, the stats folder) make no spans.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanProcessor};
use tracing::field::{Field, Visit};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, registry::LookupSpan};

use crate::config::{Config, OtelConfig};

/// The target of the per-statement events storage emits.
const SQL_TARGET: &str = "cityhub::sql";

/// What [`init`] installed; [`Telemetry::shutdown`] exports the spans still
/// buffered before the process exits.
#[must_use = "shut it down before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (a no-op without `otel.endpoint`).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The batch processor's thread exports through the runtime: wait for
        // it off the runtime's own threads.
        let finished = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = finished {
            eprintln!("cityhub: the last traces could not be exported: {e}");
        }
    }
}

/// Installs the global `tracing` subscriber, and the OTLP exporter when
/// `otel.endpoint` is set. Call from inside the tokio runtime.
pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let json = config.log.format == "json";
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    if config.otel.endpoint.is_empty() {
        tracing_subscriber::registry().with(logs).init();
        return Ok(Telemetry { provider: None });
    }
    let provider = provider(&config.otel)?;
    let tracer = provider.tracer("cityhub");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let system = if config.database.url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgresql"
    };
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_location(false)
        .with_threads(false)
        .with_filter(span_targets());
    let statements = SqlSpans { tracer, system }
        .with_filter(Targets::new().with_target(SQL_TARGET, tracing::Level::TRACE));
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .with(statements)
        .init();
    tracing::info!(endpoint = %config.otel.endpoint, "exporting traces over OTLP");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The hub's own spans (info and above), none of its dependencies'.
fn span_targets() -> Targets {
    [
        "cityhub",
        "cityhub_app",
        "cityhub_graphql",
        "cityhub_storage",
        "cityhub_events",
        "cityhub_sources",
        "cityhub_web",
    ]
    .into_iter()
    .fold(Targets::new(), |targets, target| {
        targets.with_target(target, tracing::Level::INFO)
    })
    .with_target(SQL_TARGET, tracing::level_filters::LevelFilter::OFF)
}

/// `<endpoint>/v1/traces`, unless the endpoint already names it.
pub fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

fn provider(otel: &OtelConfig) -> anyhow::Result<SdkTracerProvider> {
    let timeout = Duration::from_secs(otel.export_timeout_secs);
    let client = OnRuntime {
        client: opentelemetry_http::hyper::HyperClient::with_default_connector(timeout, None),
        runtime: tokio::runtime::Handle::try_current()
            .context("traces are set up from inside the runtime")?,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(traces_url(&otel.endpoint))
        .with_timeout(timeout)
        .build()
        .context("otel.endpoint: cannot build the OTLP exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(otel.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let batch = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(NameOperations(batch))
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            otel.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// Names each `graphql` span after its operation (`query TracedCities`,
/// `mutation`), as OpenTelemetry's GraphQL conventions do, from the
/// attributes the GraphQL layer records once it has parsed the document
/// (the span has started by then, and a started span keeps its name).
#[derive(Debug)]
struct NameOperations<P>(P);

impl<P: SpanProcessor> SpanProcessor for NameOperations<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if span.name == "graphql" {
            let attribute = |key: &str| {
                span.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == key)
                    .map(|kv| kv.value.as_str().into_owned())
            };
            let name = match (
                attribute("graphql.operation.type"),
                attribute("graphql.operation.name"),
            ) {
                (Some(kind), Some(name)) => Some(format!("{kind} {name}")),
                (Some(kind), None) => Some(kind),
                _ => None,
            };
            if let Some(name) = name {
                span.name = name.into();
            }
        }
        self.0.on_end(span);
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

/// Hyper's client, run as a task on the hub's runtime so that the batch
/// processor's own thread (no runtime there) can wait for it.
#[derive(Debug)]
struct OnRuntime {
    client: opentelemetry_http::hyper::HyperClient,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

/// Continues the caller's trace when a request carries a W3C `traceparent`
/// (no-op otherwise, and when traces are off).
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    // Refused only when traces are off: then there is nothing to continue.
    let _ = span.set_parent(parent);
}

/// Turns storage's per-statement events into client spans.
struct SqlSpans {
    tracer: SdkTracer,
    system: &'static str,
}

#[derive(Default)]
struct Statement {
    sql: String,
    elapsed_us: u64,
    failed: bool,
}

impl Visit for Statement {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "sql" {
            self.sql = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "sql" {
            value.clone_into(&mut self.sql);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "elapsed_us" {
            self.elapsed_us = value;
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "failed" {
            self.failed = value;
        }
    }
}

/// The statement's verb (`SELECT`, `INSERT`, …), the span's name.
fn verb(sql: &str) -> String {
    let word = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    if word.is_empty() {
        "SQL".to_owned()
    } else {
        word.to_ascii_uppercase()
    }
}

impl<S> Layer<S> for SqlSpans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let parent: Context = tracing::Span::current().context();
        if !parent.span().span_context().is_valid() {
            return;
        }
        let mut statement = Statement::default();
        event.record(&mut statement);
        let end = SystemTime::now();
        let start = end
            .checked_sub(Duration::from_micros(statement.elapsed_us))
            .unwrap_or(end);
        let mut span = self
            .tracer
            .span_builder(verb(&statement.sql))
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes([
                KeyValue::new("db.system.name", self.system),
                // Statements carry placeholders, never values.
                KeyValue::new("db.query.text", statement.sql),
            ])
            .start_with_context(&self.tracer, &parent);
        if statement.failed {
            span.set_status(Status::error("the statement failed"));
        }
        span.end_with_timestamp(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_go_to_the_signal_path_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn a_statement_is_named_by_its_verb() {
        assert_eq!(verb("  select 1"), "SELECT");
        assert_eq!(verb("WITH x AS (SELECT 1) SELECT * FROM x"), "WITH");
        assert_eq!(verb(""), "SQL");
    }
}
