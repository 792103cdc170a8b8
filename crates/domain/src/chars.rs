//! Which characters user text may hold. Every text input (names, titles,
//! filters, slugs, keys, cursors) is checked here before it can reach a
//! database: NUL and other control characters are refused everywhere
//! (PostgreSQL cannot store NUL at all), newline and tab only in prose
//! (summaries, Markdown descriptions, reasons), and the bidirectional
//! overrides that make a name display as something else only in prose.

use crate::error::DomainError;

/// What a text is, which decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// One line: names, titles, themes, filters, keys. No control
    /// characters, no bidirectional overrides or isolates.
    Line,
    /// Prose (summaries, Markdown): newline, carriage return and tab
    /// allowed; other control characters refused.
    Prose,
}

/// The bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069): they reorder how the rest of a line is shown, so a
/// name could pass for another. The plain marks (LRM, RLM, ALM), which
/// right-to-left text needs, are allowed.
pub fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks the characters of `value` (not its length); `field` names the
/// input in the error.
pub fn check_text(field: &str, value: &str, kind: TextKind) -> Result<(), DomainError> {
    for c in value.chars() {
        let refused = match kind {
            TextKind::Line => c.is_control() || is_bidi_override(c),
            TextKind::Prose => c.is_control() && !matches!(c, '\n' | '\r' | '\t'),
        };
        if refused {
            let what = if is_bidi_override(c) {
                "bidirectional override characters"
            } else if c == '\0' {
                "NUL characters"
            } else {
                "control characters"
            };
            return Err(DomainError::invalid(
                field,
                format!("must not contain {what}"),
            ));
        }
    }
    Ok(())
}

/// Checks a one-line value: its characters and at most `max_chars` of them.
pub fn check_line(field: &str, value: &str, max_chars: usize) -> Result<(), DomainError> {
    if value.chars().count() > max_chars {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    check_text(field, value, TextKind::Line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_refuse_controls_and_overrides() {
        for bad in [
            "a\0b",
            "a\nb",
            "a\tb",
            "x\u{202E}gpj.exe",
            "\u{2066}x",
            "\u{7f}",
        ] {
            assert!(check_text("f", bad, TextKind::Line).is_err(), "{bad:?}");
        }
        for good in ["Östersund", "Ερμούπολη", "\u{200F}שלום", "a-b c"] {
            assert!(check_text("f", good, TextKind::Line).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn prose_allows_layout_only() {
        assert!(check_text("f", "# Title\n\n\tcode\r\n", TextKind::Prose).is_ok());
        assert!(check_text("f", "x\u{202E}y", TextKind::Prose).is_ok());
        let err =
            check_text("input.description", "a\0b", TextKind::Prose).expect_err("NUL is refused");
        assert!(err.to_string().contains("NUL"), "{err}");
        assert!(check_text("f", "a\u{1b}[31m", TextKind::Prose).is_err());
    }

    #[test]
    fn line_length_is_in_characters() {
        assert!(check_line("f", "ééé", 3).is_ok());
        assert!(check_line("f", "éééé", 3).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::{ActivityFormat, ActivityInput, ActivityKind, DatePrecision, Limits};

    proptest! {
        /// Any text is accepted or refused with a field error; what is
        /// accepted as a line holds no control or override character.
        #[test]
        fn any_text_is_a_value_or_a_field_error(text in any::<String>()) {
            match check_text("f", &text, TextKind::Line) {
                Ok(()) => prop_assert!(!text.chars().any(|c| c.is_control() || is_bidi_override(c))),
                Err(DomainError::Invalid(e)) => prop_assert_eq!(e.field, "f"),
            }
            let _ = check_text("f", &text, TextKind::Prose);
        }

        /// Validation of any title, summary, description, slug and theme
        /// never panics, and what it accepts holds no NUL.
        #[test]
        fn validation_never_panics(
            title in any::<String>(),
            summary in proptest::option::of(any::<String>()),
            description in proptest::option::of(any::<String>()),
            slug in proptest::option::of(any::<String>()),
            theme in any::<String>(),
        ) {
            let input = ActivityInput {
                kind: ActivityKind::Workshop,
                title,
                summary,
                description,
                format: ActivityFormat::InPerson,
                start_date: None,
                end_date: None,
                date_precision: DatePrecision::Day,
                venue: None,
                venue_city: None,
                co_hosts: Vec::new(),
                organizations: Vec::new(),
                fields: Vec::new(),
                themes: vec![theme],
                objectives: Vec::new(),
                documents: Vec::new(),
                slug,
            };
            if input.validate("input", &Limits::default()).is_ok() {
                let all = [Some(&input.title), input.summary.as_ref(), input.description.as_ref(), input.slug.as_ref(), input.themes.first()];
                prop_assert!(all.iter().flatten().all(|t| !t.contains('\0')));
            }
        }

        /// Folding and search terms never panic; terms are alphanumeric
        /// runs only, so no full-text operator can get through.
        #[test]
        fn folding_and_terms_are_total(text in any::<String>()) {
            let _ = crate::text::fold(&text);
            let terms = crate::text::search_terms(&text, 16);
            prop_assert!(terms.len() <= 16);
            prop_assert!(terms.iter().all(|t| !t.is_empty() && t.chars().all(char::is_alphanumeric)));
        }
    }
}
