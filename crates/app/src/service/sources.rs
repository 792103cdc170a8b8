//! The write side of sources: connecting, pausing, resuming, removing and
//! detaching, claiming a source for a run, and reconciling what a run read
//! into activities. Every imported change is a normal write: the activity,
//! its event and its audit row, in one transaction.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use cityhub_domain::{
    Activity, ActivityEventType, ActivityId, ActivityInput, ActivityStatus, Actor, CityId,
    FieldError, Naming, PublishAs, SkippedItem, Source, SourceDefaults, SourceId, SourceKind,
    may_manage_sources,
};
use sea_orm::DatabaseTransaction;
use sha2::{Digest, Sha256};

use super::{HubService, Resolving, ServiceError, actor_label};
use cityhub_storage::repo::activity::{ActivityRepo, ActivityWrite};
use cityhub_storage::repo::audit::{AuditRepo, AuditTarget};
use cityhub_storage::repo::city::CityRepo;
use cityhub_storage::repo::events::{EventLog, NewEvent};
use cityhub_storage::repo::source::{NewSource, RunOutcome, SourceRepo, StoredItem};
use cityhub_storage::time::now_micros;

/// How many item changes one transaction of an import writes.
const IMPORT_BATCH: usize = 100;

/// A new imported activity, as [`HubService::create_imported`] prepares it.
struct NewImport<'a> {
    source: &'a Source,
    city_actor: &'a Actor,
    item: &'a ImportItem,
    hash: &'a String,
    /// Its reserved slug; `None`: the item names one, checked as a
    /// publish's is.
    slug: Option<&'a str>,
}

/// A batch's new activities, written together at the batch's end: their
/// rows and relations, events, audit rows and items, one statement per
/// table.
#[derive(Default)]
struct Created {
    /// Each new activity and its source item (whose `activity_id` the
    /// insert fills in).
    new: Vec<(ActivityWrite, StoredItem)>,
}

impl Created {
    async fn write(
        self,
        txn: &DatabaseTransaction,
        city: CityId,
        label: &str,
    ) -> Result<(), ServiceError> {
        let writes: Vec<&ActivityWrite> = self.new.iter().map(|(write, _)| write).collect();
        let stored = ActivityRepo::insert_many_returning(
            txn,
            &writes,
            ActivityStatus::Published,
            Some(city),
        )
        .await?;
        let mut events = Vec::with_capacity(stored.len());
        let mut audit = Vec::with_capacity(stored.len());
        let mut items = Vec::with_capacity(stored.len());
        for (activity, (_, mut item)) in stored.iter().zip(self.new) {
            events.push(NewEvent {
                activity: activity.id,
                event_type: ActivityEventType::Published,
                actor: Some(city),
                status: ActivityStatus::Published,
                published_by: Some(city),
            });
            audit.push(
                AuditRepo::entry(label, "importActivity", AuditTarget::Activity(activity.id))
                    .versions(None, 1),
            );
            item.activity_id = activity.id;
            items.push(item);
        }
        EventLog::append_many(txn, &events).await?;
        AuditRepo::record_many(txn, &audit).await?;
        SourceRepo::insert_items(txn, city, &items).await?;
        Ok(())
    }
}

/// The longest item key (`UID`, `@id`, `url`) imported.
const MAX_KEY_CHARS: usize = 1_000;

/// Most skipped items kept for a run, and the longest text of one.
const MAX_SKIPPED: usize = 1_000;
const MAX_SKIPPED_CHARS: usize = 500;

/// Whether an item key can be stored and looked up: not empty, not too
/// long, no control characters (PostgreSQL refuses NUL in text).
fn usable_key(key: &str) -> bool {
    !key.is_empty() && key.chars().count() <= MAX_KEY_CHARS && !key.chars().any(char::is_control)
}

/// Text from a feed made storable for display: control characters (NUL
/// included, which PostgreSQL refuses) replaced, length capped.
fn displayable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .take(MAX_SKIPPED_CHARS)
        .collect();
    if text.chars().count() > MAX_SKIPPED_CHARS {
        out.push('…');
    }
    out
}

/// The reason an upcoming activity is cancelled with when its item left
/// its source.
pub const GONE_REASON: &str = "removed from the city's calendar (its source no longer lists it)";

/// The reason an activity is cancelled with when its source says so.
pub const CANCELLED_REASON: &str = "cancelled in the city's calendar";

/// A source as a city connects it.
#[derive(Debug, Clone)]
pub struct SourceRequest {
    /// What it publishes.
    pub kind: SourceKind,
    /// Where it is fetched.
    pub url: String,
    /// The city's slug (the secretariat's choice; a city's token connects
    /// its own).
    pub city: Option<String>,
    /// What items that say nothing get.
    pub defaults: SourceDefaults,
}

/// An item a run read, ready to become an activity.
#[derive(Debug, Clone)]
pub struct ImportItem {
    /// Its identity in the source (`UID`, with `RECURRENCE-ID` for an
    /// instance; `@id` or `url` in JSON-LD).
    pub key: String,
    /// The activity it describes.
    pub input: ActivityInput,
    /// The source says it is cancelled.
    pub cancelled: bool,
    /// The item's own page.
    pub url: Option<String>,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Activities created.
    pub created: usize,
    /// Activities whose content changed.
    pub updated: usize,
    /// Activities cancelled (by their source, or because they left it).
    pub cancelled: usize,
    /// Items that were already imported as they are.
    pub unchanged: usize,
    /// Items refused by validation.
    pub skipped: Vec<SkippedItem>,
}

impl ImportReport {
    /// Whether any activity changed.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.created + self.updated + self.cancelled > 0
    }
}

/// One change an import makes.
enum Change {
    Create(ImportItem, String),
    Update(ImportItem, String, StoredItem),
    Gone(StoredItem),
}

/// An `UPDATED` event for an activity whose provenance changed (detached,
/// or its source removed while it is kept): its `source` reads otherwise.
async fn provenance_changed(txn: &DatabaseTransaction, id: ActivityId) -> Result<(), ServiceError> {
    if let Some((activity, false)) = ActivityRepo::find_for_update(txn, id).await? {
        EventLog::append(
            txn,
            NewEvent {
                activity: id,
                event_type: ActivityEventType::Updated,
                actor: activity.published_by,
                status: activity.status,
                published_by: activity.published_by,
            },
        )
        .await?;
    }
    Ok(())
}

/// The series an instance key belongs to (`UID#RECURRENCE-ID` → `UID`).
fn series_of(key: &str) -> &str {
    match key.rsplit_once('#') {
        Some((series, id)) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => {
            series
        }
        _ => key,
    }
}

/// The hash of an item's content: what a re-run compares.
fn content_hash(item: &ImportItem) -> String {
    let mut hasher = Sha256::new();
    hasher.update(crate::fingerprint::fingerprint(
        &item.input,
        PublishAs::Published,
    ));
    hasher.update([u8::from(item.cancelled)]);
    hasher.update(item.url.as_deref().unwrap_or("").as_bytes());
    hex::encode(hasher.finalize())
}

impl HubService {
    /// The city a request names (the secretariat's `city`) or the token's.
    async fn source_city(&self, actor: &Actor, city: Option<&str>) -> Result<CityId, ServiceError> {
        match (city, actor) {
            (Some(slug), _) => {
                let found = CityRepo::find_by_slug(self.db.conn(), slug)
                    .await?
                    .ok_or_else(|| {
                        FieldError::new(
                            "input.city",
                            format!("no member city has the slug '{slug}'"),
                        )
                    })?;
                may_manage_sources(actor, found.id)?;
                Ok(found.id)
            }
            (None, Actor::City { id, .. }) => Ok(*id),
            (None, Actor::Anonymous) => Err(cityhub_domain::Denied::Unauthenticated.into()),
            (None, Actor::Secretariat) => Err(FieldError::new(
                "input.city",
                "the secretariat names the city whose calendar it connects",
            )
            .into()),
        }
    }

    /// Connects a city's calendar; its first run is due at `first_run_at`
    /// (microseconds).
    pub async fn connect_source(
        &self,
        actor: &Actor,
        request: SourceRequest,
        first_run_at: i64,
    ) -> Result<Source, ServiceError> {
        let city = self.source_city(actor, request.city.as_deref()).await?;
        cityhub_domain::activity::check_url("input.url", &request.url, &self.limits)?;
        cityhub_domain::chars::check_text(
            "input.url",
            &request.url,
            cityhub_domain::chars::TextKind::Line,
        )?;
        request.defaults.validate("input.defaults", &self.limits)?;
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        let source = SourceRepo::insert(
            &txn,
            &NewSource {
                city_id: city,
                kind: request.kind,
                url: request.url,
                defaults: request.defaults,
                first_run_at,
                now: now_micros(),
            },
        )
        .await
        .map_err(|e| match e {
            cityhub_storage::StorageError::Conflict(message) => ServiceError::Conflict {
                message,
                field: Some("input.url".into()),
            },
            other => other.into(),
        })?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(
                &actor_label(actor),
                "connectSource",
                AuditTarget::Source(source.id),
            ),
        )
        .await?;
        self.commit(txn).await?;
        Ok(source)
    }

    /// A source the actor may manage; `NotFound` for another city's.
    pub async fn source(&self, actor: &Actor, id: SourceId) -> Result<Source, ServiceError> {
        let not_found = || ServiceError::NotFound(format!("no source with id {id}"));
        let source = SourceRepo::find(self.db.conn(), id)
            .await?
            .ok_or_else(not_found)?;
        match may_manage_sources(actor, source.city_id) {
            Ok(()) => Ok(source),
            Err(cityhub_domain::Denied::Unauthenticated) => {
                Err(cityhub_domain::Denied::Unauthenticated.into())
            }
            Err(_) => Err(not_found()),
        }
    }

    /// The sources the actor manages: a city's token, its own (another
    /// city's is `FORBIDDEN`); the secretariat, every city's or one city's.
    pub async fn sources(
        &self,
        actor: &Actor,
        city: Option<&str>,
    ) -> Result<Vec<Source>, ServiceError> {
        let city = match (city, actor) {
            (None, Actor::Secretariat) => None,
            (city, actor) => Some(match city {
                Some(slug) => {
                    let found = CityRepo::find_by_slug(self.db.conn(), slug)
                        .await?
                        .ok_or_else(|| {
                            FieldError::new("city", format!("no member city has the slug '{slug}'"))
                        })?;
                    may_manage_sources(actor, found.id)?;
                    Ok(found.id)
                }
                None => self.source_city(actor, None).await,
            }?),
        };
        Ok(SourceRepo::list(self.db.conn(), city).await?)
    }

    /// Pauses (no run until resumed) or resumes (due at once) a source.
    pub async fn set_source_paused(
        &self,
        actor: &Actor,
        id: SourceId,
        paused: bool,
    ) -> Result<Source, ServiceError> {
        let source = self.source(actor, id).await?;
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        SourceRepo::set_paused(&txn, source.id, paused, (!paused).then(now_micros)).await?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(
                &actor_label(actor),
                if paused {
                    "pauseSource"
                } else {
                    "resumeSource"
                },
                AuditTarget::Source(source.id),
            ),
        )
        .await?;
        self.commit(txn).await?;
        self.source(actor, id).await
    }

    /// Removes a source. Its upcoming imported activities are cancelled,
    /// or, with `keep_activities`, kept as the city's own (detached).
    pub async fn remove_source(
        &self,
        actor: &Actor,
        id: SourceId,
        keep_activities: bool,
        today: NaiveDate,
    ) -> Result<SourceId, ServiceError> {
        let source = self.source(actor, id).await?;
        let items = SourceRepo::items(self.db.conn(), id).await?;
        if keep_activities {
            // Their provenance changes: an `UPDATED` event each, so caches,
            // `ETag`s and subscribers see it.
            for chunk in items.chunks(IMPORT_BATCH) {
                let _guard = self.db.write_guard().await;
                let txn = self.begin().await?;
                for item in chunk.iter().filter(|i| !i.detached) {
                    provenance_changed(&txn, item.activity_id).await?;
                }
                self.commit(txn).await?;
            }
        } else {
            let label = format!("source:{id}");
            let city_actor = self.city_actor(source.city_id).await?;
            for chunk in items.chunks(IMPORT_BATCH) {
                let _guard = self.db.write_guard().await;
                let txn = self.begin().await?;
                for item in chunk.iter().filter(|i| !i.gone && !i.detached) {
                    self.cancel_imported(
                        &txn,
                        &city_actor,
                        &label,
                        item.activity_id,
                        "removed with its source (the city's calendar it was imported from)",
                        Some(today),
                    )
                    .await?;
                }
                self.commit(txn).await?;
            }
        }
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        SourceRepo::delete(&txn, id).await?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(&actor_label(actor), "removeSource", AuditTarget::Source(id)),
        )
        .await?;
        self.commit(txn).await?;
        Ok(id)
    }

    /// Detaches an imported activity from its source: it becomes the
    /// city's own, editable again, and later runs leave it alone.
    pub async fn detach_from_source(
        &self,
        actor: &Actor,
        id: ActivityId,
    ) -> Result<Activity, ServiceError> {
        self.policy
            .authorize(actor, cityhub_domain::Action::ReadNetwork, None)?;
        {
            let _guard = self.db.write_guard().await;
            let txn = self.begin().await?;
            let (current, _) = self
                .checked(&txn, actor, cityhub_domain::Action::Update, id, None)
                .await?;
            let Some(item) = SourceRepo::item_of_activity(&txn, id).await? else {
                return Err(ServiceError::conflict(
                    "this activity was not imported from a source",
                ));
            };
            SourceRepo::detach(&txn, id).await?;
            provenance_changed(&txn, id).await?;
            AuditRepo::record(
                &txn,
                &AuditRepo::entry(
                    &actor_label(actor),
                    "detachFromSource",
                    AuditTarget::Activity(id),
                )
                .versions(Some(current.version), current.version),
            )
            .await?;
            AuditRepo::record(
                &txn,
                &AuditRepo::entry(
                    &actor_label(actor),
                    "detachFromSource",
                    AuditTarget::Source(item.source_id),
                ),
            )
            .await?;
            self.commit(txn).await?;
        }
        self.load(id).await
    }

    /// Refuses a change of an imported activity: it is edited at its
    /// source until detached.
    pub(super) async fn refuse_imported(
        &self,
        txn: &DatabaseTransaction,
        id: ActivityId,
    ) -> Result<(), ServiceError> {
        if SourceRepo::item_of_activity(txn, id).await?.is_some() {
            return Err(ServiceError::Imported);
        }
        Ok(())
    }

    /// Takes source `id` for a run by `owner` for `lease_micros`, unless a
    /// run holds it. Returns whether it did.
    pub async fn claim_source(
        &self,
        id: SourceId,
        owner: &str,
        lease_micros: i64,
    ) -> Result<bool, ServiceError> {
        let _guard = self.db.write_guard().await;
        let now = now_micros();
        Ok(SourceRepo::claim(self.db.conn(), id, owner, now, now + lease_micros).await?)
    }

    /// Takes the source due first for a run by `owner`, if any is due.
    pub async fn claim_due_source(
        &self,
        owner: &str,
        lease_micros: i64,
    ) -> Result<Option<Source>, ServiceError> {
        let claimed = {
            let _guard = self.db.write_guard().await;
            let now = now_micros();
            SourceRepo::claim_due(self.db.conn(), owner, now, now + lease_micros).await?
        };
        match claimed {
            Some(id) => Ok(SourceRepo::find(self.db.conn(), id).await?),
            None => Ok(None),
        }
    }

    /// Records how a run ended (status, validators, schedule and skipped
    /// items) with its audit row, and releases the lease.
    pub async fn finish_source_run(
        &self,
        id: SourceId,
        owner: &str,
        outcome: &RunOutcome,
        skipped: Option<&[SkippedItem]>,
    ) -> Result<(), ServiceError> {
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        SourceRepo::finish(&txn, id, owner, now_micros(), outcome).await?;
        if let Some(skipped) = skipped {
            let mut kept: Vec<SkippedItem> = skipped
                .iter()
                .take(MAX_SKIPPED)
                .map(|s| SkippedItem {
                    uid: displayable(&s.uid),
                    reason: displayable(&s.reason),
                })
                .collect();
            if skipped.len() > MAX_SKIPPED {
                kept.push(SkippedItem {
                    uid: "…".into(),
                    reason: format!("and {} more items", skipped.len() - MAX_SKIPPED),
                });
            }
            SourceRepo::replace_skipped(&txn, id, &kept).await?;
        }
        let outcome = &RunOutcome {
            error: outcome.error.as_deref().map(displayable),
            ..outcome.clone()
        };
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(
                &format!("source:{id}"),
                &format!("sourceRun:{}", outcome.status.as_str()),
                AuditTarget::Source(id),
            ),
        )
        .await?;
        self.commit(txn).await?;
        Ok(())
    }

    /// The actor a source's imports are written as: its city.
    async fn city_actor(&self, city: CityId) -> Result<Actor, ServiceError> {
        let found = CityRepo::find_by_id(self.db.conn(), city)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no city with id {city}")))?;
        Ok(Actor::City {
            id: found.id,
            slug: found.slug,
        })
    }

    /// Reconciles what a run of `source` read into activities: new items
    /// are published as the source's city, changed ones updated, items
    /// cancelled at the source cancelled, and upcoming activities whose
    /// item left the source cancelled (`today` decides what is upcoming).
    /// Items whose key (or series) is in `keep` could not be read this
    /// time and are not taken as gone; nothing is gone from an incomplete
    /// read (`complete` false: more items than a run imports).
    /// Items already imported as they are cost no write. The same event
    /// imported by another source of the city is not imported again.
    pub async fn import_items(
        &self,
        source: &Source,
        items: Vec<ImportItem>,
        keep: &HashSet<String>,
        complete: bool,
        today: NaiveDate,
    ) -> Result<ImportReport, ServiceError> {
        let mut report = ImportReport::default();
        let city_actor = self.city_actor(source.city_id).await?;
        let stored: HashMap<String, StoredItem> = SourceRepo::items(self.db.conn(), source.id)
            .await?
            .into_iter()
            .map(|i| (i.key.clone(), i))
            .collect();
        let unknown: Vec<String> = items
            .iter()
            .filter(|i| usable_key(&i.key) && !stored.contains_key(&i.key))
            .map(|i| i.key.clone())
            .collect();
        let elsewhere = SourceRepo::items_of_city(self.db.conn(), source.city_id, &unknown).await?;
        let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
        let mut changes = Vec::new();
        for mut item in items {
            if !usable_key(&item.key) {
                report.skipped.push(SkippedItem {
                    uid: displayable(&item.key),
                    reason: format!(
                        "its identity (UID, @id or url) is empty, longer than {MAX_KEY_CHARS} characters or holds control characters"
                    ),
                });
                continue;
            }
            if !seen.insert(item.key.clone()) {
                report.skipped.push(SkippedItem {
                    uid: item.key,
                    reason: "the same item appears twice in the feed".into(),
                });
                continue;
            }
            item.input = item.input.normalized();
            if let Err(e) = item.input.validate("item", &self.limits) {
                let cityhub_domain::DomainError::Invalid(field) = e;
                report.skipped.push(SkippedItem {
                    uid: item.key,
                    reason: format!("{}: {}", field.field, field.message),
                });
                continue;
            }
            let hash = content_hash(&item);
            match stored.get(&item.key) {
                // Its city made the activity its own: left alone.
                Some(known) if known.detached => report.unchanged += 1,
                Some(known) if known.content_hash == hash && !known.gone => report.unchanged += 1,
                Some(known) => changes.push(Change::Update(item, hash, known.clone())),
                None if elsewhere.contains_key(&item.key) => report.unchanged += 1,
                // An event that was cancelled before the hub saw it is not imported.
                None if item.cancelled => report.unchanged += 1,
                None => changes.push(Change::Create(item, hash)),
            }
        }
        for known in stored.values() {
            let present = seen.contains(&known.key)
                || keep.contains(&known.key)
                || keep.contains(series_of(&known.key));
            if complete && !known.gone && !known.detached && !present {
                changes.push(Change::Gone(known.clone()));
            }
        }
        let label = format!("source:{}", source.id);
        for chunk in changes.chunks(IMPORT_BATCH) {
            let _guard = self.db.write_guard().await;
            let txn = self.begin().await?;
            // New activities: their slugs reserved at once, their events,
            // audit rows and items written in one statement each.
            let slugs = self.reserve_slugs(&txn, chunk).await?;
            let mut created = Created::default();
            for (change, slug) in chunk.iter().zip(slugs) {
                match (change, slug) {
                    (Change::Create(item, hash), Some(slug)) => {
                        let new = NewImport {
                            source,
                            city_actor: &city_actor,
                            item,
                            hash,
                            slug: Some(&slug),
                        };
                        self.create_imported(&txn, new, &mut created).await?;
                        report.created += 1;
                    }
                    _ => {
                        self.apply_change(
                            &txn,
                            source,
                            &city_actor,
                            &label,
                            change,
                            today,
                            &mut report,
                        )
                        .await?;
                    }
                }
            }
            created.write(&txn, source.city_id, &label).await?;
            self.commit(txn).await?;
        }
        Ok(report)
    }

    /// Reserves a slug for each new activity of `chunk` whose item names
    /// none (`None` for the other changes): one lock statement for the
    /// batch's slug families and one query for their taken slugs, where a
    /// publish takes one of each per activity.
    async fn reserve_slugs(
        &self,
        txn: &DatabaseTransaction,
        chunk: &[Change],
    ) -> Result<Vec<Option<String>>, ServiceError> {
        let bases: Vec<Option<String>> = chunk
            .iter()
            .map(|change| match change {
                Change::Create(item, _) if item.input.slug.is_none() => {
                    Some(self.slug_base(&item.input.title))
                }
                _ => None,
            })
            .collect();
        let mut families: Vec<String> = bases.iter().flatten().cloned().collect();
        families.sort_unstable();
        families.dedup();
        ActivityRepo::lock_slug_bases(txn, &families).await?;
        let mut taken: HashSet<String> = ActivityRepo::slugs_with_bases(txn, &families)
            .await?
            .into_iter()
            .collect();
        Ok(bases
            .into_iter()
            .map(|base| {
                base.map(|base| {
                    let slug = super::first_free_slug(base, &taken);
                    taken.insert(slug.clone());
                    slug
                })
            })
            .collect())
    }

    /// Prepares a new imported activity (under its reserved slug, if any);
    /// it is written with the rest of its batch (`created`).
    async fn create_imported(
        &self,
        txn: &DatabaseTransaction,
        new: NewImport<'_>,
        created: &mut Created,
    ) -> Result<(), ServiceError> {
        let NewImport {
            source,
            city_actor,
            item,
            hash,
            slug,
        } = new;
        let write = self
            .resolve(
                txn,
                item.input.clone(),
                Resolving {
                    publisher: Some(source.city_id),
                    current: &[],
                    naming: Naming::of(city_actor),
                    path: "item",
                    current_slug: slug,
                },
            )
            .await?;
        created.new.push((
            write,
            StoredItem {
                source_id: source.id,
                key: item.key.clone(),
                // Filled in when the batch's activities are inserted.
                activity_id: ActivityId(0),
                content_hash: hash.clone(),
                url: item.url.clone(),
                gone: false,
                detached: false,
            },
        ));
        Ok(())
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one change of one run, in its transaction"
    )]
    async fn apply_change(
        &self,
        txn: &DatabaseTransaction,
        source: &Source,
        city_actor: &Actor,
        label: &str,
        change: &Change,
        today: NaiveDate,
        report: &mut ImportReport,
    ) -> Result<(), ServiceError> {
        match change {
            Change::Create(item, hash) => {
                let mut created = Created::default();
                let new = NewImport {
                    source,
                    city_actor,
                    item,
                    hash,
                    slug: None,
                };
                self.create_imported(txn, new, &mut created).await?;
                created.write(txn, source.city_id, label).await?;
                report.created += 1;
            }
            Change::Update(item, hash, known) => {
                let Some((current, deleted)) =
                    ActivityRepo::find_for_update(txn, known.activity_id).await?
                else {
                    return Ok(());
                };
                if deleted {
                    return Ok(());
                }
                let before = self.to_input(txn, &current, &[]).await?;
                let mut next = item.input.clone();
                next.slug = Some(current.slug.clone());
                let mut version = current.version;
                let mut changed = false;
                if next != before {
                    let write = self
                        .resolve(
                            txn,
                            next,
                            Resolving {
                                publisher: current.published_by,
                                current: &[],
                                naming: Naming::of(city_actor),
                                path: "item",
                                current_slug: Some(&current.slug),
                            },
                        )
                        .await?;
                    version = ActivityRepo::replace(txn, current.id, &write, current.version)
                        .await
                        .map_err(super::conflict_or)?;
                    self.record_import(
                        txn,
                        label,
                        &current,
                        ActivityEventType::Updated,
                        current.status,
                        "updateImportedActivity",
                        version,
                    )
                    .await?;
                    changed = true;
                }
                if item.cancelled && current.status == ActivityStatus::Published {
                    let v = ActivityRepo::set_status(
                        txn,
                        current.id,
                        version,
                        ActivityStatus::Cancelled,
                        Some(CANCELLED_REASON.into()),
                        false,
                    )
                    .await
                    .map_err(super::conflict_or)?;
                    self.record_import(
                        txn,
                        label,
                        &current,
                        ActivityEventType::Cancelled,
                        ActivityStatus::Cancelled,
                        "cancelImportedActivity",
                        v,
                    )
                    .await?;
                    report.cancelled += 1;
                } else if !item.cancelled
                    && known.gone
                    && current.status == ActivityStatus::Cancelled
                {
                    // Back in its source after leaving it: published again.
                    let v = ActivityRepo::set_status(
                        txn,
                        current.id,
                        version,
                        ActivityStatus::Published,
                        None,
                        false,
                    )
                    .await
                    .map_err(super::conflict_or)?;
                    self.record_import(
                        txn,
                        label,
                        &current,
                        ActivityEventType::Updated,
                        ActivityStatus::Published,
                        "restoreImportedActivity",
                        v,
                    )
                    .await?;
                    changed = true;
                }
                if changed {
                    report.updated += 1;
                } else if !item.cancelled {
                    report.unchanged += 1;
                }
                SourceRepo::upsert_item(
                    txn,
                    source.city_id,
                    &StoredItem {
                        content_hash: hash.clone(),
                        url: item.url.clone(),
                        gone: false,
                        ..known.clone()
                    },
                    true,
                )
                .await?;
            }
            Change::Gone(known) => {
                if self
                    .cancel_imported(
                        txn,
                        city_actor,
                        label,
                        known.activity_id,
                        GONE_REASON,
                        Some(today),
                    )
                    .await?
                {
                    report.cancelled += 1;
                }
                SourceRepo::upsert_item(
                    txn,
                    source.city_id,
                    &StoredItem {
                        gone: true,
                        ..known.clone()
                    },
                    true,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Cancels an imported activity if it is published and upcoming (ends
    /// on or after `today`, or has no date); a past one stays as it was.
    /// Returns whether it cancelled it.
    async fn cancel_imported(
        &self,
        txn: &DatabaseTransaction,
        _city_actor: &Actor,
        label: &str,
        id: ActivityId,
        reason: &str,
        today: Option<NaiveDate>,
    ) -> Result<bool, ServiceError> {
        let Some((current, deleted)) = ActivityRepo::find_for_update(txn, id).await? else {
            return Ok(false);
        };
        let last_day = current.end_date.or(current.start_date);
        let upcoming = match (last_day, today) {
            (Some(day), Some(today)) => day >= today,
            _ => true,
        };
        if deleted || current.status != ActivityStatus::Published || !upcoming {
            return Ok(false);
        }
        let version = ActivityRepo::set_status(
            txn,
            id,
            current.version,
            ActivityStatus::Cancelled,
            Some(reason.to_owned()),
            false,
        )
        .await
        .map_err(super::conflict_or)?;
        self.record_import(
            txn,
            label,
            &current,
            ActivityEventType::Cancelled,
            ActivityStatus::Cancelled,
            "cancelImportedActivity",
            version,
        )
        .await?;
        Ok(true)
    }

    /// The event and audit row of a change a source made to `current`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the event's and the audit row's facts"
    )]
    async fn record_import(
        &self,
        txn: &DatabaseTransaction,
        label: &str,
        current: &Activity,
        event_type: ActivityEventType,
        status: ActivityStatus,
        action: &str,
        version: i32,
    ) -> Result<(), ServiceError> {
        EventLog::append(
            txn,
            NewEvent {
                activity: current.id,
                event_type,
                actor: current.published_by,
                status,
                published_by: current.published_by,
            },
        )
        .await?;
        AuditRepo::record(
            txn,
            &AuditRepo::entry(label, action, AuditTarget::Activity(current.id))
                .versions(Some(current.version), version),
        )
        .await?;
        Ok(())
    }
}
