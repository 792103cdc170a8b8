//! What a feed says about one event, whatever its format, and how it
//! becomes an activity input: the source's defaults fill in what the
//! item does not say.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use cityhub_app::service::ImportItem;
use cityhub_domain::timing::format_local_time;
use cityhub_domain::{
    ActivityFormat, ActivityInput, ActivityKind, DatePrecision, Limits, SkippedItem, SourceDefaults,
};

/// When an event starts or ends, as its feed wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A whole day (`VALUE=DATE`, or a JSON-LD date without time).
    Date(NaiveDate),
    /// A local time in an IANA zone (`TZID=Europe/Paris`, or a JSON-LD
    /// time with a whole-hour offset, in that offset's `Etc/GMT` zone).
    Zoned(DateTime<chrono_tz::Tz>),
    /// A UTC instant (`…Z`).
    Utc(DateTime<Utc>),
    /// A local time with no zone ("floating").
    Floating(NaiveDateTime),
}

impl When {
    /// A timed value's local date-time and zone: zoned times in their
    /// zone, UTC instants in `UTC`, floating times (no zone at all, not
    /// even the calendar's) as UTC; `None` for a whole day.
    #[must_use]
    pub fn local(&self) -> Option<(NaiveDateTime, chrono_tz::Tz)> {
        match self {
            When::Date(_) => None,
            When::Zoned(t) => Some((t.naive_local(), t.timezone())),
            When::Utc(t) => Some((t.naive_utc(), chrono_tz::Tz::UTC)),
            When::Floating(t) => Some((*t, chrono_tz::Tz::UTC)),
        }
    }

    /// The same moment as a local date-time in `zone` (a floating time
    /// is taken as written).
    fn local_in(&self, zone: chrono_tz::Tz) -> Option<NaiveDateTime> {
        match self {
            When::Date(_) => None,
            When::Zoned(t) => Some(t.with_timezone(&zone).naive_local()),
            When::Utc(t) => Some(t.with_timezone(&zone).naive_local()),
            When::Floating(t) => Some(*t),
        }
    }

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
        // A timed start keeps its local time and zone; a timed end is read
        // in the start's zone (minutes: seconds are dropped).
        let start_local = self.start.local();
        let end_local =
            start_local.and_then(|(_, zone)| self.end.and_then(|end| end.local_in(zone)));
        let end_date = match (self.end, end_local) {
            (_, Some(local)) => Some(local.date()),
            (Some(end), None) => {
                let mut day = end.date();
                if self.end_exclusive && day > start_date {
                    day = day.pred_opt().unwrap_or(day);
                }
                Some(day)
            }
            (None, None) => None,
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
                start_time: start_local.map(|(local, _)| format_local_time(local.time())),
                end_time: end_local.map(|local| format_local_time(local.time())),
                time_zone: start_local.map(|(_, zone)| zone.name().to_owned()),
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
    fn timed_events_keep_their_local_times_and_zone() {
        let paris: chrono_tz::Tz = "Europe/Paris".parse().expect("zone");
        let local = |d: NaiveDate, h: u32, m: u32| {
            When::Zoned(
                cityhub_domain::timing::instant(d.and_hms_opt(h, m, 0).expect("time"), paris)
                    .with_timezone(&paris),
            )
        };
        let mut item = Item::new("t1".into(), local(day(2027, 3, 1), 19, 30));
        item.title = Some("Concert".into());
        item.end = Some(local(day(2027, 3, 1), 22, 0));
        let input = item
            .to_import(&SourceDefaults::default(), &Limits::default())
            .expect("import")
            .input;
        assert_eq!(input.start_time.as_deref(), Some("19:30"));
        assert_eq!(input.end_time.as_deref(), Some("22:00"));
        assert_eq!(input.time_zone.as_deref(), Some("Europe/Paris"));
        assert_eq!(input.end_date, None);
        assert_eq!(input.validate("input", &Limits::default()), Ok(()));
        // A UTC time is a time in UTC; an end in another zone is read in
        // the start's.
        let start = When::Utc(
            DateTime::parse_from_rfc3339("2027-03-01T23:30:00Z")
                .expect("utc")
                .with_timezone(&Utc),
        );
        let mut item = Item::new("t2".into(), start);
        item.title = Some("Night".into());
        item.end = Some(local(day(2027, 3, 2), 2, 0));
        let input = item
            .to_import(&SourceDefaults::default(), &Limits::default())
            .expect("import")
            .input;
        assert_eq!(input.time_zone.as_deref(), Some("UTC"));
        assert_eq!(input.start_time.as_deref(), Some("23:30"));
        assert_eq!(input.end_date, Some(day(2027, 3, 2)));
        assert_eq!(input.end_time.as_deref(), Some("01:00"));
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
