//! Slugs: the stable, URL-safe names of cities and activities.

use crate::error::DomainError;

/// A validated slug: lowercase ASCII letters and digits in words joined by
/// single hyphens (`santa-fe`, `annual-meeting-2016`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slug(String);

impl Slug {
    /// Parses `raw` as a slug of at most `max_chars` characters; `field` names
    /// the input in the error.
    pub fn parse(raw: &str, max_chars: usize, field: &str) -> Result<Self, DomainError> {
        if raw.is_empty() {
            return Err(DomainError::invalid(field, "must not be empty"));
        }
        if raw.len() > max_chars {
            return Err(DomainError::invalid(
                field,
                format!("must be at most {max_chars} characters"),
            ));
        }
        let valid = raw.split('-').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if !valid {
            return Err(DomainError::invalid(
                field,
                "must be lowercase letters and digits in words joined by single hyphens (e.g. santa-fe)",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Slug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(Slug::parse("santa-fe", 100, "slug").is_ok());
        assert!(Slug::parse("a1", 100, "slug").is_ok());
        for bad in ["", "-a", "a-", "a--b", "A", "é", "a b", "a_b"] {
            assert!(Slug::parse(bad, 100, "slug").is_err(), "{bad}");
        }
        assert!(Slug::parse("abcdef", 5, "slug").is_err());
    }
}
