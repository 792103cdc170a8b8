//! The closed vocabularies of the network: creative fields, activity kinds,
//! formats, statuses and the like. Each is stored as its SCREAMING_SNAKE
//! name, which is also its GraphQL name.

use serde::{Deserialize, Serialize};

/// Declares a closed enum with its stable text names.
// Kept instead of `strum`: each stored name is written out beside its
// variant (renaming a variant cannot change what is in the database), and
// `as_str` stays a `const fn`; strum would derive names from identifiers.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable text name (as stored and as in GraphQL).
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a stable text name; `None` for anything else.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// The creative fields of the network (Architecture since 2025).
    CreativeField {
        /// Crafts and Folk Art.
        CraftsAndFolkArt => "CRAFTS_AND_FOLK_ART",
        /// Design.
        Design => "DESIGN",
        /// Film.
        Film => "FILM",
        /// Gastronomy.
        Gastronomy => "GASTRONOMY",
        /// Literature.
        Literature => "LITERATURE",
        /// Media Arts.
        MediaArts => "MEDIA_ARTS",
        /// Music.
        Music => "MUSIC",
        /// Architecture, added in 2025.
        Architecture => "ARCHITECTURE",
    }
}

named_enum! {
    /// What kind of activity it is.
    ActivityKind {
        /// The network's annual meeting (since 2008).
        AnnualMeeting => "ANNUAL_MEETING",
        /// An international conference hosted by a city with the network.
        InternationalConference => "INTERNATIONAL_CONFERENCE",
        /// A member meeting held on a communication platform.
        MemberMeeting => "MEMBER_MEETING",
        /// A collaboration among the cities of one field.
        SubNetworkCollaboration => "SUB_NETWORK_COLLABORATION",
        /// A city's workshop.
        Workshop => "WORKSHOP",
        /// An exhibition.
        Exhibition => "EXHIBITION",
        /// A festival.
        Festival => "FESTIVAL",
        /// A residency.
        Residency => "RESIDENCY",
        /// Anything else.
        Other => "OTHER",
    }
}

named_enum! {
    /// Where an activity takes place.
    ActivityFormat {
        /// At a venue.
        InPerson => "IN_PERSON",
        /// Online only.
        Online => "ONLINE",
        /// Both at a venue and online.
        Hybrid => "HYBRID",
    }
}

named_enum! {
    /// Lifecycle of an activity.
    ActivityStatus {
        /// Visible only to its publishing city and the secretariat.
        Draft => "DRAFT",
        /// Visible to everyone.
        Published => "PUBLISHED",
        /// Published, then cancelled; still visible.
        Cancelled => "CANCELLED",
    }
}

named_enum! {
    /// How exact an activity's start date is.
    DatePrecision {
        /// The exact day is known.
        Day => "DAY",
        /// Only the month is known; the date is the 1st of the month.
        Month => "MONTH",
        /// Only the year is known; the date is January 1st.
        Year => "YEAR",
    }
}

named_enum! {
    /// What a document attached to an activity is.
    DocumentKind {
        /// An official communiqué.
        Communique => "COMMUNIQUE",
        /// A publication.
        Publication => "PUBLICATION",
        /// A programme.
        Programme => "PROGRAMME",
        /// A report.
        Report => "REPORT",
        /// A website.
        Website => "WEBSITE",
        /// Anything else.
        Other => "OTHER",
    }
}

named_enum! {
    /// Who a token speaks for.
    Role {
        /// A member city.
        City => "CITY",
        /// The network's secretariat.
        Secretariat => "SECRETARIAT",
    }
}

named_enum! {
    /// Orders in which activities can be listed.
    ActivityOrder {
        /// Latest start first; undated activities last.
        StartDateDesc => "START_DATE_DESC",
        /// Earliest start first; undated activities first.
        StartDateAsc => "START_DATE_ASC",
        /// Most recently changed first.
        UpdatedAtDesc => "UPDATED_AT_DESC",
        /// By title, case and accents folded.
        TitleAsc => "TITLE_ASC",
    }
}

named_enum! {
    /// What happened to an activity, as seen by subscribers.
    ActivityEventType {
        /// It became visible (published, or a draft made public).
        Published => "PUBLISHED",
        /// It changed (including cities joining or leaving).
        Updated => "UPDATED",
        /// It was cancelled.
        Cancelled => "CANCELLED",
        /// It was deleted.
        Deleted => "DELETED",
    }
}

named_enum! {
    /// What a member city is invited to be for another city's activity.
    InvitationRole {
        /// One of its hosts (named in `coHosts`).
        CoHost => "CO_HOST",
        /// The member city where it takes place (named as `venueCity`).
        Venue => "VENUE",
    }
}

named_enum! {
    /// Where an invitation stands.
    InvitationState {
        /// Asked, not answered yet: the activity is not the city's yet.
        Pending => "PENDING",
        /// Accepted: the city hosts it (or is its venue city).
        Accepted => "ACCEPTED",
        /// Declined, or left after accepting.
        Declined => "DECLINED",
    }
}

named_enum! {
    /// What a city's calendar publishes, as the hub reads it.
    SourceKind {
        /// An iCalendar (RFC 5545) feed.
        Icalendar => "ICALENDAR",
        /// Pages carrying schema.org `Event` JSON-LD (or a JSON-LD document).
        JsonLd => "JSON_LD",
    }
}

named_enum! {
    /// How a source's last run went.
    SourceStatus {
        /// Connected, not fetched yet.
        NeverRun => "NEVER_RUN",
        /// A run is going on.
        Running => "RUNNING",
        /// The last run read every item.
        Ok => "OK",
        /// The calendar had not changed since the run before (a `304`, or the same body).
        NotModified => "NOT_MODIFIED",
        /// The last run imported what it could; some items were skipped.
        Partial => "PARTIAL",
        /// The last run failed (`lastError` says why); nothing changed.
        Failed => "FAILED",
        /// Paused by its city: not fetched until resumed.
        Paused => "PAUSED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in CreativeField::ALL {
            assert_eq!(CreativeField::parse(f.as_str()), Some(*f));
        }
        for k in ActivityKind::ALL {
            assert_eq!(ActivityKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(ActivityStatus::parse("draft"), None);
    }
}
