//! Domain errors: what a caller did wrong, with the input path it concerns.

/// One input rule that a value broke, with the path of the offending input
/// (`input.endDate`, `input.documents[2].url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Path of the input that broke the rule, in GraphQL argument notation.
    pub field: String,
    /// A sentence saying what is wrong, safe to show to clients.
    pub message: String,
}

impl FieldError {
    /// Builds an error for `field` with a human-readable `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Errors raised by domain rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// An input broke a validation rule.
    #[error(transparent)]
    Invalid(#[from] FieldError),
}

impl DomainError {
    /// Shorthand for [`DomainError::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(FieldError::new(field, message))
    }
}
