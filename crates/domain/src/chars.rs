//! Which characters user text may hold, and how text leaves the hub. Every
//! text input (names, titles, filters, slugs, keys, cursors) is checked
//! here before it can reach a database: NUL and other control characters
//! are refused everywhere (PostgreSQL cannot store NUL at all), newline and
//! tab only in prose (summaries, Markdown descriptions, reasons), and the
//! bidirectional overrides that make a name display as something else only
//! in prose. What no output format can carry is refused everywhere: the
//! code points outside XML 1.0's `Char` production and the Unicode
//! noncharacters ([`is_forbidden`]).
//!
//! Prose arrives with any line ending; [`normalize_newlines`] makes CRLF
//! and a lone CR a plain LF before it is stored. Every writer (iCalendar,
//! Atom, HTML, JSON-LD) passes what it emits through [`for_output`], so a
//! row stored before these rules, or imported around them, still cannot
//! break a calendar or a feed.

use std::borrow::Cow;

use crate::error::DomainError;

/// What a text is, which decides what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// One line: names, titles, themes, filters, keys. No control
    /// characters, no bidirectional overrides or isolates.
    Line,
    /// Prose (summaries, Markdown): newline, carriage return (normalised
    /// to newline before storing) and tab allowed; other control
    /// characters refused.
    Prose,
}

/// The bidirectional embeddings, overrides and isolates (U+202A–U+202E,
/// U+2066–U+2069): they reorder how the rest of a line is shown, so a
/// name could pass for another. The plain marks (LRM, RLM, ALM), which
/// right-to-left text needs, are allowed.
pub fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` is in XML 1.0's `Char` production: `#x9 | #xA | #xD |
/// [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]` (a Rust `char`
/// is never a surrogate).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether `c` is one of Unicode's 66 noncharacters: U+FDD0–U+FDEF and the
/// last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, …,
/// U+10FFFF). XML 1.0 recommends against them and HTML parsers report them.
pub fn is_noncharacter(c: char) -> bool {
    matches!(c, '\u{FDD0}'..='\u{FDEF}') || (u32::from(c) & 0xFFFE) == 0xFFFE
}

/// Whether `c` is refused in every text: a code point XML 1.0 forbids
/// (which no Atom feed can carry) or a noncharacter.
pub fn is_forbidden(c: char) -> bool {
    !is_xml_char(c) || is_noncharacter(c)
}

/// Whether a text of `kind` may not hold `c`: the one rule validation
/// applies, and what [`for_output`] drops.
pub fn is_refused(c: char, kind: TextKind) -> bool {
    match kind {
        TextKind::Line => c.is_control() || is_bidi_override(c) || is_forbidden(c),
        TextKind::Prose => (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || is_forbidden(c),
    }
}

/// Checks the characters of `value` (not its length); `field` names the
/// input in the error.
pub fn check_text(field: &str, value: &str, kind: TextKind) -> Result<(), DomainError> {
    let Some(c) = value.chars().find(|c| is_refused(*c, kind)) else {
        return Ok(());
    };
    let what = if is_bidi_override(c) {
        "bidirectional override characters".to_owned()
    } else if c == '\0' {
        "NUL characters".to_owned()
    } else if c.is_control() {
        "control characters".to_owned()
    } else {
        format!("Unicode noncharacters (U+{:04X})", u32::from(c))
    };
    Err(DomainError::invalid(
        field,
        format!("must not contain {what}"),
    ))
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

/// Prose line endings made plain: CRLF and a lone CR become LF (what
/// prose is stored with). Borrows when there is no CR.
pub fn normalize_newlines(text: &str) -> Cow<'_, str> {
    if !text.contains('\r') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Text as every writer emits it, whatever is stored: line endings
/// normalised to LF, and every character prose may not hold dropped
/// (forbidden characters, control characters other than tab and LF).
/// What comes out passes [`check_text`] as prose and holds no CR.
/// Borrows when there is nothing to change.
pub fn for_output(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c == '\r' || is_refused(c, TextKind::Prose))
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        normalize_newlines(text)
            .chars()
            .filter(|c| !is_refused(*c, TextKind::Prose))
            .collect(),
    )
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
    fn what_xml_cannot_carry_is_refused_everywhere() {
        for kind in [TextKind::Line, TextKind::Prose] {
            for bad in [
                "a\u{FFFE}b",
                "a\u{FFFF}",
                "\u{1}",
                "\u{1F}x",
                "\u{FDD0}",
                "\u{FDEF}",
                "\u{1FFFE}",
                "\u{10FFFF}",
                "x\u{8FFFF}",
            ] {
                let err = check_text("input.title", bad, kind).expect_err(bad);
                let DomainError::Invalid(e) = err;
                assert_eq!(e.field, "input.title");
            }
            for good in [
                "\u{FFFD}",
                "\u{FDCF}",
                "\u{FDF0}",
                "\u{1F600}",
                "\u{E000}",
                "\u{10FFFD}",
            ] {
                assert!(check_text("f", good, kind).is_ok(), "{good:?}");
            }
        }
        let err = check_text("f", "a\u{FFFF}", TextKind::Line).expect_err("refused");
        assert!(err.to_string().contains("U+FFFF"), "{err}");
    }

    #[test]
    fn the_xml_char_production_exactly() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            '\u{D7FF}',
            '\u{E000}',
            '\u{FFFD}',
            '\u{10000}',
            '\u{10FFFF}',
        ] {
            assert!(is_xml_char(c), "{c:?}");
        }
        for c in [
            '\0', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!is_xml_char(c), "{c:?}");
        }
        let noncharacters = (0..=0x10_FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|c| is_noncharacter(*c))
            .count();
        assert_eq!(noncharacters, 66);
    }

    #[test]
    fn line_endings_become_lf() {
        assert_eq!(normalize_newlines("a\r\nb\rc\n\r\n\r"), "a\nb\nc\n\n\n");
        assert!(matches!(normalize_newlines("a\nb"), Cow::Borrowed(_)));
    }

    #[test]
    fn output_drops_what_prose_refuses() {
        assert_eq!(
            for_output("a\r\nb\rc\u{FFFF}\u{1}\td\u{7F}\u{85}\u{FDD0}e"),
            "a\nb\nc\tde"
        );
        assert!(matches!(for_output("Östersund\n\tok"), Cow::Borrowed(_)));
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
                Ok(()) => prop_assert!(!text.chars().any(|c| c.is_control() || is_bidi_override(c) || is_forbidden(c))),
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
                start_time: None,
                end_time: None,
                time_zone: None,
            };
            if input.validate("input", &Limits::default()).is_ok() {
                let all = [Some(&input.title), input.summary.as_ref(), input.description.as_ref(), input.slug.as_ref(), input.themes.first()];
                prop_assert!(all.iter().flatten().all(|t| !t.contains('\0')));
            }
        }

        /// What writers emit is valid prose with LF line endings, is a
        /// fixed point, and is the input itself when that was already so.
        #[test]
        fn output_is_always_valid_prose(text in any::<String>()) {
            let out = for_output(&text);
            prop_assert!(!out.contains('\r'));
            prop_assert!(check_text("f", &out, TextKind::Prose).is_ok());
            prop_assert!(out.chars().all(|c| !is_forbidden(c)));
            prop_assert_eq!(for_output(&out).into_owned(), out.clone().into_owned());
            if check_text("f", &text, TextKind::Prose).is_ok() {
                prop_assert_eq!(out.into_owned(), normalize_newlines(&text).into_owned());
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
