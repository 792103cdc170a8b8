//! What a request may ask for, decided before anything executes, over HTTP
//! and WebSocket alike (both run through the schema, so both pass here):
//! aliased root fields, mutations per request, `_entities`
//! representations and their cost, and the rate limits (mutations per
//! token; optionally every anonymous request per client address), taken
//! from the application layer's [`Limiters`], which the city websites
//! share.
//! The cost of ordinary fields (page size × children, at least 2 per
//! alias of a listing) is async-graphql's complexity, set on each
//! listing field; the recursion and depth limits are the parser's and the
//! validator's.

use std::net::IpAddr;
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, ServerResult, Variables};

use crate::document::{count_tokens, measure};
use crate::error::Code;
use cityhub_app::auth::RequestCtx;
use cityhub_app::rate_limit::Limiters;

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
    /// Most lexical tokens a document may have, counted before it is
    /// parsed (`api.max_document_tokens`).
    pub max_tokens: usize,
}

/// The name of the operation a request runs, as the request gave it: the
/// guard measures that operation only (stored in the request's data by
/// the guard's `prepare_request` hook).
#[derive(Debug, Clone)]
struct OperationName(Option<String>);

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
pub fn refuse(code: Code, message: String, retry_after: Option<u64>) -> ServerError {
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
        operation: Option<&str>,
        principal: Option<&cityhub_app::auth::Principal>,
        client: Option<&ClientAddr>,
    ) -> ServerResult<()> {
        let shape = measure(document, variables, operation);
        let l = &self.limits;
        if shape.exhausted {
            return Err(refuse(
                Code::QueryTooComplex,
                "the document spreads its fragments too often to be measured".to_owned(),
                None,
            ));
        }
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
                if let Err(wait) = self.limiters.take_mutations(&p.token_id, shape.mutations) {
                    return Err(refuse(
                        Code::RateLimited,
                        format!("too many mutations for this token; retry in {wait} s"),
                        Some(wait),
                    ));
                }
            }
            Some(_) => {}
            None => {
                if let Some(ClientAddr(ip)) = client
                    && let Err(wait) = self.limiters.take_anonymous(*ip)
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

impl RequestGuard {
    /// Refuses a document of more than `max_tokens` lexical tokens, before
    /// it is parsed (`QUERY_TOO_COMPLEX`).
    pub fn check_size(&self, query: &str) -> ServerResult<()> {
        check_size(query, self.limits.max_tokens)
    }

    /// The document limits.
    pub fn limits(&self) -> &DocumentLimits {
        &self.limits
    }

    /// The instance's rate limiters (`cityhub_app::rate_limit`, shared
    /// with the city websites).
    pub fn limiters(&self) -> &Arc<Limiters> {
        &self.limiters
    }
}

/// Refuses `query` when it has more than `max_tokens` lexical tokens,
/// before it is parsed (`QUERY_TOO_COMPLEX`).
pub fn check_size(query: &str, max_tokens: usize) -> ServerResult<()> {
    match count_tokens(query, max_tokens) {
        Ok(_) => Ok(()),
        Err(_) => Err(refuse(
            Code::QueryTooComplex,
            format!("the document has more than {max_tokens} tokens"),
            None,
        )),
    }
}

#[async_trait::async_trait]
impl Extension for RequestGuard {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        request
            .data
            .insert(OperationName(request.operation_name.clone()));
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        self.check_size(query)?;
        let document = next.run(ctx, query, variables).await?;
        let principal = ctx
            .data_opt::<RequestCtx>()
            .and_then(|r| r.principal.as_ref());
        let operation = ctx.data_opt::<OperationName>().and_then(|o| o.0.as_deref());
        self.admit(
            &document,
            variables,
            operation,
            principal,
            ctx.data_opt::<ClientAddr>(),
        )?;
        Ok(document)
    }
}
