//! What resolvers reach through the context: the hub's shared state
//! (schema data) and the request's own (principal and loaders).

use std::sync::Arc;

use async_graphql::Context;
use cityhub_app::service::HubService;
use cityhub_domain::Actor;
use cityhub_events::EventBus;
use serde::{Deserialize, Serialize};

use crate::loaders::Loaders;
use cityhub_app::auth::{Authenticator, Principal, RequestCtx};
use cityhub_app::rate_limit::Limiters;

/// API settings (`[api]` in `cityhub.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// The largest `first` a listing accepts.
    pub max_page_size: u64,
    /// Deepest nesting a query may have.
    pub max_depth: usize,
    /// Highest complexity a query may have (listings cost their page size
    /// times their children; `_entities` its selection per representation).
    pub max_complexity: usize,
    /// Most fields (aliases count) at the root of one operation.
    pub max_root_fields: usize,
    /// Most mutations one request may run.
    pub max_mutations_per_request: usize,
    /// Most `_entities` representations one request may resolve.
    pub max_entities: usize,
    /// Most lexical tokens (names, punctuators, values; not comments or
    /// whitespace) a document may have, counted before it is parsed.
    pub max_document_tokens: usize,
    /// The network's name, as `network { name }` answers.
    pub network_name: String,
    /// The network's founding year.
    pub founded_year: i32,
    /// The hub's public base URL (`https://hub.example.org`), used for
    /// absolute links: activity pages, JSON-LD (`Activity.jsonLd`), feeds.
    /// Empty: pages and feeds use each request's `Host`, and
    /// `Activity.jsonLd` uses root-relative URLs.
    pub public_url: String,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_page_size: 100,
            max_depth: 16,
            max_complexity: 20_000,
            max_root_fields: 50,
            max_mutations_per_request: 10,
            max_entities: 100,
            max_document_tokens: 20_000,
            network_name: "UNESCO Creative Cities Network".into(),
            founded_year: 2004,
            public_url: String::new(),
        }
    }
}

/// The hub's shared state, schema data.
#[derive(Clone)]
pub struct HubState {
    /// The write services (and the database).
    pub service: HubService,
    /// Token verification and issuing.
    pub auth: Arc<Authenticator>,
    /// API settings.
    pub settings: ApiSettings,
    /// Live event fan-out.
    pub events: Arc<EventBus>,
    /// The instance's rate limiters.
    pub limiters: Arc<Limiters>,
    /// Cities' connected calendars: runs on demand and on schedule.
    pub sources: cityhub_sources::Sources,
}

static ANONYMOUS: Actor = Actor::Anonymous;

/// The shared state.
pub fn hub<'a>(ctx: &Context<'a>) -> &'a HubState {
    ctx.data_unchecked::<HubState>()
}

/// The acting principal; `None` when anonymous.
pub fn principal<'a>(ctx: &Context<'a>) -> Option<&'a Principal> {
    ctx.data_opt::<RequestCtx>()
        .and_then(|r| r.principal.as_ref())
}

/// The acting actor (anonymous when there is no token).
pub fn actor<'a>(ctx: &Context<'a>) -> &'a Actor {
    principal(ctx).map_or(&ANONYMOUS, |p| &p.actor)
}

/// The request's loaders.
pub fn loaders<'a>(ctx: &Context<'a>) -> &'a Loaders {
    ctx.data_unchecked::<Loaders>()
}
