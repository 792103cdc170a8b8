//! The idempotency fingerprint of a publish: what `publishActivity` with an
//! `idempotencyKey` compares to decide "same request, same answer" or
//! `CONFLICT`.
//!
//! Version 2 (current) is `v2:` followed by the hex SHA-256 of the JSON of
//! [`CanonicalPublish`]: fields in a fixed order under fixed names, enums by
//! their API names, dates as ISO 8601. Renaming a Rust field cannot change
//! it; adding a field to `ActivityInput` fails to compile here until someone
//! decides how it enters the fingerprint (a new version).
//!
//! Old records: version 1 had no prefix and hashed `{input:?}|{draft}`
//! (`Debug` output). A stored fingerprint without a prefix is compared the
//! version-1 way, so a retry made across the deploy that introduced v2 is
//! still recognised (not a wrong `CONFLICT`). New records are always v2.
//! Drop [`legacy_v1`] once no idempotency record predates v2.

use cityhub_domain::{ActivityInput, DocumentInput, PublishAs};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The prefix of the current fingerprint version.
const V2: &str = "v2:";

/// A publish as the fingerprint sees it (version 2). Field names and order
/// are part of the stored format: change them only with a new version.
#[derive(Serialize)]
struct CanonicalPublish<'a> {
    draft: bool,
    kind: &'static str,
    title: &'a str,
    summary: Option<&'a str>,
    description: Option<&'a str>,
    format: &'static str,
    start_date: Option<String>,
    end_date: Option<String>,
    date_precision: &'static str,
    venue: Option<&'a str>,
    venue_city: Option<&'a str>,
    co_hosts: &'a [String],
    organizations: &'a [String],
    fields: Vec<&'static str>,
    themes: &'a [String],
    objectives: &'a [String],
    documents: Vec<CanonicalDocument<'a>>,
    slug: Option<&'a str>,
    // The times came after version 2 was pinned: absent, they are left
    // out, so an input without times keeps the fingerprint it always had.
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_zone: Option<&'a str>,
}

/// A document as the fingerprint sees it (version 2).
#[derive(Serialize)]
struct CanonicalDocument<'a> {
    kind: &'static str,
    title: &'a str,
    url: Option<&'a str>,
    issued_on: Option<String>,
    issued_precision: &'static str,
    editors: &'a [String],
}

fn canonical(input: &ActivityInput, mode: PublishAs) -> CanonicalPublish<'_> {
    // Destructured without `..`: a new input field must be placed here.
    let ActivityInput {
        kind,
        title,
        summary,
        description,
        format,
        start_date,
        end_date,
        date_precision,
        venue,
        venue_city,
        co_hosts,
        organizations,
        fields,
        themes,
        objectives,
        documents,
        slug,
        start_time,
        end_time,
        time_zone,
    } = input;
    CanonicalPublish {
        draft: mode == PublishAs::Draft,
        kind: kind.as_str(),
        title,
        summary: summary.as_deref(),
        description: description.as_deref(),
        format: format.as_str(),
        start_date: start_date.map(|d| d.to_string()),
        end_date: end_date.map(|d| d.to_string()),
        date_precision: date_precision.as_str(),
        venue: venue.as_deref(),
        venue_city: venue_city.as_deref(),
        co_hosts,
        organizations,
        fields: fields.iter().map(|f| f.as_str()).collect(),
        themes,
        objectives,
        documents: documents.iter().map(canonical_document).collect(),
        slug: slug.as_deref(),
        start_time: start_time.as_deref(),
        end_time: end_time.as_deref(),
        time_zone: time_zone.as_deref(),
    }
}

fn canonical_document(document: &DocumentInput) -> CanonicalDocument<'_> {
    let DocumentInput {
        kind,
        title,
        url,
        issued_on,
        issued_precision,
        editors,
    } = document;
    CanonicalDocument {
        kind: kind.as_str(),
        title,
        url: url.as_deref(),
        issued_on: issued_on.map(|d| d.to_string()),
        issued_precision: issued_precision.as_str(),
        editors,
    }
}

/// The fingerprint stored with a new idempotency record (current version).
pub fn fingerprint(input: &ActivityInput, mode: PublishAs) -> String {
    // Serializing borrowed strings, bools and vectors cannot fail.
    let json = serde_json::to_vec(&canonical(input, mode)).unwrap_or_default();
    format!("{V2}{}", hex::encode(Sha256::digest(&json)))
}

/// The version-1 fingerprint (`Debug` output), kept only to recognise
/// records written before version 2.
/// Version 1 predates the times: an input without them is hashed with
/// the `Debug` output it had then (without the three time fields); one
/// with times cannot match a version-1 record.
fn legacy_v1(input: &ActivityInput, mode: PublishAs) -> Option<String> {
    if input.start_time.is_some() || input.end_time.is_some() || input.time_zone.is_some() {
        return None;
    }
    let draft = mode == PublishAs::Draft;
    let debug = format!("{input:?}").replacen(LATER_DEBUG_FIELDS, " }", 1);
    Some(hex::encode(Sha256::digest(
        format!("{debug}|{draft}").as_bytes(),
    )))
}

/// The end of an input's `Debug` output since the times were added.
const LATER_DEBUG_FIELDS: &str = ", start_time: None, end_time: None, time_zone: None }";

/// Whether a stored fingerprint (of any version) was made from this input.
pub fn matches(stored: &str, input: &ActivityInput, mode: PublishAs) -> bool {
    if stored.starts_with(V2) {
        stored == fingerprint(input, mode)
    } else {
        legacy_v1(input, mode).is_some_and(|old| stored == old)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use cityhub_domain::{
        ActivityFormat, ActivityKind, CreativeField, DatePrecision, DocumentKind,
    };

    use super::*;

    fn input() -> ActivityInput {
        ActivityInput {
            kind: ActivityKind::Festival,
            title: "Fête des Lumières".into(),
            summary: Some("Light art".into()),
            description: None,
            format: ActivityFormat::InPerson,
            start_date: NaiveDate::from_ymd_opt(2026, 12, 8),
            end_date: NaiveDate::from_ymd_opt(2026, 12, 11),
            date_precision: DatePrecision::Day,
            venue: Some("Place Bellecour".into()),
            venue_city: Some("lyon".into()),
            co_hosts: vec!["enghien-les-bains".into()],
            organizations: vec!["UNESCO".into()],
            fields: vec![CreativeField::MediaArts],
            themes: vec!["light".into()],
            objectives: vec![],
            documents: vec![DocumentInput {
                kind: DocumentKind::Communique,
                title: "Press kit".into(),
                url: Some("https://example.org/kit.pdf".into()),
                issued_on: NaiveDate::from_ymd_opt(2026, 11, 1),
                issued_precision: DatePrecision::Month,
                editors: vec![],
            }],
            slug: None,
            start_time: None,
            end_time: None,
            time_zone: None,
        }
    }

    /// The stored format: if this value changes, records written before the
    /// change stop matching (a retry would get `CONFLICT`). Change it only
    /// together with a new version prefix.
    #[test]
    fn pins_the_version_2_value() {
        // Computed independently: SHA-256 of the compact JSON (Python's
        // `json.dumps(separators=(",", ":"), ensure_ascii=False)`).
        assert_eq!(
            fingerprint(&input(), PublishAs::Published),
            "v2:dc4a66222839d16cd4bafad2602444533b903ccd496062476c0bb54cba64b781"
        );
    }

    #[test]
    fn times_enter_the_fingerprint_only_when_given() {
        let mut timed = input();
        timed.start_time = Some("19:00".into());
        timed.time_zone = Some("Europe/Paris".into());
        assert_ne!(
            fingerprint(&timed, PublishAs::Published),
            fingerprint(&input(), PublishAs::Published)
        );
        let mut later = timed.clone();
        later.start_time = Some("20:00".into());
        assert_ne!(
            fingerprint(&timed, PublishAs::Published),
            fingerprint(&later, PublishAs::Published)
        );
        assert!(legacy_v1(&timed, PublishAs::Published).is_none());
    }

    #[test]
    fn differs_by_input_and_draft_and_matches_itself() {
        let a = input();
        let mut b = input();
        b.title.push('!');
        assert_ne!(
            fingerprint(&a, PublishAs::Published),
            fingerprint(&b, PublishAs::Published)
        );
        assert_ne!(
            fingerprint(&a, PublishAs::Published),
            fingerprint(&a, PublishAs::Draft)
        );
        assert!(matches(
            &fingerprint(&a, PublishAs::Published),
            &a,
            PublishAs::Published
        ));
        assert!(!matches(
            &fingerprint(&a, PublishAs::Published),
            &b,
            PublishAs::Published
        ));
    }

    #[test]
    fn recognises_version_1_records() {
        let a = input();
        let old = legacy_v1(&a, PublishAs::Draft).expect("no times");
        assert_eq!(old.len(), 64);
        // The `Debug` output version 1 hashed ended with the slug.
        assert!(format!("{a:?}").ends_with(LATER_DEBUG_FIELDS));
        assert!(matches(&old, &a, PublishAs::Draft));
        assert!(!matches(&old, &a, PublishAs::Published));
    }
}
