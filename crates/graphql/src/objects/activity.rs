//! `Activity` and `Document`.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result};
use cityhub_domain as d;
use cityhub_events::Related;

use crate::enums::{
    ActivityFormat, ActivityKind, ActivityStatus, CreativeField, DatePrecision, DocumentKind,
};
use crate::error::ResultExt;
use crate::objects::city::CityObject;
use crate::objects::invitation::InvitationObject;
use crate::objects::node::GlobalId;
use crate::objects::source::SourceObject;
use crate::scalars::{Date, DateTime};
use crate::state::{actor, loaders};

/// An activity of the network: a meeting, a conference, a collaboration, or
/// a city's workshop, festival or residency.
pub struct ActivityObject {
    activity: d::Activity,
    /// Relations loaded once for every subscriber of a live event.
    related: Option<Arc<Related>>,
}

impl ActivityObject {
    /// An activity whose relations load through the request's DataLoaders.
    pub fn new(activity: d::Activity) -> Self {
        Self {
            activity,
            related: None,
        }
    }

    /// An activity of a live event, with its relations already loaded.
    pub fn live(activity: d::Activity, related: Arc<Related>) -> Self {
        Self {
            activity,
            related: Some(related),
        }
    }

    async fn city(&self, ctx: &Context<'_>, id: d::CityId) -> Result<Option<CityObject>> {
        if let Some(r) = &self.related {
            return Ok(r.cities.get(&id).cloned().map(CityObject));
        }
        Ok(loaders(ctx)
            .cities
            .load_one(id)
            .await
            .api()?
            .map(CityObject))
    }

    async fn cities(&self, ctx: &Context<'_>, ids: &[d::CityId]) -> Result<Vec<CityObject>> {
        let loaded;
        let cities = match &self.related {
            Some(r) => &r.cities,
            None => {
                loaded = loaders(ctx)
                    .cities
                    .load_many(ids.iter().copied())
                    .await
                    .api()?;
                &loaded
            }
        };
        Ok(ids
            .iter()
            .filter_map(|id| cities.get(id).cloned().map(CityObject))
            .collect())
    }
}

/// Whether a selection of an activity reads its description: `description`
/// itself, or `jsonLd`, which falls back on it without a summary. Reads
/// leave the description (the longest column) unread otherwise.
pub(crate) fn reads_description(node: &async_graphql::Lookahead<'_>) -> bool {
    node.field("description").exists() || node.field("jsonLd").exists()
}

/// A document attached to an activity: a communiqué, a publication, a programme…
pub struct DocumentObject(pub d::Document);

/// An activity of the network: an annual meeting, an international conference, a member meeting, a sub-network collaboration, or a city's workshop, exhibition, festival or residency.
#[Object(name = "Activity")]
impl ActivityObject {
    /// Stable identifier, the activity's own (unique among activities; a city may have the same). `globalId` is unique across types.
    async fn id(&self) -> ID {
        ID(self.activity.id.to_string())
    }

    /// Opaque id unique across every type of the schema, for `node(id:)`, `nodes(ids:)` and normalised client caches.
    pub(crate) async fn global_id(&self) -> ID {
        GlobalId::Activity(self.activity.id).encode()
    }

    /// True only for the activity of an event (`activityEvents`) whose activity was deleted since: a tombstone, whose `id`, `globalId`, `slug`, `kind` and `status` remain and whose content is gone (`title` is empty, lists are empty). Evict it from caches. Queries never return a deleted activity.
    async fn deleted(&self) -> bool {
        self.related.as_ref().is_some_and(|r| r.deleted)
    }

    /// Stable, URL-safe name, unique in the hub.
    async fn slug(&self) -> &str {
        &self.activity.slug
    }

    /// What kind of activity it is.
    async fn kind(&self) -> ActivityKind {
        self.activity.kind.into()
    }

    /// In person, online or both.
    async fn format(&self) -> ActivityFormat {
        self.activity.format.into()
    }

    /// Draft, published or cancelled.
    async fn status(&self) -> ActivityStatus {
        self.activity.status.into()
    }

    /// Title.
    async fn title(&self) -> &str {
        &self.activity.title
    }

    /// One-paragraph summary.
    async fn summary(&self) -> Option<&str> {
        self.activity.summary.as_deref()
    }

    /// Description, in Markdown.
    async fn description(&self) -> Option<&str> {
        self.activity.description.as_deref()
    }

    /// First day; null when ongoing or undated. With precision YEAR it is January 1st of the year.
    async fn start_date(&self) -> Option<Date> {
        self.activity.start_date.map(Date)
    }

    /// Last day, when known.
    async fn end_date(&self) -> Option<Date> {
        self.activity.end_date.map(Date)
    }

    /// How exact `startDate` is (the network's page knows some meetings only by year).
    async fn date_precision(&self) -> DatePrecision {
        self.activity.date_precision.into()
    }

    /// Local start time on `startDate`, `HH:MM` (24-hour clock) in `timeZone`; null for a date-only activity.
    async fn start_time(&self) -> Option<String> {
        self.activity
            .timing
            .map(|t| d::timing::format_local_time(t.start_time))
    }

    /// Local end time on `endDate` (or `startDate` when there is none), `HH:MM` in `timeZone`; null when no end time is known.
    async fn end_time(&self) -> Option<String> {
        self.activity
            .timing
            .and_then(|t| t.end_time)
            .map(d::timing::format_local_time)
    }

    /// IANA time zone of `startTime` and `endTime`, e.g. `Europe/Paris`; null for a date-only activity.
    async fn time_zone(&self) -> Option<&'static str> {
        self.activity.timing.as_ref().map(d::Timing::zone_name)
    }

    /// The start as a UTC instant (`startDate` at `startTime` in `timeZone`); null for a date-only activity. A local time that occurs twice is the first; one skipped by a daylight-saving change is read with the offset before it (RFC 5545).
    async fn starts_at(&self) -> Option<DateTime> {
        self.activity.timing.map(|t| DateTime(t.starts_at))
    }

    /// The end as a UTC instant; null for a date-only activity or when no end time is known.
    async fn ends_at(&self) -> Option<DateTime> {
        self.activity.timing.and_then(|t| t.ends_at).map(DateTime)
    }

    /// Where it takes place, as free text.
    async fn venue(&self) -> Option<&str> {
        self.activity.venue.as_deref()
    }

    /// The member city where it takes place: the publishing city itself, or a city that accepted its invitation; null while the named venue city has not accepted (see `invitations`).
    async fn venue_city(&self, ctx: &Context<'_>) -> Result<Option<CityObject>> {
        match self.activity.venue_city_id {
            Some(id) => self.city(ctx, id).await,
            None => Ok(None),
        }
    }

    /// Member cities hosting it: the publishing city first, then the co-hosts that accepted their invitation.
    async fn hosts(&self, ctx: &Context<'_>) -> Result<Vec<CityObject>> {
        self.cities(ctx, &self.activity.hosts).await
    }

    /// The member cities invited to co-host it or to be its venue city, with their answers. Its hosts (the publishing city and the co-hosts that accepted) and the secretariat see every invitation; an invited city sees its own; anyone else sees an empty list.
    async fn invitations(&self, ctx: &Context<'_>) -> Result<Vec<InvitationObject>> {
        let rows = match &self.related {
            Some(r) => r.invitations.clone(),
            None => loaders(ctx)
                .invitations
                .load_one(self.activity.id)
                .await
                .api()?
                .unwrap_or_default(),
        };
        let all = d::invitation::standing(&self.activity, &rows);
        Ok(d::invitation::visible_to(actor(ctx), &self.activity, &all)
            .into_iter()
            .map(|i| InvitationObject::new(i, self.related.clone()))
            .collect())
    }

    /// Member cities that joined it.
    async fn participants(&self, ctx: &Context<'_>) -> Result<Vec<CityObject>> {
        let ids = match &self.related {
            Some(r) => r.participants.clone(),
            None => loaders(ctx)
                .participants
                .load_one(self.activity.id)
                .await
                .api()?
                .unwrap_or_default(),
        };
        self.cities(ctx, &ids).await
    }

    /// Organizers that are not member cities, e.g. UNESCO.
    async fn organizations(&self) -> &[String] {
        &self.activity.organizations
    }

    /// Creative fields it concerns.
    async fn fields(&self) -> Vec<CreativeField> {
        self.activity.fields.iter().map(|f| (*f).into()).collect()
    }

    /// Themes.
    async fn themes(&self) -> &[String] {
        &self.activity.themes
    }

    /// Stated objectives.
    async fn objectives(&self) -> &[String] {
        &self.activity.objectives
    }

    /// Documents: communiqués, publications, programmes, websites.
    async fn documents(&self, ctx: &Context<'_>) -> Result<Vec<DocumentObject>> {
        let docs = match &self.related {
            Some(r) => r.documents.clone(),
            None => loaders(ctx)
                .documents
                .load_one(self.activity.id)
                .await
                .api()?
                .unwrap_or_default(),
        };
        Ok(docs.into_iter().map(DocumentObject).collect())
    }

    /// The city that published it; null when the secretariat did.
    async fn published_by(&self, ctx: &Context<'_>) -> Result<Option<CityObject>> {
        match self.activity.published_by {
            Some(id) => self.city(ctx, id).await,
            None => Ok(None),
        }
    }

    /// When it was first published; null for a draft.
    async fn published_at(&self) -> Option<DateTime> {
        self.activity.published_at.map(DateTime)
    }

    /// When it last changed.
    async fn updated_at(&self) -> DateTime {
        DateTime(self.activity.updated_at)
    }

    /// Increments on every change; pass it as `expectedVersion` to update safely.
    async fn version(&self) -> i32 {
        self.activity.version
    }

    /// The city's calendar it was imported from; null for an activity published through the API (or detached from its source). Imported activities are edited at their source until detached (`detachFromSource`).
    async fn source(&self, ctx: &Context<'_>) -> Result<Option<SourceObject>> {
        let Some(item) = loaders(ctx)
            .source_items
            .load_one(self.activity.id)
            .await
            .api()?
        else {
            return Ok(None);
        };
        Ok(loaders(ctx)
            .sources
            .load_one(item.source_id)
            .await
            .api()?
            .map(SourceObject))
    }

    /// The imported item's own page in its city's calendar, when it has one.
    async fn source_url(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Ok(loaders(ctx)
            .source_items
            .load_one(self.activity.id)
            .await
            .api()?
            .and_then(|item| item.url))
    }

    /// Why it was cancelled, when it was and a reason was given.
    async fn cancel_reason(&self) -> Option<&str> {
        self.activity.cancel_reason.as_deref()
    }

    /// This activity as schema.org `Event` JSON-LD, as its page `/activities/{slug}` embeds it (dates at their known precision). URLs are absolute when the hub's `api.public_url` is set, root-relative otherwise.
    async fn json_ld(&self, ctx: &Context<'_>) -> Result<async_graphql::Json<serde_json::Value>> {
        let mut ids: Vec<d::CityId> = self.activity.hosts.clone();
        ids.extend(self.activity.venue_city_id);
        let cities: std::collections::HashMap<d::CityId, d::City> = self
            .cities(ctx, &ids)
            .await?
            .into_iter()
            .map(|c| (c.0.id, c.0))
            .collect();
        let documents = self.documents(ctx).await?;
        let documents: Vec<d::Document> = documents.into_iter().map(|doc| doc.0).collect();
        let base = &crate::state::hub(ctx).settings.public_url;
        Ok(async_graphql::Json(d::jsonld::event_json_ld(
            &self.activity,
            d::jsonld::JsonLdContext {
                base_url: base,
                cities: &cities,
                documents: &documents,
            },
        )))
    }
}

/// A document attached to an activity: a communiqué, a publication, a programme, a report, a website.
#[Object(name = "Document")]
impl DocumentObject {
    /// Stable identifier, the document's own (unique among documents). `globalId` is unique across types.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Opaque id unique across every type of the schema, for `node(id:)`, `nodes(ids:)` and normalised client caches.
    pub(crate) async fn global_id(&self) -> ID {
        GlobalId::Document {
            activity: self.0.activity_id,
            document: self.0.id,
        }
        .encode()
    }

    /// What the document is.
    async fn kind(&self) -> DocumentKind {
        self.0.kind.into()
    }

    /// Title.
    async fn title(&self) -> &str {
        &self.0.title
    }

    /// Where to read it.
    async fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }

    /// When it was issued.
    async fn issued_on(&self) -> Option<Date> {
        self.0.issued_on.map(Date)
    }

    /// How exact `issuedOn` is (a publication may be known by month only).
    async fn issued_precision(&self) -> DatePrecision {
        self.0.issued_precision.into()
    }

    /// Editors, for publications.
    async fn editors(&self) -> &[String] {
        &self.0.editors
    }
}
