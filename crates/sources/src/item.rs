//! What a feed says about one event, whatever its format, and how it
//! becomes an activity input: the source's defaults fill in what the
//! item does not say.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use cityhub_domain::{
    ActivityFormat, ActivityInput, ActivityKind, DatePrecision, Limits, SkippedItem, SourceDefaults,
};
use cityhub_storage::service::ImportItem;

/// When an event starts or ends, as its feed wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A whole day (`VALUE=DATE`, or a JSON-LD date without time).
    Date(NaiveDate),
    /// A local time in an IANA zone (`TZID=Europe/Paris`, or a JSON-LD
    /// time with an offset, kept as UTC).
    Zoned(DateTime<chrono_tz::Tz>),
    /// A UTC instant (`…Z`).
    Utc(DateTime<Utc>),
    /// A local time with no zone ("floating").
    Floating(NaiveDateTime),
}

impl When {
    /// The calendar day it falls on, where it happens.
    #[must_use]
    pub fn date(&self) -> NaiveDate {
        match self {
            When::Date(d) => *d,
            When::Zoned(t) => t.date_naive(),
            When::Utc(t) => t.date_naive(),
            When::Floating(t) => t.date(),
        }
    }
}

/// One event read from a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its identity in the feed (`UID`[`#RECURRENCE-ID`], `@id`, `url`).
    pub key: String,
    /// Its title.
    pub title: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// When it starts.
    pub start: When,
    /// When it ends (for an all-day event, the day after, as iCalendar says).
    pub end: Option<When>,
    /// `true` when `end` is exclusive (iCalendar all-day `DTEND`).
    pub end_exclusive: bool,
    /// Where.
    pub location: Option<String>,
    /// Its own page.
    pub url: Option<String>,
    /// Categories, as themes.
    pub categories: Vec<String>,
    /// Cancelled at its source.
    pub cancelled: bool,
    /// Online, in person or both, when the item says.
    pub format: Option<ActivityFormat>,
    /// Kind, when the item's type says.
    pub kind: Option<ActivityKind>,
    /// Organizer names.
    pub organizers: Vec<String>,
}

impl Item {
    /// A bare item: a key, a title and a start.
    #[must_use]
    pub fn new(key: String, start: When) -> Self {
        Self {
            key,
            title: None,
            description: None,
            start,
            end: None,
            end_exclusive: false,
            location: None,
            url: None,
            categories: Vec::new(),
            cancelled: false,
            format: None,
            kind: None,
            organizers: Vec::new(),
        }
    }

    /// The activity input it describes, with `defaults` for what it does
    /// not say; or why it cannot be one. Validation proper happens in the
    /// write service, as for mutations.
    pub fn to_import(
        &self,
        defaults: &SourceDefaults,
        limits: &Limits,
    ) -> Result<ImportItem, SkippedItem> {
        let skip = |reason: &str| SkippedItem {
            uid: self.key.clone(),
            reason: reason.to_owned(),
        };
        let title = clean(self.title.as_deref())
            .ok_or_else(|| skip("it has no title (SUMMARY or name)"))?;
        let start_date = self.start.date();
        let end_date = match self.end {
            Some(end) => {
                let mut day = end.date();
                if self.end_exclusive && day > start_date {
                    day = day.pred_opt().unwrap_or(day);
                }
                Some(day)
            }
            None => None,
        };
        if end_date.is_some_and(|end| end < start_date) {
            return Err(skip("it ends before it starts"));
        }
        let mut themes: Vec<String> = Vec::new();
        for theme in self
            .categories
            .iter()
            .filter_map(|c| clean(Some(c)))
            .chain(defaults.themes.iter().cloned())
        {
            if !themes.contains(&theme) && themes.len() < limits.list_items {
                themes.push(theme);
            }
        }
        let url = self
            .url
            .as_deref()
            .and_then(|u| clean(Some(u)))
            .filter(|u| cityhub_domain::activity::check_url("url", u, limits).is_ok());
        Ok(ImportItem {
            key: self.key.clone(),
            input: ActivityInput {
                kind: self.kind.or(defaults.kind).unwrap_or(ActivityKind::Other),
                title,
                summary: None,
                description: clean(self.description.as_deref()),
                format: self
                    .format
                    .or(defaults.format)
                    .unwrap_or(ActivityFormat::InPerson),
                start_date: Some(start_date),
                end_date: end_date.filter(|end| *end != start_date),
                date_precision: DatePrecision::Day,
                venue: clean(self.location.as_deref()),
                venue_city: None,
                co_hosts: Vec::new(),
                organizations: self
                    .organizers
                    .iter()
                    .filter_map(|o| clean(Some(o)))
                    .take(limits.list_items)
                    .collect(),
                fields: defaults.fields.clone(),
                themes,
                objectives: Vec::new(),
                documents: Vec::new(),
                slug: None,
            },
            cancelled: self.cancelled,
            url,
        })
    }
}

/// Trimmed text, `None` when empty.
fn clean(text: Option<&str>) -> Option<String> {
    let text = text?.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn an_all_day_end_is_exclusive_and_defaults_fill_in() {
        let mut item = Item::new("u1".into(), When::Date(day(2027, 3, 1)));
        item.title = Some("  Festival  ".into());
        item.end = Some(When::Date(day(2027, 3, 4)));
        item.end_exclusive = true;
        item.categories = vec!["music".into(), "music".into()];
        let defaults = SourceDefaults {
            kind: Some(ActivityKind::Festival),
            themes: vec!["jazz".into()],
            ..SourceDefaults::default()
        };
        let import = item
            .to_import(&defaults, &Limits::default())
            .expect("import");
        assert_eq!(import.input.title, "Festival");
        assert_eq!(import.input.start_date, Some(day(2027, 3, 1)));
        assert_eq!(import.input.end_date, Some(day(2027, 3, 3)));
        assert_eq!(import.input.kind, ActivityKind::Festival);
        assert_eq!(
            import.input.themes,
            vec!["music".to_owned(), "jazz".to_owned()]
        );
    }

    #[test]
    fn a_one_day_event_has_no_end_date_and_impossible_ranges_are_skipped() {
        let mut item = Item::new("u2".into(), When::Date(day(2027, 3, 1)));
        item.title = Some("Talk".into());
        item.end = Some(When::Date(day(2027, 3, 2)));
        item.end_exclusive = true;
        let import = item
            .to_import(&SourceDefaults::default(), &Limits::default())
            .expect("import");
        assert_eq!(import.input.end_date, None);
        item.end = Some(When::Date(day(2027, 2, 1)));
        item.end_exclusive = false;
        let skipped = item
            .to_import(&SourceDefaults::default(), &Limits::default())
            .expect_err("skipped");
        assert_eq!(skipped.uid, "u2");
    }
}
