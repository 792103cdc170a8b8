//! cityhub for city websites: iCalendar calendars, Atom feeds, a page per
//! activity with schema.org JSON-LD, and the embeddable widget (`/embed.js`).
//!
//! Every handler reads through the same scoping as GraphQL: the request's
//! token is verified by the same authenticator (a bad token is refused,
//! never served as anonymous), the same read policy applies, and activities
//! are listed through `ActivityRepo` with the actor's `ReadScope`. Every
//! answer carries an `ETag` computed from its body (so it changes exactly
//! when what it says changes) and honours `If-None-Match` with 304.

pub mod calendar;
pub mod feed;
pub mod http;
pub mod ics;
pub mod listing;
pub mod page;
pub mod params;
pub mod vtimezone;
pub mod widget;

/// The hub's one Markdown renderer (the domain's), which pages and feeds use.
pub use cityhub_domain::markdown;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use cityhub_app::Authenticator;
use cityhub_app::cache::ResponseCache;
use cityhub_app::rate_limit::Limiters;
use cityhub_storage::Db;
use serde::{Deserialize, Serialize};

/// Settings of the city-website endpoints (`[web]` in `cityhub.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// `Cache-Control` of anonymous answers.
    pub cache_control: String,
    /// `Cache-Control` of answers to a request with a token (they may hold drafts).
    pub private_cache_control: String,
    /// The most events a calendar holds (the latest by start date).
    pub calendar_max_events: u64,
    /// The most entries a feed holds (the latest changed).
    pub feed_max_entries: u64,
    /// The most query parameter values a calendar or feed request may carry.
    pub max_query_values: usize,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            cache_control: "public, max-age=60".into(),
            private_cache_control: "private, no-cache".into(),
            calendar_max_events: 5000,
            feed_max_entries: 50,
            max_query_values: 50,
        }
    }
}

/// What the handlers share. The authenticator, the response cache and the
/// rate limiters are the instance's own, the same ones GraphQL uses (the
/// binary hands both surfaces one of each).
#[derive(Clone)]
pub struct WebState {
    /// The database.
    pub db: Db,
    /// Token verification and the read policy's settings.
    pub auth: Arc<Authenticator>,
    /// The instance's response cache, shared with GraphQL.
    pub responses: Arc<ResponseCache>,
    /// The instance's rate limiters, shared with GraphQL.
    pub limiters: Arc<Limiters>,
    /// Proxies whose `X-Forwarded-*` headers are believed
    /// (`http.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Settings.
    pub settings: WebSettings,
    /// The hub's public base URL (`api.public_url`, shared with GraphQL's
    /// `Activity.jsonLd`); empty: taken from each request's `Host`.
    pub public_url: String,
    /// Input limits (the same as GraphQL's).
    pub limits: cityhub_domain::Limits,
}

/// The routes of the city-website endpoints, ready to merge into the hub's app.
pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/calendar.ics", get(calendar::network_calendar))
        .route("/cities/{slug}/calendar.ics", get(calendar::city_calendar))
        .route("/feeds/activities.atom", get(feed::network_feed))
        .route("/cities/{slug}/feed.atom", get(feed::city_feed))
        .route("/activities/{slug}", get(page::activity_page))
        .route("/embed.js", get(widget::embed_js))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::pin_origin,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::limit_anonymous,
        ))
        .with_state(state)
}
