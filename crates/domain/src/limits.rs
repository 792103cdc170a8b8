//! Explicit limits on every user-supplied value. All of them are
//! configurable (`[limits]` in `cityhub.toml`); the defaults are generous for
//! real activities and small enough to keep rows and responses bounded.

use serde::{Deserialize, Serialize};

/// The listings' page sizes, named once: the schema's defaults of `first`,
/// the complexity estimates and the document measure all read these.
pub mod page {
    /// `activities(first:)` and `City.activities(first:)` when not given.
    pub const ACTIVITIES: i32 = 20;
    /// `cities(first:)` when not given.
    pub const CITIES: i32 = 50;
    /// The largest `first` a cost estimate counts (a larger one is refused
    /// by `api.max_page_size` before anything runs).
    pub const MOST_COUNTED: i32 = 1000;
    /// The fewest values each list of a listing's filter (`cities`,
    /// `countries`, `themes`) accepts, whatever `Limits::list_items` (the
    /// most an activity holds) says: a filter may name more cities than
    /// one activity has.
    pub const FILTER_LIST_VALUES: usize = 50;
}

/// Size limits applied by validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Maximum characters in a title or a city name.
    pub title_chars: usize,
    /// Maximum characters in a summary.
    pub summary_chars: usize,
    /// Maximum bytes in a Markdown description.
    pub description_bytes: usize,
    /// Maximum characters in a venue, organization, objective or editor.
    pub text_chars: usize,
    /// Maximum number of themes, objectives, organizations, editors, fields or co-hosts.
    pub list_items: usize,
    /// Maximum characters of one theme.
    pub theme_chars: usize,
    /// Maximum documents attached to an activity.
    pub documents: usize,
    /// Maximum characters of a URL.
    pub url_chars: usize,
    /// Maximum characters of a slug.
    pub slug_chars: usize,
    /// Maximum characters of a full-text search query.
    pub search_chars: usize,
    /// Earliest year accepted in dates.
    pub min_year: i32,
    /// Latest year accepted in dates.
    pub max_year: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            title_chars: 200,
            summary_chars: 500,
            description_bytes: 20_000,
            text_chars: 300,
            list_items: 20,
            theme_chars: 80,
            documents: 20,
            url_chars: 2_000,
            slug_chars: 100,
            search_chars: 200,
            min_year: 1900,
            max_year: 2100,
        }
    }
}
