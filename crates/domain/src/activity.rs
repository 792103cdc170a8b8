//! Activities as cities submit them: the input, the patch, and the rules
//! both must satisfy before anything is stored.

use chrono::{Datelike, NaiveDate};

use crate::chars::{TextKind, check_text, normalize_newlines};
use crate::enums::{ActivityFormat, ActivityKind, CreativeField, DatePrecision, DocumentKind};
use crate::error::DomainError;
use crate::limits::Limits;
use crate::slug::Slug;
use crate::timing::{Timing, parse_local_time, parse_zone};

/// How a new activity is published: visible to the network, or as a
/// draft only its publisher (and the secretariat) sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishAs {
    /// Published: everyone sees it.
    Published,
    /// A draft, published later with `publishDraft`.
    Draft,
}

impl PublishAs {
    /// `Draft` when `draft` is true (the API's `draft: Boolean` argument).
    #[must_use]
    pub fn from_draft_flag(draft: bool) -> Self {
        if draft { Self::Draft } else { Self::Published }
    }

    /// The status the activity is stored with.
    #[must_use]
    pub fn status(self) -> crate::ActivityStatus {
        match self {
            Self::Published => crate::ActivityStatus::Published,
            Self::Draft => crate::ActivityStatus::Draft,
        }
    }
}

/// A city joining an activity as a participant, or leaving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Participation {
    /// `joinActivity`.
    Join,
    /// `leaveActivity`.
    Leave,
}

impl Participation {
    /// The policy action it needs.
    #[must_use]
    pub fn action(self) -> crate::Action {
        match self {
            Self::Join => crate::Action::Join,
            Self::Leave => crate::Action::Leave,
        }
    }

    /// The mutation's name, as audited.
    #[must_use]
    pub fn mutation(self) -> &'static str {
        match self {
            Self::Join => "joinActivity",
            Self::Leave => "leaveActivity",
        }
    }
}

/// A document attached to an activity (communiqué, publication, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentInput {
    /// What the document is.
    pub kind: DocumentKind,
    /// Its title.
    pub title: String,
    /// Where to read it, an absolute http(s) URL.
    pub url: Option<String>,
    /// When it was issued.
    pub issued_on: Option<NaiveDate>,
    /// How exact `issued_on` is.
    pub issued_precision: DatePrecision,
    /// Its editors, for publications.
    pub editors: Vec<String>,
}

/// Everything a city says about an activity when publishing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityInput {
    /// What kind of activity.
    pub kind: ActivityKind,
    /// Its title.
    pub title: String,
    /// One-paragraph summary.
    pub summary: Option<String>,
    /// Markdown description.
    pub description: Option<String>,
    /// In person, online or both.
    pub format: ActivityFormat,
    /// First day (see `date_precision`).
    pub start_date: Option<NaiveDate>,
    /// Last day, not before `start_date`.
    pub end_date: Option<NaiveDate>,
    /// How exact `start_date` is.
    pub date_precision: DatePrecision,
    /// Where it happens, as free text.
    pub venue: Option<String>,
    /// Slug of the member city where it happens.
    pub venue_city: Option<String>,
    /// Slugs of member cities hosting it beside the publisher.
    pub co_hosts: Vec<String>,
    /// Organizers that are not member cities (e.g. UNESCO).
    pub organizations: Vec<String>,
    /// Creative fields it concerns.
    pub fields: Vec<CreativeField>,
    /// Themes, short phrases.
    pub themes: Vec<String>,
    /// Stated objectives.
    pub objectives: Vec<String>,
    /// Attached documents.
    pub documents: Vec<DocumentInput>,
    /// Requested slug; derived from the title when absent.
    pub slug: Option<String>,
    /// Local start time, `HH:MM`, on `start_date` (which needs precision
    /// `DAY`); `None` for a date-only activity.
    pub start_time: Option<String>,
    /// Local end time, `HH:MM`, on `end_date` (or `start_date`).
    pub end_time: Option<String>,
    /// IANA time zone of the times (`Europe/Paris`); required with them.
    pub time_zone: Option<String>,
}

/// A partial change to an activity: `None` leaves a field as it is;
/// `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]

pub struct ActivityPatch {
    /// New kind.
    pub kind: Option<ActivityKind>,
    /// New title.
    pub title: Option<String>,
    /// New summary, or cleared.
    pub summary: Option<Option<String>>,
    /// New description, or cleared.
    pub description: Option<Option<String>>,
    /// New format.
    pub format: Option<ActivityFormat>,
    /// New start date, or cleared.
    pub start_date: Option<Option<NaiveDate>>,
    /// New end date, or cleared.
    pub end_date: Option<Option<NaiveDate>>,
    /// New precision.
    pub date_precision: Option<DatePrecision>,
    /// New venue, or cleared.
    pub venue: Option<Option<String>>,
    /// New venue city, or cleared.
    pub venue_city: Option<Option<String>>,
    /// New co-hosts (replaces the list).
    pub co_hosts: Option<Vec<String>>,
    /// New organizations (replaces the list).
    pub organizations: Option<Vec<String>>,
    /// New fields (replaces the list).
    pub fields: Option<Vec<CreativeField>>,
    /// New themes (replaces the list).
    pub themes: Option<Vec<String>>,
    /// New objectives (replaces the list).
    pub objectives: Option<Vec<String>>,
    /// New documents (replaces the list).
    pub documents: Option<Vec<DocumentInput>>,
    /// New slug.
    pub slug: Option<String>,
    /// New start time, or cleared.
    pub start_time: Option<Option<String>>,
    /// New end time, or cleared.
    pub end_time: Option<Option<String>>,
    /// New time zone, or cleared.
    pub time_zone: Option<Option<String>>,
}

/// Makes a prose value's line endings LF (CRLF and a lone CR included).
fn normalize_prose(text: &mut Option<String>) {
    if let Some(value) = text
        && let std::borrow::Cow::Owned(normalized) = normalize_newlines(value)
    {
        *value = normalized;
    }
}

impl ActivityPatch {
    /// The patch with the line endings of its prose (summary, description)
    /// normalised to LF, as they are stored.
    #[must_use]
    pub fn normalized(mut self) -> Self {
        for value in [&mut self.summary, &mut self.description]
            .into_iter()
            .flatten()
        {
            normalize_prose(value);
        }
        self
    }

    /// True when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the patch onto `current`, giving the activity as it would be.
    pub fn apply(self, mut current: ActivityInput) -> ActivityInput {
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { current.$f = v; })* };
        }
        set!(
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
            start_time,
            end_time,
            time_zone
        );
        if let Some(slug) = self.slug {
            current.slug = Some(slug);
        }
        current
    }
}

fn check_chars(field: &str, value: &str, max: usize, kind: TextKind) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be blank"));
    }
    if value.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    check_text(field, value, kind)
}

fn check_list(
    field: &str,
    items: &[String],
    max_items: usize,
    max_chars: usize,
) -> Result<(), DomainError> {
    if items.len() > max_items {
        return Err(DomainError::invalid(
            field,
            format!("must have at most {max_items} items"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        check_chars(&format!("{field}[{i}]"), item, max_chars, TextKind::Line)?;
    }
    Ok(())
}

/// Checks that a date's year is within the configured range.
pub fn check_year(field: &str, date: NaiveDate, limits: &Limits) -> Result<(), DomainError> {
    if date.year() < limits.min_year || date.year() > limits.max_year {
        return Err(DomainError::invalid(
            field,
            format!(
                "year must be between {} and {}",
                limits.min_year, limits.max_year
            ),
        ));
    }
    Ok(())
}

fn check_precision(
    field: &str,
    date: NaiveDate,
    precision: DatePrecision,
) -> Result<(), DomainError> {
    match precision {
        DatePrecision::Day => Ok(()),
        DatePrecision::Month if date.day() == 1 => Ok(()),
        DatePrecision::Year if date.day() == 1 && date.month() == 1 => Ok(()),
        DatePrecision::Month => Err(DomainError::invalid(
            field,
            "with precision MONTH the date must be the 1st of the month",
        )),
        DatePrecision::Year => Err(DomainError::invalid(
            field,
            "with precision YEAR the date must be January 1st of the year",
        )),
    }
}

/// Checks that `url` is an absolute http or https URL within limits.
pub fn check_url(field: &str, url: &str, limits: &Limits) -> Result<(), DomainError> {
    if url.chars().count() > limits.url_chars {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {} characters", limits.url_chars),
        ));
    }
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            Ok(())
        }
        Ok(_) => Err(DomainError::invalid(field, "must be an http or https URL")),
        Err(e) => Err(DomainError::invalid(
            field,
            format!("is not a valid URL: {e}"),
        )),
    }
}

impl DocumentInput {
    /// Validates the document; `path` is its input path (`input.documents[2]`).
    pub fn validate(&self, path: &str, limits: &Limits) -> Result<(), DomainError> {
        check_chars(
            &format!("{path}.title"),
            &self.title,
            limits.title_chars,
            TextKind::Line,
        )?;
        if let Some(url) = &self.url {
            check_url(&format!("{path}.url"), url, limits)?;
        }
        if let Some(date) = self.issued_on {
            check_year(&format!("{path}.issuedOn"), date, limits)?;
            check_precision(&format!("{path}.issuedOn"), date, self.issued_precision)?;
        }
        check_list(
            &format!("{path}.editors"),
            &self.editors,
            limits.list_items,
            limits.text_chars,
        )
    }
}

impl ActivityInput {
    /// The input with the line endings of its prose (summary, description)
    /// normalised to LF, as they are stored.
    #[must_use]
    pub fn normalized(mut self) -> Self {
        normalize_prose(&mut self.summary);
        normalize_prose(&mut self.description);
        self
    }

    /// Validates every rule; `path` is the input's argument name (`input`
    /// or `patch`), so errors name e.g. `input.endDate`.
    pub fn validate(&self, path: &str, limits: &Limits) -> Result<(), DomainError> {
        check_chars(
            &format!("{path}.title"),
            &self.title,
            limits.title_chars,
            TextKind::Line,
        )?;
        if let Some(summary) = &self.summary {
            check_chars(
                &format!("{path}.summary"),
                summary,
                limits.summary_chars,
                TextKind::Prose,
            )?;
        }
        if let Some(description) = &self.description {
            if description.len() > limits.description_bytes {
                return Err(DomainError::invalid(
                    format!("{path}.description"),
                    format!("must be at most {} bytes", limits.description_bytes),
                ));
            }
            check_text(&format!("{path}.description"), description, TextKind::Prose)?;
        }
        if let Some(start) = self.start_date {
            check_year(&format!("{path}.startDate"), start, limits)?;
            check_precision(&format!("{path}.startDate"), start, self.date_precision)?;
        }
        if let Some(end) = self.end_date {
            check_year(&format!("{path}.endDate"), end, limits)?;
            match self.start_date {
                None => {
                    return Err(DomainError::invalid(
                        format!("{path}.endDate"),
                        "needs a startDate",
                    ));
                }
                Some(start) if end < start => {
                    return Err(DomainError::invalid(
                        format!("{path}.endDate"),
                        "must not be before startDate",
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(venue) = &self.venue {
            check_chars(
                &format!("{path}.venue"),
                venue,
                limits.text_chars,
                TextKind::Line,
            )?;
        }
        if let Some(city) = &self.venue_city {
            Slug::parse(city, limits.slug_chars, &format!("{path}.venueCity"))?;
        }
        if self.co_hosts.len() > limits.list_items {
            return Err(DomainError::invalid(
                format!("{path}.coHosts"),
                format!("must have at most {} items", limits.list_items),
            ));
        }
        for (i, host) in self.co_hosts.iter().enumerate() {
            Slug::parse(host, limits.slug_chars, &format!("{path}.coHosts[{i}]"))?;
        }
        check_list(
            &format!("{path}.organizations"),
            &self.organizations,
            limits.list_items,
            limits.text_chars,
        )?;
        check_list(
            &format!("{path}.themes"),
            &self.themes,
            limits.list_items,
            limits.theme_chars,
        )?;
        check_list(
            &format!("{path}.objectives"),
            &self.objectives,
            limits.list_items,
            limits.text_chars,
        )?;
        for (i, field) in self.fields.iter().enumerate() {
            if self.fields[..i].contains(field) {
                return Err(DomainError::invalid(
                    format!("{path}.fields[{i}]"),
                    "lists a field more than once",
                ));
            }
        }
        if self.documents.len() > limits.documents {
            return Err(DomainError::invalid(
                format!("{path}.documents"),
                format!("must have at most {} items", limits.documents),
            ));
        }
        for (i, doc) in self.documents.iter().enumerate() {
            doc.validate(&format!("{path}.documents[{i}]"), limits)?;
        }
        if let Some(slug) = &self.slug {
            Slug::parse(slug, limits.slug_chars, &format!("{path}.slug"))?;
        }
        self.resolve_timing(path)?;
        Ok(())
    }

    /// The timing of a validated input: `None` for a date-only activity
    /// (or an input that [`ActivityInput::validate`] refuses).
    #[must_use]
    pub fn timing(&self) -> Option<Timing> {
        self.resolve_timing("input").ok().flatten()
    }

    /// The rules of timed activities (see `timing.rs`): times only on a
    /// day (`DAY` precision), a zone with them and only with them, valid
    /// `HH:MM` times and IANA zone, and no end before the start.
    fn resolve_timing(&self, path: &str) -> Result<Option<Timing>, DomainError> {
        let start_field = format!("{path}.startTime");
        let end_field = format!("{path}.endTime");
        let zone_field = format!("{path}.timeZone");
        let start_time = self
            .start_time
            .as_deref()
            .map(|t| parse_local_time(&start_field, t))
            .transpose()?;
        let end_time = self
            .end_time
            .as_deref()
            .map(|t| parse_local_time(&end_field, t))
            .transpose()?;
        let zone = self
            .time_zone
            .as_deref()
            .map(|z| parse_zone(&zone_field, z))
            .transpose()?;
        let Some(start_time) = start_time else {
            if end_time.is_some() {
                return Err(DomainError::invalid(end_field, "needs a startTime"));
            }
            if zone.is_some() {
                return Err(DomainError::invalid(
                    zone_field,
                    "is only given with a startTime",
                ));
            }
            return Ok(None);
        };
        let Some(start_date) = self.start_date else {
            return Err(DomainError::invalid(start_field, "needs a startDate"));
        };
        if self.date_precision != DatePrecision::Day {
            return Err(DomainError::invalid(
                start_field,
                "needs a startDate with precision DAY",
            ));
        }
        let Some(zone) = zone else {
            return Err(DomainError::invalid(
                zone_field,
                "is required with startTime (an IANA time zone, e.g. Europe/Paris)",
            ));
        };
        let timing = Timing::new(start_date, self.end_date, start_time, end_time, zone);
        if let Some(ends_at) = timing.ends_at
            && ends_at < timing.starts_at
        {
            return Err(DomainError::invalid(
                end_field,
                "must not be before the start",
            ));
        }
        Ok(Some(timing))
    }

    /// The text that full-text search indexes: title, summary, description
    /// and themes, folded.
    pub fn search_document(&self) -> String {
        crate::text::activity_document(
            &self.title,
            self.summary.as_deref(),
            self.description.as_deref(),
            &self.themes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ActivityInput {
        ActivityInput {
            kind: ActivityKind::Workshop,
            title: "Design workshop".into(),
            summary: None,
            description: None,
            format: ActivityFormat::InPerson,
            start_date: NaiveDate::from_ymd_opt(2026, 5, 1),
            end_date: NaiveDate::from_ymd_opt(2026, 5, 3),
            date_precision: DatePrecision::Day,
            venue: None,
            venue_city: None,
            co_hosts: vec![],
            organizations: vec![],
            fields: vec![CreativeField::Design],
            themes: vec!["urban design".into()],
            objectives: vec![],
            documents: vec![],
            slug: None,
            start_time: None,
            end_time: None,
            time_zone: None,
        }
    }

    fn field_of(input: &ActivityInput) -> String {
        match input.validate("input", &Limits::default()) {
            Err(DomainError::Invalid(e)) => e.field,
            Ok(()) => "ok".into(),
        }
    }

    #[test]
    fn valid_sample_passes() {
        assert_eq!(field_of(&sample()), "ok");
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut a = sample();
        a.title = " ".into();
        assert_eq!(field_of(&a), "input.title");
        let mut a = sample();
        a.title = "x".repeat(201);
        assert_eq!(field_of(&a), "input.title");
        let mut a = sample();
        a.end_date = NaiveDate::from_ymd_opt(2026, 4, 30);
        assert_eq!(field_of(&a), "input.endDate");
        let mut a = sample();
        a.start_date = NaiveDate::from_ymd_opt(1800, 1, 1);
        a.end_date = None;
        assert_eq!(field_of(&a), "input.startDate");
        let mut a = sample();
        a.date_precision = DatePrecision::Year;
        assert_eq!(field_of(&a), "input.startDate");
        let mut a = sample();
        a.themes = vec!["ok".into(), "t".repeat(81)];
        assert_eq!(field_of(&a), "input.themes[1]");
        let mut a = sample();
        a.themes = vec!["t".into(); 21];
        assert_eq!(field_of(&a), "input.themes");
        let mut a = sample();
        a.co_hosts = vec!["Bad Slug".into()];
        assert_eq!(field_of(&a), "input.coHosts[0]");
        let mut a = sample();
        a.description = Some("d".repeat(20_001));
        assert_eq!(field_of(&a), "input.description");
        let mut a = sample();
        let doc = DocumentInput {
            kind: DocumentKind::Report,
            title: "Report".into(),
            url: Some("https://example.org/r.pdf".into()),
            issued_on: None,
            issued_precision: DatePrecision::Day,
            editors: vec![],
        };
        a.documents = vec![
            doc.clone(),
            doc.clone(),
            DocumentInput {
                url: Some("ftp://x".into()),
                ..doc.clone()
            },
        ];
        assert_eq!(field_of(&a), "input.documents[2].url");
        a.documents[2].url = Some("not a url".into());
        assert_eq!(field_of(&a), "input.documents[2].url");
        let mut a = sample();
        a.slug = Some("Nope!".into());
        assert_eq!(field_of(&a), "input.slug");
    }

    #[test]
    fn text_no_output_format_can_carry_names_its_field() {
        for bad in ["a\u{FFFE}", "a\u{FFFF}", "a\u{1}"] {
            let mut a = sample();
            a.title = format!("Title {bad}");
            assert_eq!(field_of(&a), "input.title");
            let mut a = sample();
            a.summary = Some(format!("Summary {bad}"));
            assert_eq!(field_of(&a), "input.summary");
            let mut a = sample();
            a.description = Some(format!("Description {bad}"));
            assert_eq!(field_of(&a), "input.description");
            let mut a = sample();
            a.venue = Some(format!("Venue {bad}"));
            assert_eq!(field_of(&a), "input.venue");
            let mut a = sample();
            a.organizations = vec!["UNESCO".into(), format!("Org {bad}")];
            assert_eq!(field_of(&a), "input.organizations[1]");
            let mut a = sample();
            a.themes = vec![format!("theme {bad}")];
            assert_eq!(field_of(&a), "input.themes[0]");
            let mut a = sample();
            a.documents = vec![DocumentInput {
                kind: DocumentKind::Report,
                title: format!("Report {bad}"),
                url: None,
                issued_on: None,
                issued_precision: DatePrecision::Day,
                editors: vec![],
            }];
            assert_eq!(field_of(&a), "input.documents[0].title");
        }
    }

    #[test]
    fn prose_line_endings_are_normalised() {
        let mut a = sample();
        a.summary = Some("one\r\ntwo\rthree\n".into());
        a.description = Some("# A\r\rB".into());
        a.title = "Title".into();
        let a = a.normalized();
        assert_eq!(a.summary.as_deref(), Some("one\ntwo\nthree\n"));
        assert_eq!(a.description.as_deref(), Some("# A\n\nB"));
        assert_eq!(field_of(&a), "ok");
        let patch = ActivityPatch {
            summary: Some(Some("a\rb".into())),
            description: Some(None),
            ..ActivityPatch::default()
        }
        .normalized();
        assert_eq!(patch.summary, Some(Some("a\nb".into())));
        assert_eq!(patch.description, Some(None));
    }

    fn timed(start: &str, end: Option<&str>, zone: Option<&str>) -> ActivityInput {
        ActivityInput {
            start_time: Some(start.into()),
            end_time: end.map(Into::into),
            time_zone: zone.map(Into::into),
            ..sample()
        }
    }

    #[test]
    fn timed_activities_follow_their_rules() {
        let ok = timed("19:30", Some("22:00"), Some("Europe/Paris"));
        assert_eq!(field_of(&ok), "ok");
        let timing = ok.timing().expect("timed");
        // 2026-05-01 19:30 CEST and 2026-05-03 22:00 CEST (the end date).
        assert_eq!(timing.starts_at.to_rfc3339(), "2026-05-01T17:30:00+00:00");
        assert_eq!(
            timing.ends_at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-05-03T20:00:00+00:00")
        );
        assert_eq!(sample().timing(), None);
        assert_eq!(
            field_of(&timed("25:00", None, Some("Europe/Paris"))),
            "input.startTime"
        );
        assert_eq!(
            field_of(&timed("10:00", Some("7pm"), Some("Europe/Paris"))),
            "input.endTime"
        );
        assert_eq!(
            field_of(&timed("10:00", None, Some("Europe/Pariss"))),
            "input.timeZone"
        );
        assert_eq!(field_of(&timed("10:00", None, None)), "input.timeZone");
        let mut a = timed("10:00", Some("09:00"), Some("Europe/Paris"));
        a.end_date = None;
        assert_eq!(field_of(&a), "input.endTime");
        // Later days may end earlier in the day.
        let a = timed("10:00", Some("09:00"), Some("Europe/Paris"));
        assert_eq!(field_of(&a), "ok");
        let mut a = timed("10:00", None, Some("Europe/Paris"));
        a.start_date = None;
        a.end_date = None;
        assert_eq!(field_of(&a), "input.startTime");
        let mut a = timed("10:00", None, Some("Europe/Paris"));
        a.date_precision = DatePrecision::Month;
        a.start_date = NaiveDate::from_ymd_opt(2026, 5, 1);
        assert_eq!(field_of(&a), "input.startTime");
        let mut a = sample();
        a.end_time = Some("10:00".into());
        assert_eq!(field_of(&a), "input.endTime");
        let mut a = sample();
        a.time_zone = Some("Europe/Paris".into());
        assert_eq!(field_of(&a), "input.timeZone");
    }

    #[test]
    fn patches_set_and_clear_times() {
        let patch = ActivityPatch {
            start_time: Some(Some("08:00".into())),
            time_zone: Some(Some("Asia/Tokyo".into())),
            ..ActivityPatch::default()
        };
        let timed = patch.apply(sample());
        assert_eq!(field_of(&timed), "ok");
        assert_eq!(timed.timing().map(|t| t.zone_name()), Some("Asia/Tokyo"));
        let clear = ActivityPatch {
            start_time: Some(None),
            time_zone: Some(None),
            ..ActivityPatch::default()
        };
        let cleared = clear.apply(timed);
        assert_eq!(cleared, sample());
    }

    #[test]
    fn patch_applies_and_clears() {
        let patch = ActivityPatch {
            title: Some("New".into()),
            end_date: Some(None),
            ..ActivityPatch::default()
        };
        assert!(!patch.is_empty());
        let out = patch.apply(sample());
        assert_eq!(out.title, "New");
        assert_eq!(out.end_date, None);
        assert_eq!(out.start_date, sample().start_date);
        assert!(ActivityPatch::default().is_empty());
    }
}
