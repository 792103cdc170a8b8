//! GraphQL enums, mirrors of the domain's vocabularies (the domain crate
//! knows nothing of GraphQL; `remote` derives the conversions both ways).

use async_graphql::Enum;
use cityhub_domain as d;

/// A creative field of the network (Architecture since 2025).
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::CreativeField")]
pub enum CreativeField {
    /// Crafts and Folk Art.
    CraftsAndFolkArt,
    /// Design.
    Design,
    /// Film.
    Film,
    /// Gastronomy.
    Gastronomy,
    /// Literature.
    Literature,
    /// Media Arts.
    MediaArts,
    /// Music.
    Music,
    /// Architecture, the eighth field, added in 2025.
    Architecture,
}

/// What kind of activity it is.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::ActivityKind")]
pub enum ActivityKind {
    /// The network's annual meeting (held since 2008).
    AnnualMeeting,
    /// An international conference held in association with the network.
    InternationalConference,
    /// A member meeting on a communication platform (online chat, teleconference…).
    MemberMeeting,
    /// A collaboration among the cities of one creative field.
    SubNetworkCollaboration,
    /// A workshop.
    Workshop,
    /// An exhibition.
    Exhibition,
    /// A festival.
    Festival,
    /// A residency.
    Residency,
    /// Anything else.
    Other,
}

/// Where an activity takes place.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::ActivityFormat")]
pub enum ActivityFormat {
    /// At a venue.
    InPerson,
    /// Online only.
    Online,
    /// At a venue and online.
    Hybrid,
}

/// Lifecycle of an activity.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::ActivityStatus")]
pub enum ActivityStatus {
    /// Visible only to its publishing city and the secretariat.
    Draft,
    /// Visible to everyone.
    Published,
    /// Published, then cancelled; still visible.
    Cancelled,
}

/// How exact an activity's start date is.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::DatePrecision")]
pub enum DatePrecision {
    /// The exact day is known.
    Day,
    /// Only the month is known: the date is the 1st of that month.
    Month,
    /// Only the year is known: the date is January 1st of that year.
    Year,
}

/// What a document attached to an activity is.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::DocumentKind")]
pub enum DocumentKind {
    /// An official communiqué.
    Communique,
    /// A publication.
    Publication,
    /// A programme.
    Programme,
    /// A report.
    Report,
    /// A website.
    Website,
    /// Anything else.
    Other,
}

/// Who a token speaks for.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::Role")]
pub enum Role {
    /// A member city: publishes its own activities, reads the whole network.
    City,
    /// The network's secretariat: manages cities and tokens, may do everything.
    Secretariat,
}

/// Orders in which activities can be listed.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::ActivityOrder")]
pub enum ActivityOrder {
    /// Latest start first; undated activities last.
    StartDateDesc,
    /// Earliest start first; undated activities first.
    StartDateAsc,
    /// Most recently changed first.
    UpdatedAtDesc,
    /// By title, ignoring case and accents.
    TitleAsc,
}

/// What happened to an activity.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::ActivityEventType")]
pub enum ActivityEventType {
    /// It became visible: published, or a draft made public (a draft's own creation reaches only its city and the secretariat).
    Published,
    /// It changed, including cities joining or leaving it.
    Updated,
    /// It was cancelled.
    Cancelled,
    /// It was deleted.
    Deleted,
}

/// What a member city is invited to be for another city's activity.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::InvitationRole")]
pub enum InvitationRole {
    /// One of its hosts (named in `coHosts`).
    CoHost,
    /// The member city where it takes place (named as `venueCity`).
    Venue,
}

/// Where an invitation stands.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::InvitationState")]
pub enum InvitationState {
    /// Not answered yet: the activity is not on the city's surfaces, does not name it, and the city may not edit it.
    Pending,
    /// Accepted: the city hosts the activity (or is its venue city).
    Accepted,
    /// Declined, or left after accepting; naming the city again invites it again.
    Declined,
}

/// What a city's connected calendar publishes.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::SourceKind")]
pub enum SourceKind {
    /// An iCalendar (RFC 5545) feed, as CMSs, Google Calendar, Outlook or Nextcloud publish.
    Icalendar,
    /// A page (or pages) carrying schema.org `Event` JSON-LD, or a JSON-LD document.
    JsonLd,
}

/// How a source's last run went.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "d::SourceStatus")]
pub enum SourceStatus {
    /// Connected, not fetched yet.
    NeverRun,
    /// A run is going on; the source reports its outcome when it ends.
    Running,
    /// The last run read every item.
    Ok,
    /// The calendar had not changed since the run before (a `304`, or the same body): nothing was written.
    NotModified,
    /// The last run imported what it could; `skippedItems` says why the others were not.
    Partial,
    /// The last run failed; `lastError` says why. Nothing in the hub changed.
    Failed,
    /// Paused by its city: not fetched until resumed.
    Paused,
}
