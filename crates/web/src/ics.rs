//! RFC 5545 content lines, written so that no stored text can change a
//! calendar's structure: every value goes through
//! [`cityhub_domain::chars::for_output`] (a lone CR or CRLF becomes LF,
//! what no format can carry is dropped), then TEXT escaping turns `\`,
//! `;`, `,` and LF into `\\`, `\;`, `\,` and `\n` (RFC 5545 §3.3.11), so a
//! value never holds a raw line break. Lines are folded at 75 octets
//! (§3.1) on character boundaries, never inside a UTF-8 sequence, and
//! where it can be helped not right after whitespace, which some readers
//! trim from the end of a physical line.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use cityhub_domain::chars::for_output;

/// The longest physical line, in octets, without its CRLF.
const LINE_OCTETS: usize = 75;

/// A calendar being written: components and properties in order.
#[derive(Debug, Default)]
pub struct IcsWriter {
    out: String,
}

impl IcsWriter {
    /// An empty calendar text.
    pub fn new() -> Self {
        Self::default()
    }

    /// `BEGIN:{component}`.
    pub fn begin(&mut self, component: &str) {
        self.line("BEGIN", component);
    }

    /// `END:{component}`.
    pub fn end(&mut self, component: &str) {
        self.line("END", component);
    }

    /// A TEXT property: sanitised, escaped, folded. `name` may carry
    /// parameters (`X-FOO;LANGUAGE=en`); it is ours, never user text.
    pub fn text(&mut self, name: &str, value: &str) {
        self.line(name, &escape_text(value));
    }

    /// A TEXT list (`CATEGORIES`): each item escaped, joined with commas.
    pub fn text_list<'a>(&mut self, name: &str, items: impl IntoIterator<Item = &'a str>) {
        let value: Vec<String> = items.into_iter().map(escape_text).collect();
        self.line(name, &value.join(","));
    }

    /// A value that is not TEXT (a URI, a number, an enumerated value): it
    /// has no escaping, so everything that is not a printable character,
    /// line breaks included, is dropped.
    pub fn plain(&mut self, name: &str, value: &str) {
        let value: String = for_output(value)
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        self.line(name, &value);
    }

    /// A UTC DATE-TIME (`20240131T120000Z`).
    pub fn date_time(&mut self, name: &str, at: DateTime<Utc>) {
        self.line(name, &compact(at.naive_utc(), "Z"));
    }

    /// A local DATE-TIME in a zone
    /// (`{name};TZID=Europe/Paris:20240131T193000`); the zone's name is an
    /// IANA name, which needs no quoting.
    pub fn zoned_date_time(&mut self, name: &str, zone: &str, at: NaiveDateTime) {
        self.line(&format!("{name};TZID={zone}"), &compact(at, ""));
    }

    /// A DATE (`{name};VALUE=DATE:20240131`).
    pub fn date(&mut self, name: &str, day: NaiveDate) {
        let value = format!("{:04}{:02}{:02}", day.year(), day.month(), day.day());
        self.line(&format!("{name};VALUE=DATE"), &value);
    }

    /// The calendar's text.
    pub fn finish(self) -> String {
        self.out
    }

    fn line(&mut self, name: &str, value: &str) {
        let mut line = String::with_capacity(name.len() + 1 + value.len());
        let _ = write!(line, "{name}:{value}");
        fold_into(&mut self.out, &line);
    }
}

/// `20240131T193000` and `suffix` (RFC 5545 DATE-TIME; the hub's years
/// have four digits).
fn compact(at: NaiveDateTime, suffix: &str) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}{suffix}",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// RFC 5545 TEXT escaping of a sanitised value.
pub fn escape_text(value: &str) -> String {
    let clean = for_output(value);
    let mut out = String::with_capacity(clean.len() + 8);
    let mut rest: &str = &clean;
    // Every character escaped is one ASCII byte, so the text either side
    // of it stays on character boundaries; the rest is copied in runs.
    while let Some(at) = rest.find(['\\', ';', ',', '\n']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b';' => "\\;",
            b',' => "\\,",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out
}

/// Appends `line` folded into physical lines of at most 75 octets, each
/// ended by CRLF; continuation lines start with one space.
fn fold_into(out: &mut String, line: &str) {
    let mut rest = line;
    let mut room = LINE_OCTETS;
    while rest.len() > room {
        let cut = fold_point(rest, room);
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        // The leading space of a continuation line counts.
        room = LINE_OCTETS - 1;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

/// Where to fold `rest` (longer than `room` octets): the last character
/// boundary within `room`, moved back before trailing whitespace when
/// some non-whitespace character stays on the line. Never 0.
fn fold_point(rest: &str, room: usize) -> usize {
    let mut cut = room;
    while !rest.is_char_boundary(cut) {
        cut -= 1;
    }
    let kept = rest[..cut].trim_end();
    if kept.is_empty() { cut } else { kept.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn physical_lines(text: &str) -> Vec<&str> {
        text.strip_suffix("\r\n")
            .expect("ends with CRLF")
            .split("\r\n")
            .collect()
    }

    #[test]
    fn text_is_escaped_and_line_breaks_never_raw() {
        let mut w = IcsWriter::new();
        w.text("SUMMARY", "a\\b;c,d\ne\r\nf\rg\u{FFFF}\u{1}h");
        assert_eq!(w.finish(), "SUMMARY:a\\\\b\\;c\\,d\\ne\\nf\\ngh\r\n");
        let mut w = IcsWriter::new();
        w.plain("URL", "https://x.example/a\r\nBEGIN:VEVENT");
        assert_eq!(w.finish(), "URL:https://x.example/aBEGIN:VEVENT\r\n");
    }

    #[test]
    fn dates_and_times_are_written_as_rfc_5545_says() {
        let at = NaiveDate::from_ymd_opt(987, 3, 4)
            .and_then(|d| d.and_hms_opt(5, 6, 7))
            .expect("a valid time");
        let mut w = IcsWriter::new();
        w.date_time("DTSTAMP", at.and_utc());
        w.zoned_date_time("DTSTART", "Europe/Paris", at);
        w.date("DTEND", at.date());
        assert_eq!(
            w.finish(),
            "DTSTAMP:09870304T050607Z\r\nDTSTART;TZID=Europe/Paris:09870304T050607\r\n\
             DTEND;VALUE=DATE:09870304\r\n"
        );
        let late = NaiveDate::from_ymd_opt(2026, 12, 31)
            .and_then(|d| d.and_hms_opt(23, 59, 59))
            .expect("a valid time");
        assert_eq!(
            compact(late, "Z"),
            late.format("%Y%m%dT%H%M%SZ").to_string()
        );
    }

    #[test]
    fn folds_at_75_octets_on_character_boundaries() {
        for text in [
            "x".repeat(300),
            "é".repeat(200),
            "老虎".repeat(90),
            "😀a".repeat(70),
            "word ".repeat(80),
            " ".repeat(200),
        ] {
            let mut w = IcsWriter::new();
            w.text("DESCRIPTION", &text);
            let written = w.finish();
            let lines = physical_lines(&written);
            assert!(lines.len() > 1, "{text}");
            for (i, line) in lines.iter().enumerate() {
                assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
                if i > 0 {
                    assert!(line.starts_with(' '), "{line:?}");
                }
            }
            let unfolded = written.replace("\r\n ", "");
            assert_eq!(unfolded, format!("DESCRIPTION:{text}\r\n"));
        }
    }

    #[test]
    fn folds_are_not_after_whitespace_when_avoidable() {
        let mut w = IcsWriter::new();
        w.text("SUMMARY", &"ab ".repeat(60));
        let written = w.finish();
        let lines = physical_lines(&written);
        for line in &lines[..lines.len() - 1] {
            assert!(!line.ends_with(' '), "{line:?}");
        }
    }
}
