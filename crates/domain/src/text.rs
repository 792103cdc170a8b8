//! Text folding for search and ordering: case and accents are folded so
//! that `ostersund` finds Östersund on every storage backend alike.

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

/// Lowercases `text` and strips accents (canonical decomposition, then
/// combining marks dropped). `Östersund` becomes `ostersund`.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfd().filter(|c| !is_combining_mark(*c)) {
        match c {
            'ß' => out.push_str("ss"),
            'æ' | 'Æ' => out.push_str("ae"),
            'ø' | 'Ø' => out.push('o'),
            'ł' | 'Ł' => out.push('l'),
            'đ' | 'Đ' => out.push('d'),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Splits a search query into folded terms: alphanumeric runs only, so no
/// operator of either database's full-text syntax can get through.
pub fn search_terms(query: &str, max_terms: usize) -> Vec<String> {
    fold(query)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .take(max_terms)
        .map(str::to_owned)
        .collect()
}

/// Builds the folded document that full-text search indexes: words only,
/// separated by single spaces.
pub fn search_document<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for part in parts {
        for word in fold(part)
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// The document full-text search indexes for an activity: title, summary,
/// description and themes, folded (what is stored when it is written, and
/// what in-memory matching searches).
pub fn activity_document(
    title: &str,
    summary: Option<&str>,
    description: Option<&str>,
    themes: &[String],
) -> String {
    search_document(
        std::iter::once(title)
            .chain(summary)
            .chain(description)
            .chain(themes.iter().map(String::as_str)),
    )
}

/// Turns free text into a slug candidate: folded, ASCII alphanumerics joined
/// by single hyphens, at most `max_chars` long. May be empty.
pub fn slugify(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for word in fold(text)
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if out.len() + word.len() + 1 > max_chars {
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_accents() {
        assert_eq!(fold("Östersund"), "ostersund");
        assert_eq!(fold("Montréal"), "montreal");
        assert_eq!(fold("Popayán"), "popayan");
        assert_eq!(fold("Kraków"), "krakow");
    }

    #[test]
    fn search_terms_drop_operators() {
        assert_eq!(
            search_terms("\"Creative\" OR tourism* -x", 10),
            vec!["creative", "or", "tourism", "x"]
        );
        assert_eq!(search_terms("a b c", 2), vec!["a", "b"]);
        assert!(search_terms("***", 10).is_empty());
    }

    #[test]
    fn slugify_folds_and_truncates() {
        assert_eq!(
            slugify("Annual Meeting, Östersund 2016!", 100),
            "annual-meeting-ostersund-2016"
        );
        assert_eq!(slugify("abc def ghi", 7), "abc-def");
        assert_eq!(slugify("北京", 50), "");
    }

    #[test]
    fn search_document_joins_words() {
        assert_eq!(
            search_document(["Créative  Tourism", "x-y"]),
            "creative tourism x y"
        );
    }
}
