//! The one mapping from every layer's errors to GraphQL errors with the
//! contract's `extensions.code`. Internal causes are logged here, once, and
//! reach clients only as a generic message with a request id.

use async_graphql::{Error, ErrorExtensions};
use cityhub_app::service::ServiceError;
use cityhub_domain::{Denied, DomainError, FieldError};
use cityhub_storage::{CursorError, StorageError};

pub use cityhub_app::Code;

/// Builds a client error with a code.
pub fn coded(code: Code, message: impl Into<String>) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code.as_str()))
}

/// Builds a `BAD_USER_INPUT` error naming the input path.
pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Error {
    let field = field.into();
    Error::new(format!("{field}: {}", message.into())).extend_with(move |_, e| {
        e.set("code", Code::BadUserInput.as_str());
        e.set("field", field.clone());
    })
}

/// An internal failure: logged in full here, generic to the client.
pub fn internal(err: &(dyn std::error::Error + 'static)) -> Error {
    let id = uuid::Uuid::new_v4().to_string();
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    tracing::error!(error_id = %id, error = %chain, "internal error");
    Error::new(format!("internal error (id {id})")).extend_with(move |_, e| {
        e.set("code", Code::InternalServerError.as_str());
        e.set("errorId", id.clone());
    })
}

/// Maps a storage error.
pub fn storage(err: StorageError) -> Error {
    match err {
        StorageError::NotFound => coded(Code::NotFound, "not found"),
        StorageError::Conflict(message) => coded(Code::Conflict, message),
        StorageError::Unavailable(ref source) => {
            tracing::warn!(error = %source, "database unavailable");
            unavailable()
        }
        StorageError::InvalidData(ref source) => {
            tracing::debug!(error = %source, "the database refused a value");
            coded(
                Code::BadUserInput,
                "a value in the request cannot be stored or compared (out of range or holding characters that are not allowed)",
            )
        }
        other => internal(&other),
    }
}

/// The database cannot be reached: `SERVICE_UNAVAILABLE`, and a retry may
/// succeed (`extensions.retryable`).
pub fn unavailable() -> Error {
    Error::new("the database is unavailable; retry shortly").extend_with(|_, e| {
        e.set("code", Code::ServiceUnavailable.as_str());
        e.set("retryable", true);
    })
}

/// Maps a domain error (a broken input rule).
pub fn domain(err: DomainError) -> Error {
    match err {
        DomainError::Invalid(e) => field(e),
    }
}

/// Maps a field error.
pub fn field(err: FieldError) -> Error {
    bad_input(err.field, err.message)
}

/// Maps a permission refusal.
pub fn denied(err: Denied) -> Error {
    match err {
        Denied::Unauthenticated => coded(Code::Unauthenticated, "this operation needs a token"),
        Denied::Forbidden => coded(Code::Forbidden, "this token may not do that"),
        Denied::Hidden => coded(Code::NotFound, "not found"),
    }
}

/// Maps a service error.
pub fn service(err: ServiceError) -> Error {
    match err {
        ServiceError::Invalid(e) => field(e),
        ServiceError::Denied(d) => denied(d),
        ServiceError::NotFound(message) => coded(Code::NotFound, message),
        ServiceError::Conflict { message, field } => {
            Error::new(message).extend_with(move |_, e| {
                e.set("code", Code::Conflict.as_str());
                if let Some(f) = &field {
                    e.set("field", f.clone());
                }
            })
        }
        ServiceError::Imported => coded(Code::Forbidden, ServiceError::Imported.to_string()),
        ServiceError::Storage(e) => storage(e),
    }
}

/// Maps a cursor error for argument `after`.
pub fn cursor(err: CursorError) -> Error {
    bad_input("after", err.to_string())
}

/// Gives a code to every error of `response` raised before any hook (an
/// unknown operation name, a variable of the wrong type): `BAD_USER_INPUT`
/// once execution started, else `GRAPHQL_VALIDATION_FAILED`. Returns
/// whether execution started. HTTP and WebSocket both answer through it.
pub fn assign_missing_codes(response: &mut async_graphql::Response) -> bool {
    let executed = !matches!(response.data, async_graphql::Value::Null);
    for err in &mut response.errors {
        let has_code = err
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if !has_code {
            let code = if executed {
                Code::BadUserInput
            } else {
                Code::GraphqlValidationFailed
            };
            err.extensions
                .get_or_insert_with(Default::default)
                .set("code", code.as_str());
        }
    }
    executed
}

/// Lets resolvers use `?` on service results.
pub trait ResultExt<T> {
    /// Converts the error into a coded GraphQL error.
    fn api(self) -> Result<T, Error>;
}

impl<T> ResultExt<T> for Result<T, ServiceError> {
    fn api(self) -> Result<T, Error> {
        self.map_err(service)
    }
}

impl<T> ResultExt<T> for Result<T, StorageError> {
    fn api(self) -> Result<T, Error> {
        self.map_err(storage)
    }
}

impl<T> ResultExt<T> for Result<T, std::sync::Arc<StorageError>> {
    fn api(self) -> Result<T, Error> {
        self.map_err(|e| match std::sync::Arc::try_unwrap(e) {
            Ok(e) => storage(e),
            Err(shared) => match shared.as_ref() {
                StorageError::Unavailable(_) => unavailable(),
                other => internal(other),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Value;

    fn ext(err: &Error, key: &str) -> Option<Value> {
        err.extensions.as_ref().and_then(|e| e.get(key).cloned())
    }

    fn code_of(err: &Error) -> String {
        match ext(err, "code") {
            Some(Value::String(s)) => s,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn every_service_error_maps_to_its_code() {
        let cases: Vec<(ServiceError, &str)> = vec![
            (
                ServiceError::Invalid(FieldError::new("input.endDate", "x")),
                "BAD_USER_INPUT",
            ),
            (
                ServiceError::Denied(Denied::Unauthenticated),
                "UNAUTHENTICATED",
            ),
            (ServiceError::Denied(Denied::Forbidden), "FORBIDDEN"),
            (ServiceError::Denied(Denied::Hidden), "NOT_FOUND"),
            (ServiceError::NotFound("gone".into()), "NOT_FOUND"),
            (
                ServiceError::Conflict {
                    message: "v".into(),
                    field: None,
                },
                "CONFLICT",
            ),
            (ServiceError::Storage(StorageError::NotFound), "NOT_FOUND"),
            (
                ServiceError::Storage(StorageError::Conflict("c".into())),
                "CONFLICT",
            ),
            (
                ServiceError::Storage(StorageError::Unavailable(sea_orm::DbErr::Conn(
                    sea_orm::RuntimeErr::Internal("x".into()),
                ))),
                "SERVICE_UNAVAILABLE",
            ),
            (
                ServiceError::Storage(StorageError::Other(sea_orm::DbErr::Custom(
                    "SELECT secret FROM t".into(),
                ))),
                "INTERNAL_SERVER_ERROR",
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(code_of(&service(err)), expected);
        }
    }

    #[test]
    fn bad_input_names_the_field_and_internal_hides_the_cause() {
        let e = field(FieldError::new(
            "input.documents[2].url",
            "is not a valid URL",
        ));
        assert_eq!(
            ext(&e, "field"),
            Some(Value::String("input.documents[2].url".into()))
        );
        let e = service(ServiceError::Storage(StorageError::Other(
            sea_orm::DbErr::Custom("SELECT secret FROM t".into()),
        )));
        assert!(!e.message.contains("SELECT"), "{}", e.message);
        assert!(e.message.starts_with("internal error"));
    }
}
