//! Building the schema: roots, limits, federation, and the extension that
//! gives parse and validation errors the contract's codes.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    SDLExportOptions, Schema, ServerError, ServerResult, ValidationResult, Variables,
};

use crate::error::Code;
use crate::guard::{DocumentLimits, RequestGuard};
use crate::roots::{Mutation, Query, Subscription};
use crate::state::{ApiSettings, HubState};
use cityhub_app::rate_limit::{Limiters, RateLimitSettings};

/// The hub's schema type.
pub type HubSchema = Schema<Query, Mutation, Subscription>;

/// Gives parse, depth and complexity errors the contract's codes.
struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

/// Sets `code` unless the error already carries one (the request guard's
/// refusals come through the parse hook with their own).
fn with_code(mut err: ServerError, code: Code) -> ServerError {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code.as_str());
    }
    err
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|e| {
            // The parser's own recursion guard ("recursion limit exceeded")
            // is a depth limit too.
            let code = if e.message.contains("recursion limit exceeded")
                || e.message.starts_with("The recursion depth")
            {
                Code::QueryTooDeep
            } else {
                Code::GraphqlParseFailed
            };
            with_code(e, code)
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let code = match e.message.as_str() {
                        "Query is nested too deep." => Code::QueryTooDeep,
                        "Query is too complex." => Code::QueryTooComplex,
                        _ => Code::GraphqlValidationFailed,
                    };
                    with_code(e, code)
                })
                .collect()
        })
    }
}

/// The schema with its limits, without data: enough to print the SDL.
pub fn schema_builder(
    settings: &ApiSettings,
    limiters: Arc<Limiters>,
) -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    let limits = document_limits(settings);
    roots()
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity)
        .limit_recursive_depth(settings.max_depth.max(32))
        .enable_federation()
        .enable_subscription_in_federation()
        .extension(ErrorCodes)
        .extension(RequestGuard::new(limits, limiters))
}

/// A fresh builder from the roots: the serving schema and the fast-path
/// schema are built from the same ones.
fn roots() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
}

/// The serving schema, with the hub's state.
pub fn build_schema(state: HubState) -> HubSchema {
    schema_builder(&state.settings, state.limiters.clone())
        .data(state)
        .finish()
}

/// The same schema without extensions and with async-graphql's `Fast`
/// validation (fragment cycles, complexity and depth only): for documents
/// that already passed [`build_schema`]'s full validation once. With no
/// extension, every field resolves on async-graphql's direct path instead
/// of through the extension chain; the request guard runs before it
/// instead (`RequestGuard::admit`). See `http::execute`.
pub fn build_fast_schema(state: HubState) -> HubSchema {
    let settings = &state.settings;
    roots()
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity)
        .limit_recursive_depth(settings.max_depth.max(32))
        .enable_federation()
        .enable_subscription_in_federation()
        .validation_mode(async_graphql::ValidationMode::Fast)
        .data(state)
        .finish()
}

/// The guard [`build_schema`] installs, for callers that run it themselves.
pub fn request_guard(settings: &ApiSettings, limiters: Arc<Limiters>) -> RequestGuard {
    RequestGuard::new(document_limits(settings), limiters)
}

fn document_limits(settings: &ApiSettings) -> DocumentLimits {
    DocumentLimits {
        max_root_fields: settings.max_root_fields,
        max_mutations: settings.max_mutations_per_request,
        max_entities: settings.max_entities,
        max_complexity: settings.max_complexity,
        max_tokens: settings.max_document_tokens,
    }
}

/// The SDL as `cityhub schema` prints it and `/schema.graphql` serves it:
/// the federation v2 form, so a gateway can compose it as it stands.
pub fn sdl() -> String {
    let limiters = Arc::new(Limiters::new(&RateLimitSettings::default()));
    schema_builder(&ApiSettings::default(), limiters)
        .finish()
        .sdl_with_options(SDLExportOptions::new().federation())
}

/// The SDL of an already built schema.
pub fn sdl_of(schema: &HubSchema) -> String {
    schema.sdl_with_options(SDLExportOptions::new().federation())
}

#[cfg(test)]
mod tests {
    /// Every type, field, input field and enum value of the schema carries
    /// a description (the federation `@link` arguments aside).
    #[test]
    fn every_type_and_field_is_described() {
        let sdl = super::sdl();
        let lines: Vec<&str> = sdl.lines().collect();
        let mut missing = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim();
            if t.is_empty()
                || t.starts_with("\"\"\"")
                || t == "}"
                // The end of a field whose arguments span lines.
                || t.starts_with(')')
                || t.starts_with("url:")
                || t.starts_with("import:")
            {
                continue;
            }
            let declares_type = [
                "type ",
                "input ",
                "enum ",
                "scalar ",
                "interface ",
                "union ",
            ]
            .iter()
            .any(|k| t.starts_with(k));
            // A field, an argument (on a line of its own once arguments
            // are described), an input field or an enum value.
            let declares_member = line.starts_with('\t')
                && (t.contains(':')
                    || t.ends_with('(')
                    || t.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
            if !(declares_type || declares_member) {
                continue;
            }
            let previous = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim());
            if !previous.is_some_and(|p| p.ends_with("\"\"\"")) {
                missing.push(t.to_owned());
            }
        }
        assert!(missing.is_empty(), "undescribed: {missing:#?}");
    }
}
