//! The baseline: the listing scenario answered by a plain axum handler —
//! serde in, one hand-written SQL query (rows, hosts and documents in one
//! statement), serde out, in the same JSON shape as the hub's answer — on
//! the same database with the same pool size. The hub's GraphQL figure
//! divided by this one is what GraphQL, DataLoaders and the hub's layers
//! cost.

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cityhub_storage::{Db, DbConfig};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde::{Deserialize, Serialize};

/// SQLite: the page and its relations, aggregated as JSON text.
const SQLITE: &str = r#"
SELECT a.id, a.slug, a.title, a.summary, a.kind, a.format, a.start_date AS start_date,
       a.end_date AS end_date, a.venue, a.start_key,
       (SELECT json_group_array(json_object('slug', h.slug, 'name', h.name, 'country', h.country))
          FROM (SELECT c.slug, c.name, c.country FROM activity_cities ac JOIN cities c ON c.id = ac.city_id
                 WHERE ac.activity_id = a.id AND ac.role = 'HOST' ORDER BY ac.position) h) AS hosts,
       (SELECT json_group_array(json_object('kind', d.kind, 'title', d.title, 'url', d.url))
          FROM (SELECT kind, title, url FROM documents WHERE activity_id = a.id ORDER BY position) d) AS documents
  FROM activities a
 WHERE a.status = 'PUBLISHED' AND a.deleted_at IS NULL
   AND (a.venue_city_id IN (SELECT id FROM cities WHERE slug = ?1)
        OR a.id IN (SELECT ac.activity_id FROM activity_cities ac JOIN cities c ON c.id = ac.city_id WHERE c.slug = ?1))
 ORDER BY a.start_key DESC, a.id DESC
 LIMIT 21
"#;

/// PostgreSQL: the same query.
const POSTGRES: &str = r#"
SELECT a.id, a.slug, a.title, a.summary, a.kind, a.format, a.start_date::text AS start_date,
       a.end_date::text AS end_date, a.venue, a.start_key,
       (SELECT COALESCE(json_agg(json_build_object('slug', c.slug, 'name', c.name, 'country', c.country) ORDER BY ac.position), '[]'::json)::text
          FROM activity_cities ac JOIN cities c ON c.id = ac.city_id
         WHERE ac.activity_id = a.id AND ac.role = 'HOST') AS hosts,
       (SELECT COALESCE(json_agg(json_build_object('kind', d.kind, 'title', d.title, 'url', d.url) ORDER BY d.position), '[]'::json)::text
          FROM documents d WHERE d.activity_id = a.id) AS documents
  FROM activities a
 WHERE a.status = 'PUBLISHED' AND a.deleted_at IS NULL
   AND (a.venue_city_id IN (SELECT id FROM cities WHERE slug = $1)
        OR a.id IN (SELECT ac.activity_id FROM activity_cities ac JOIN cities c ON c.id = ac.city_id WHERE c.slug = $1))
 ORDER BY a.start_key DESC, a.id DESC
 LIMIT 21
"#;

#[derive(Deserialize)]
struct GraphqlBody {
    #[serde(default)]
    variables: Variables,
}

#[derive(Deserialize, Default)]
struct Variables {
    #[serde(default)]
    cities: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Host {
    slug: String,
    name: String,
    country: String,
}

#[derive(Serialize, Deserialize)]
struct Doc {
    kind: String,
    title: String,
    url: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    id: String,
    slug: String,
    title: String,
    summary: Option<String>,
    kind: String,
    format: String,
    start_date: Option<String>,
    end_date: Option<String>,
    venue: Option<String>,
    hosts: Vec<Host>,
    documents: Vec<Doc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[derive(Serialize)]
struct Connection {
    nodes: Vec<Node>,
    #[serde(rename = "pageInfo")]
    page_info: PageInfo,
}

#[derive(Serialize)]
struct Data {
    activities: Connection,
}

#[derive(Serialize)]
struct Answer {
    data: Data,
}

async fn listing(State(db): State<Db>, Json(body): Json<GraphqlBody>) -> Response {
    let Some(city) = body.variables.cities.into_iter().next() else {
        return (StatusCode::BAD_REQUEST, "variables.cities is required").into_response();
    };
    let backend = db.backend();
    let sql = match backend {
        DatabaseBackend::Postgres => POSTGRES,
        _ => SQLITE,
    };
    let rows = match db
        .conn()
        .query_all_raw(Statement::from_sql_and_values(backend, sql, [city.into()]))
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{{\"errors\":[{{\"message\":\"{e}\"}}]}}"),
            )
                .into_response();
        }
    };
    let has_next_page = rows.len() > 20;
    let mut nodes = Vec::with_capacity(20);
    let mut end_cursor = None;
    for row in rows.iter().take(20) {
        let node = (|| -> Result<Node, sea_orm::DbErr> {
            let id: i64 = row.try_get("", "id")?;
            let key: i32 = row.try_get("", "start_key")?;
            end_cursor = Some(format!("{key}:{id}"));
            let hosts: String = row.try_get("", "hosts")?;
            let documents: String = row.try_get("", "documents")?;
            Ok(Node {
                id: id.to_string(),
                slug: row.try_get("", "slug")?,
                title: row.try_get("", "title")?,
                summary: row.try_get("", "summary")?,
                kind: row.try_get("", "kind")?,
                format: row.try_get("", "format")?,
                start_date: row.try_get("", "start_date")?,
                end_date: row.try_get("", "end_date")?,
                venue: row.try_get("", "venue")?,
                hosts: serde_json::from_str(&hosts).unwrap_or_default(),
                documents: serde_json::from_str(&documents).unwrap_or_default(),
            })
        })();
        match node {
            Ok(n) => nodes.push(n),
            Err(e) => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{{\"errors\":[{{\"message\":\"{e}\"}}]}}"),
                )
                    .into_response();
            }
        }
    }
    Json(Answer {
        data: Data {
            activities: Connection {
                nodes,
                page_info: PageInfo {
                    has_next_page,
                    end_cursor,
                },
            },
        },
    })
    .into_response()
}

/// The baseline's router over `db`.
pub fn router(db: Db) -> Router {
    Router::new()
        .route("/graphql", post(listing))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(db)
}

/// Connects with the hub's default pool settings.
pub async fn connect(url: &str) -> anyhow::Result<Db> {
    let config = DbConfig {
        url: url.to_owned(),
        migrate_on_start: false,
        ..DbConfig::default()
    };
    Db::connect(&config)
        .await
        .with_context(|| format!("cannot connect to {}", cityhub_storage::db::redact_url(url)))
}

/// Serves the baseline on `listen` until the process ends (`serve-baseline`).
pub async fn serve(database: &str, listen: SocketAddr) -> anyhow::Result<()> {
    let db = connect(database).await?;
    let listener = cityhub::app::bind(listen, 4096)?;
    axum::serve(listener, router(db)).await?;
    Ok(())
}

/// Serves the baseline in this process on a free port; returns its address.
pub async fn spawn_in_process(database: &str) -> anyhow::Result<SocketAddr> {
    let db = connect(database).await?;
    let listener = cityhub::app::bind("127.0.0.1:0".parse()?, 4096)?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(db)).await;
    });
    crate::server::wait_ready(addr).await?;
    Ok(addr)
}
