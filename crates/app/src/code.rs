//! The contract's error codes (`extensions.code`), one enum every surface
//! answers with: GraphQL maps its errors onto them (`cityhub_graphql::error`),
//! the web pages and feeds answer with them over HTTP (`crate::http`).

/// The contract's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A token is needed, or the one given failed verification.
    Unauthenticated,
    /// The token may not do this.
    Forbidden,
    /// An argument broke a rule (`extensions.field` names it).
    BadUserInput,
    /// The thing does not exist.
    NotFound,
    /// A version, slug, key or state conflict.
    Conflict,
    /// Too many requests or connections.
    RateLimited,
    /// The query's complexity is above the limit.
    QueryTooComplex,
    /// The query is nested deeper than the limit.
    QueryTooDeep,
    /// The request body is above the limit.
    PayloadTooLarge,
    /// A subscription cursor older than the event log keeps.
    CursorExpired,
    /// The document does not parse.
    GraphqlParseFailed,
    /// The document does not validate against the schema.
    GraphqlValidationFailed,
    /// The database cannot be reached right now; a retry may succeed.
    ServiceUnavailable,
    /// Anything else.
    InternalServerError,
    /// A persisted query's hash is unknown: send the document with it once.
    PersistedQueryNotFound,
    /// Persisted queries are switched off (`cache.persisted_queries`).
    PersistedQueryNotSupported,
}

impl Code {
    /// The code's text in `extensions.code`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::RateLimited => "RATE_LIMITED",
            Code::QueryTooComplex => "QUERY_TOO_COMPLEX",
            Code::QueryTooDeep => "QUERY_TOO_DEEP",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::CursorExpired => "CURSOR_EXPIRED",
            Code::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Code::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Code::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Code::InternalServerError => "INTERNAL_SERVER_ERROR",
            Code::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Code::PersistedQueryNotSupported => "PERSISTED_QUERY_NOT_SUPPORTED",
        }
    }
}
