//! What a request may ask for, decided before anything executes, over HTTP
//! and WebSocket alike (both run through the schema, so both pass here):
//! aliased root fields, mutations per request, `_entities`
//! representations and their cost, and the rate limits (mutations per
//! token; optionally every anonymous request per client address).
//! The cost of ordinary fields (page size × children, at least 2 per
//! alias of a listing) is async-graphql's complexity, set on each
//! listing field; the recursion and depth limits are the parser's and the
//! validator's.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};
use async_graphql_value::{ConstValue, Value};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::auth::RequestCtx;
use crate::error::Code;

/// Rate limits (`[rate_limit]` in `cityhub.toml`), per instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Mutations per second one token may run (sustained); 0 turns it off.
    pub mutations_per_sec: u32,
    /// Mutations one token may run in a burst above the sustained rate.
    pub mutation_burst: u32,
    /// Requests per second one client address may make without a token;
    /// 0 (the default) turns it off.
    pub anonymous_per_sec: u32,
    /// Anonymous requests one client address may make in a burst.
    pub anonymous_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            mutations_per_sec: 50,
            mutation_burst: 200,
            anonymous_per_sec: 0,
            anonymous_burst: 100,
        }
    }
}

/// The client's address, as the HTTP layer determined it (the peer, or the
/// first untrusted hop of `X-Forwarded-For` behind a trusted proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The limits a document is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Most fields (aliases counted) at an operation's root.
    pub max_root_fields: usize,
    /// Most mutation fields in one request.
    pub max_mutations: usize,
    /// Most `_entities` representations in one request.
    pub max_entities: usize,
    /// Highest cost; `_entities` costs its selection per representation.
    pub max_complexity: usize,
}

/// The rate limiters of one instance.
pub struct Limiters {
    mutations: Option<DefaultKeyedRateLimiter<String>>,
    anonymous: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("mutations", &self.mutations.is_some())
            .field("anonymous", &self.anonymous.is_some())
            .finish()
    }
}

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(per_sec)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limiters {
    /// Limiters for `settings`.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            mutations: quota(settings.mutations_per_sec, settings.mutation_burst)
                .map(RateLimiter::keyed),
            anonymous: quota(settings.anonymous_per_sec, settings.anonymous_burst)
                .map(RateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    /// Takes `n` cells from `key`'s bucket; `Err(seconds to wait)` if empty.
    fn take<K>(&self, limiter: &DefaultKeyedRateLimiter<K>, key: &K, n: usize) -> Result<(), u64>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        let n = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            // More than the burst at once can never pass: wait a second and
            // send fewer (the per-request mutation cap keeps this rare).
            Err(_) => Err(1),
        }
    }

    /// Drops the state of keys whose buckets are full again (bounded memory).
    pub fn retain_recent(&self) {
        if let Some(l) = &self.mutations {
            l.retain_recent();
        }
        if let Some(l) = &self.anonymous {
            l.retain_recent();
        }
    }
}

/// The extension that applies [`DocumentLimits`] and the rate limits.
#[derive(Clone)]
pub struct RequestGuard {
    limits: DocumentLimits,
    limiters: Arc<Limiters>,
}

impl RequestGuard {
    /// A guard with these limits and limiters.
    pub fn new(limits: DocumentLimits, limiters: Arc<Limiters>) -> Self {
        Self { limits, limiters }
    }
}

impl ExtensionFactory for RequestGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

/// A request-level error with a code (and, for `RATE_LIMITED`, the
/// seconds to wait in `extensions.retryAfter`).
fn refuse(code: Code, message: String, retry_after: Option<u64>) -> ServerError {
    let mut err = ServerError::new(message, None);
    let ext = err.extensions.get_or_insert_with(Default::default);
    ext.set("code", code.as_str());
    if let Some(secs) = retry_after {
        ext.set("retryAfter", secs);
    }
    err
}

impl RequestGuard {
    /// Decides whether a parsed document may run for this caller: its shape
    /// against the [`DocumentLimits`], then the rate limits. The schema's
    /// parse hook calls it, and so does the fast path of
    /// [`crate::http`], which executes already-validated documents without
    /// extensions.
    pub fn admit(
        &self,
        document: &ExecutableDocument,
        variables: &Variables,
        principal: Option<&crate::auth::Principal>,
        client: Option<&ClientAddr>,
    ) -> ServerResult<()> {
        let shape = measure(document, variables);
        let l = &self.limits;
        if shape.root_fields > l.max_root_fields {
            return Err(refuse(
                Code::QueryTooComplex,
                format!(
                    "an operation selects {} root fields (aliases count); at most {} are allowed",
                    shape.root_fields, l.max_root_fields
                ),
                None,
            ));
        }
        if shape.mutations > l.max_mutations {
            return Err(refuse(
                Code::QueryTooComplex,
                format!(
                    "a request may run at most {} mutations ({} asked)",
                    l.max_mutations, shape.mutations
                ),
                None,
            ));
        }
        if shape.entities > l.max_entities {
            return Err(refuse(
                Code::QueryTooComplex,
                format!(
                    "_entities takes at most {} representations per request ({} given)",
                    l.max_entities, shape.entities
                ),
                None,
            ));
        }
        if shape.entities_cost > l.max_complexity {
            return Err(refuse(
                Code::QueryTooComplex,
                "Query is too complex.".to_owned(),
                None,
            ));
        }
        match principal {
            Some(p) if shape.mutations > 0 => {
                if let Some(limiter) = &self.limiters.mutations
                    && let Err(wait) = self.limiters.take(limiter, &p.token_id, shape.mutations)
                {
                    return Err(refuse(
                        Code::RateLimited,
                        format!("too many mutations for this token; retry in {wait} s"),
                        Some(wait),
                    ));
                }
            }
            Some(_) => {}
            None => {
                if let (Some(limiter), Some(ClientAddr(ip))) = (&self.limiters.anonymous, client)
                    && let Err(wait) = self.limiters.take(limiter, ip, 1)
                {
                    return Err(refuse(
                        Code::RateLimited,
                        format!("too many requests from this address; retry in {wait} s"),
                        Some(wait),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Extension for RequestGuard {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let principal = ctx
            .data_opt::<RequestCtx>()
            .and_then(|r| r.principal.as_ref());
        self.admit(
            &document,
            variables,
            principal,
            ctx.data_opt::<ClientAddr>(),
        )?;
        Ok(document)
    }
}

/// What a document asks for, the largest over its operations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Fields at the root of the largest operation.
    pub root_fields: usize,
    /// Mutation fields at the root of the largest mutation.
    pub mutations: usize,
    /// `_entities` representations in the largest operation.
    pub entities: usize,
    /// Representations × the cost of the selection on them, summed.
    pub entities_cost: usize,
}

/// Fragments are expanded at most this deep (the validator refuses cycles
/// and deep documents later; this only bounds the walk).
const MAX_WALK_DEPTH: usize = 64;

/// Selections visited at most per document: fragments spread several times
/// each could otherwise make the walk exponential. Past it, the walk stops
/// and the validator's own limits decide.
const MAX_WALK_STEPS: usize = 100_000;

/// Measures every operation of `document`.
pub fn measure(document: &ExecutableDocument, variables: &Variables) -> Shape {
    let walker = Walker {
        fragments: &document.fragments,
        variables,
        steps: std::cell::Cell::new(0),
    };
    let operations: Vec<_> = match &document.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(ops) => ops.values().collect(),
    };
    let mut shape = Shape::default();
    for op in operations {
        let mut roots = Vec::new();
        walker.root_fields(&op.node.selection_set.node, 0, &mut roots);
        shape.root_fields = shape.root_fields.max(roots.len());
        if op.node.ty == OperationType::Mutation {
            shape.mutations = shape.mutations.max(roots.len());
        }
        let (mut entities, mut cost) = (0usize, 0usize);
        for field in roots.iter().filter(|f| f.name.node == "_entities") {
            let n = field
                .arguments
                .iter()
                .find(|(name, _)| name.node == "representations")
                .map_or(0, |(_, value)| walker.list_len(&value.node));
            entities = entities.saturating_add(n);
            let per = 1 + walker.count_fields(&field.selection_set.node, 0);
            cost = cost.saturating_add(n.saturating_mul(per));
        }
        shape.entities = shape.entities.max(entities);
        shape.entities_cost = shape.entities_cost.max(cost);
    }
    shape
}

struct Walker<'a> {
    fragments: &'a std::collections::HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Variables,
    steps: std::cell::Cell<usize>,
}

impl<'a> Walker<'a> {
    /// Counts a step; false once the budget is spent.
    fn step(&self, depth: usize) -> bool {
        let steps = self.steps.get() + 1;
        self.steps.set(steps);
        depth <= MAX_WALK_DEPTH && steps <= MAX_WALK_STEPS
    }

    /// Collects the fields of a root selection set, fragments expanded.
    fn root_fields(
        &self,
        set: &'a SelectionSet,
        depth: usize,
        out: &mut Vec<&'a async_graphql::parser::types::Field>,
    ) {
        if !self.step(depth) {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => out.push(&f.node),
                Selection::InlineFragment(f) => {
                    self.root_fields(&f.node.selection_set.node, depth + 1, out);
                }
                Selection::FragmentSpread(s) => {
                    if let Some(def) = self.fragments.get(&s.node.fragment_name.node) {
                        self.root_fields(&def.node.selection_set.node, depth + 1, out);
                    }
                }
            }
        }
    }

    /// The page size a listing field asks for: its `first` (literal or
    /// variable, at most 1,000), or the listing's default.
    fn page_size(&self, field: &async_graphql::parser::types::Field) -> Option<usize> {
        let default = match field.name.node.as_str() {
            "activities" => Some(20),
            "cities" => Some(50),
            _ => None,
        };
        let first = field
            .arguments
            .iter()
            .find(|(name, _)| name.node == "first")
            .map(|(_, v)| match &v.node {
                Value::Number(n) => n.as_u64(),
                Value::Variable(name) => match self.variables.get(name) {
                    Some(ConstValue::Number(n)) => n.as_u64(),
                    _ => None,
                },
                _ => None,
            });
        match first {
            Some(Some(n)) => Some(usize::try_from(n.min(1000)).unwrap_or(1000)),
            Some(None) => default.or(Some(20)),
            None => default,
        }
    }

    /// The cost of a selection set, as async-graphql's complexity counts
    /// it: 1 per field, and a listing `2 + page size × its children`.
    fn count_fields(&self, set: &SelectionSet, depth: usize) -> usize {
        if !self.step(depth) {
            return 0;
        }
        set.items.iter().fold(0usize, |n, item| {
            n.saturating_add(match &item.node {
                Selection::Field(f) => {
                    let children = self.count_fields(&f.node.selection_set.node, depth + 1);
                    match self.page_size(&f.node) {
                        Some(size) => size.saturating_mul(children).saturating_add(2),
                        None => 1usize.saturating_add(children),
                    }
                }
                Selection::InlineFragment(f) => {
                    self.count_fields(&f.node.selection_set.node, depth + 1)
                }
                Selection::FragmentSpread(s) => self
                    .fragments
                    .get(&s.node.fragment_name.node)
                    .map_or(0, |def| {
                        self.count_fields(&def.node.selection_set.node, depth + 1)
                    }),
            })
        })
    }

    /// The length of a list argument, literal or from a variable.
    fn list_len(&self, value: &Value) -> usize {
        match value {
            Value::List(items) => items.len(),
            Value::Variable(name) => match self.variables.get(name) {
                Some(ConstValue::List(items)) => items.len(),
                Some(ConstValue::Null) | None => 0,
                Some(_) => 1,
            },
            Value::Null => 0,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(query: &str, variables: serde_json::Value) -> Shape {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        measure(&doc, &Variables::from_json(variables))
    }

    #[test]
    fn counts_aliases_fragments_and_mutations() {
        let q = "query { a: network { name } b: network { name } ...F ... on Query { c: viewer { role } } } fragment F on Query { d: network { name } }";
        let s = shape(q, serde_json::json!({}));
        assert_eq!(s.root_fields, 4);
        assert_eq!(s.mutations, 0);
        let m = "mutation { a: deleteActivity(id: 1) b: deleteActivity(id: 2) }";
        assert_eq!(shape(m, serde_json::json!({})).mutations, 2);
    }

    #[test]
    fn counts_entities_literal_and_variable() {
        let q = r#"query($r: [_Any!]!) { _entities(representations: $r) { ... on City { id name } } x: _entities(representations: [{__typename: "City", id: "1"}]) { __typename } }"#;
        let reps: Vec<_> = (0..7)
            .map(|i| serde_json::json!({"__typename": "City", "id": i.to_string()}))
            .collect();
        let s = shape(q, serde_json::json!({ "r": reps }));
        assert_eq!(s.entities, 8);
        assert_eq!(s.entities_cost, 7 * 3 + 2);
    }

    #[test]
    fn fragment_cycles_and_fans_terminate() {
        let q = "query { ...A } fragment A on Query { ...B } fragment B on Query { network { name } ...A }";
        let s = shape(q, serde_json::json!({}));
        assert!(s.root_fields >= 1);
        let fan = "query { _entities(representations: [1]) { ...A } } fragment A on City { ...B ...B } fragment B on City { ...A ...A id }";
        let s = shape(fan, serde_json::json!({}));
        assert!(s.entities_cost <= MAX_WALK_STEPS + 1);
    }
}
