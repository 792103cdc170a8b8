//! Write services: each public method is one unit of work — validation,
//! permission check, the change, its audit record and its event — run in a
//! single transaction. A method that returns `Ok` has committed; one that
//! returns `Err` has changed nothing.

use cityhub_domain::timing::format_local_time;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use cityhub_domain::{
    Action, Activity, ActivityEventType, ActivityId, ActivityInput, ActivityPatch, ActivityStatus,
    Actor, Answer, AnswerRefused, Cities, City, CityId, CityInput, CityPatch, Denied,
    DocumentInput, FieldError, Invitation, Limits, Named, Naming, Participation, Policy, PublishAs,
    text,
};
use sea_orm::{ActiveModelTrait, DatabaseTransaction, EntityTrait, Set, TransactionTrait};

use cityhub_storage::StorageError;
use cityhub_storage::db::Db;
use cityhub_storage::entities::idempotency_key;
use cityhub_storage::repo::activity::{ActivityRepo, ActivityWrite, ReadScope};
use cityhub_storage::repo::audit::{AuditRepo, AuditTarget};
use cityhub_storage::repo::city::CityRepo;
use cityhub_storage::repo::events::{EventLog, NewEvent};
use cityhub_storage::repo::invitation::InvitationRepo;
use cityhub_storage::time::now_micros;

mod sources;

pub use sources::{CANCELLED_REASON, GONE_REASON, ImportItem, ImportReport, SourceRequest};

/// How many times a transaction is retried after a write race (a slug or
/// idempotency key taken meanwhile, a serialization failure).
const MAX_ATTEMPTS: u32 = 6;

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// An input broke a rule.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The actor may not do this.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// No such thing (or invisible to the actor).
    #[error("{0}")]
    NotFound(String),
    /// A version, slug, key or state conflict.
    #[error("{message}")]
    Conflict {
        /// What conflicted.
        message: String,
        /// The input concerned, if one is.
        field: Option<String>,
    },
    /// The activity was imported from its city's calendar: it is edited
    /// there, until the city detaches it (`detachFromSource`).
    #[error(
        "this activity is imported from its city's calendar and is edited at its source; detach it first (detachFromSource) to edit it here"
    )]
    Imported,
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<cityhub_domain::DomainError> for ServiceError {
    fn from(err: cityhub_domain::DomainError) -> Self {
        match err {
            cityhub_domain::DomainError::Invalid(e) => ServiceError::Invalid(e),
        }
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(err: sea_orm::DbErr) -> Self {
        ServiceError::Storage(err.into())
    }
}

impl ServiceError {
    fn conflict(message: impl Into<String>) -> Self {
        ServiceError::Conflict {
            message: message.into(),
            field: None,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, ServiceError::Storage(e) if e.is_unique_violation() || e.is_retryable())
    }
}

/// The audit name of an actor.
pub fn actor_label(actor: &Actor) -> String {
    match actor {
        Actor::Anonymous => "anonymous".into(),
        Actor::City { slug, .. } => format!("city:{slug}"),
        Actor::Secretariat => "secretariat".into(),
    }
}

/// The write side of the hub.
#[derive(Debug, Clone)]
pub struct HubService {
    db: Db,
    limits: Limits,
    policy: Policy,
    on_commit: Option<Arc<Notify>>,
    /// SQLite: publishes waiting for the writer, committed together.
    group: Option<Arc<GroupCommit>>,
}

/// Most publishes committed in one transaction.
const GROUP_MAX: usize = 64;

/// Group commit of publishes on SQLite (one writer at a time): whoever
/// holds the write lock takes every publish queued meanwhile and runs them
/// in one transaction (a publish refused before it writes changes nothing
/// and does not affect the others; one failing while it writes sends the
/// whole batch back to run one by one), with one commit and so one fsync
/// for all. Each is acknowledged only after that commit returned,
/// i.e. once the batch is durable (`synchronous = FULL`).
#[derive(Debug, Default)]
struct GroupCommit {
    queue: std::sync::Mutex<Vec<PublishJob>>,
}

/// What a publish committed: the new activity as inserted, or the id of
/// the one an idempotency key already named.
type Published = (ActivityId, Option<Activity>);

/// One publish's inputs, as they travel from the API through the
/// group-commit queue into a transaction.
#[derive(Clone)]
struct PublishRequest {
    actor: Actor,
    input: ActivityInput,
    mode: PublishAs,
    /// The idempotency key, if any.
    key: Option<String>,
    /// The input's fingerprint, when there is a key.
    hash: Option<String>,
}

/// A publish waiting for the writer.
struct PublishJob {
    request: PublishRequest,
    reply: tokio::sync::oneshot::Sender<Result<Published, ServiceError>>,
}

impl std::fmt::Debug for PublishJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishJob").finish_non_exhaustive()
    }
}

/// Runs `$body` (a call returning a future of `Result<_, ServiceError>`)
/// again while it fails with a retryable race, `MAX_ATTEMPTS` times in
/// all, after a short jittered exponential back-off (so writers that
/// collided do not retry in lockstep).
macro_rules! retrying {
    ($body:expr) => {{
        backon::Retryable::retry(|| $body, retry_backoff())
            .sleep(tokio::time::sleep)
            .when(ServiceError::retryable)
            .notify(|e: &ServiceError, after: std::time::Duration| {
                tracing::debug!(error = %e, ?after, "retrying a write after a race");
            })
            .await
    }};
}

/// The back-off between attempts of [`retrying!`]: 5 ms, then doubling,
/// with jitter.
fn retry_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(5))
        .with_max_delay(std::time::Duration::from_millis(200))
        .with_max_times(MAX_ATTEMPTS as usize - 1)
        .with_jitter()
}

impl HubService {
    /// A service over `db` with these limits and policy.
    pub fn new(db: Db, limits: Limits, policy: Policy) -> Self {
        let group = (db.backend() == sea_orm::DatabaseBackend::Sqlite)
            .then(|| Arc::new(GroupCommit::default()));
        Self {
            db,
            limits,
            policy,
            on_commit: None,
            group,
        }
    }

    /// Wakes `notify` after every committed write (the live event pump).
    pub fn with_commit_notify(mut self, notify: Arc<Notify>) -> Self {
        self.on_commit = Some(notify);
        self
    }

    async fn commit(&self, txn: DatabaseTransaction) -> Result<(), ServiceError> {
        txn.commit().await.map_err(StorageError::from)?;
        if let Some(notify) = &self.on_commit {
            notify.notify_one();
        }
        Ok(())
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn begin(&self) -> Result<DatabaseTransaction, ServiceError> {
        Ok(self.db.conn().begin().await.map_err(StorageError::from)?)
    }

    /// Publishes an activity as `actor`, public or as a draft (`mode`).
    /// With an idempotency key, the same key and input return the first
    /// result.
    #[tracing::instrument(name = "publish", skip_all, fields(idempotent = idempotency_key.is_some()))]
    pub async fn publish(
        &self,
        actor: &Actor,
        input: ActivityInput,
        mode: PublishAs,
        idempotency_key: Option<&str>,
    ) -> Result<Activity, ServiceError> {
        let action = if actor.city_id().is_some() || matches!(actor, Actor::Anonymous) {
            Action::Publish
        } else {
            Action::PublishForNetwork
        };
        self.policy.authorize(actor, action, None)?;
        // Prose is stored with LF line endings, whatever the client sent.
        let input = input.normalized();
        input.validate("input", &self.limits)?;
        if let Some(key) = idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(FieldError::new("idempotencyKey", "must be 1 to 200 characters").into());
        }
        let request = PublishRequest {
            hash: idempotency_key.map(|_| crate::fingerprint::fingerprint(&input, mode)),
            actor: actor.clone(),
            input,
            mode,
            key: idempotency_key.map(str::to_owned),
        };
        let (id, inserted) = match &self.group {
            Some(group) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                if let Ok(mut queue) = group.queue.lock() {
                    queue.push(PublishJob {
                        request: request.clone(),
                        reply,
                    });
                }
                self.lead_group(group).await;
                match answer.await {
                    Ok(result) => result?,
                    // Not queued (poisoned lock) or dropped: run it alone.
                    Err(_) => retrying!(self.try_publish(&request))?,
                }
            }
            None => retrying!(self.try_publish(&request))?,
        };
        // A new activity is answered from the insert itself: no read-back.
        match inserted {
            Some(activity) => Ok(activity),
            None => self.load(id).await,
        }
    }

    /// Takes the write lock and commits every queued publish (ours may
    /// already have been committed by the previous holder).
    async fn lead_group(&self, group: &GroupCommit) {
        let guard = self.db.write_guard().await;
        let jobs: Vec<PublishJob> = match group.queue.lock() {
            Ok(mut queue) => {
                let n = queue.len().min(GROUP_MAX);
                queue.drain(..n).collect()
            }
            Err(_) => Vec::new(),
        };
        if jobs.is_empty() {
            return;
        }
        let rest = self.run_group(jobs).await;
        drop(guard);
        // Publishes that failed with a race, or a batch whose commit
        // failed: each runs on its own, as without group commit.
        for job in rest {
            let result = retrying!(self.try_publish(&job.request));
            let _ = job.reply.send(result);
        }
    }

    /// Runs a batch in one transaction; answers the publishes it committed
    /// or refused, and returns those to run again on their own. No
    /// savepoint per publish: on SQLite everything a publish does before
    /// its insert only reads, so one refused there changed nothing; one
    /// that fails after it started writing aborts the batch, and every
    /// publish of it runs again alone (none was answered yet).
    async fn run_group(&self, jobs: Vec<PublishJob>) -> Vec<PublishJob> {
        let Ok(txn) = self.begin().await else {
            return jobs;
        };
        let mut done = Vec::with_capacity(jobs.len());
        let mut again = Vec::new();
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            let mut wrote = false;
            match self.publish_in(&txn, &job.request, &mut wrote).await {
                Ok(published) => done.push((job, Ok(published))),
                Err(e) if wrote => {
                    tracing::debug!(error = %e, "a grouped publish failed while writing; running the batch one by one");
                    let _ = txn.rollback().await;
                    again.extend(done.into_iter().map(|(job, _)| job));
                    again.push(job);
                    again.extend(jobs);
                    return again;
                }
                Err(e) if e.retryable() => again.push(job),
                Err(e) => done.push((job, Err(e))),
            }
        }
        if let Err(e) = self.commit(txn).await {
            tracing::warn!(error = %e, "a group commit failed; running its publishes one by one");
            again.extend(done.into_iter().map(|(job, _)| job));
            return again;
        }
        for (job, result) in done {
            let _ = job.reply.send(result);
        }
        again
    }

    async fn try_publish(&self, request: &PublishRequest) -> Result<Published, ServiceError> {
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        let published = self.publish_in(&txn, request, &mut false).await?;
        self.commit(txn).await?;
        Ok(published)
    }

    /// A publish's statements, in `txn`; `wrote` is set once the first
    /// statement that changes anything ran (everything before only reads).
    async fn publish_in(
        &self,
        txn: &DatabaseTransaction,
        request: &PublishRequest,
        wrote: &mut bool,
    ) -> Result<Published, ServiceError> {
        let PublishRequest {
            actor,
            input,
            mode,
            key,
            hash,
        } = request;
        let label = actor_label(actor);
        if let (Some(key), Some(_)) = (key, hash) {
            let existing = idempotency_key::Entity::find_by_id((label.clone(), key.to_owned()))
                .one(txn)
                .await?;
            if let Some(found) = existing {
                return if crate::fingerprint::matches(&found.request_hash, input, *mode) {
                    Ok((ActivityId(found.activity_id), None))
                } else {
                    Err(ServiceError::Conflict {
                        message: "this idempotency key was used with a different input".into(),
                        field: Some("idempotencyKey".into()),
                    })
                };
            }
        }
        let publisher = actor.city_id();
        let write = self
            .resolve(
                txn,
                input.clone(),
                Resolving {
                    publisher,
                    current: &[],
                    naming: Naming::of(actor),
                    path: "input",
                    current_slug: None,
                },
            )
            .await?;
        let status = mode.status();
        *wrote = true;
        let activity = ActivityRepo::insert_returning(txn, &write, status, publisher).await?;
        let id = activity.id;
        if let (Some(key), Some(hash)) = (key, hash) {
            idempotency_key::ActiveModel {
                actor: Set(label.clone()),
                key: Set(key.to_owned()),
                request_hash: Set(hash.to_owned()),
                activity_id: Set(id.get()),
                created_at: Set(now_micros()),
            }
            .insert(txn)
            .await?;
        }
        EventLog::append(
            txn,
            NewEvent {
                activity: id,
                event_type: ActivityEventType::Published,
                actor: publisher,
                status,
                published_by: publisher,
            },
        )
        .await?;
        AuditRepo::record(
            txn,
            &AuditRepo::entry(&label, "publishActivity", AuditTarget::Activity(id))
                .versions(None, 1),
        )
        .await?;
        Ok((id, Some(activity)))
    }

    /// Resolves slugs to ids, settles the named cities' invitations (the
    /// domain's rule) and picks the slug, in the transaction.
    async fn resolve(
        &self,
        txn: &DatabaseTransaction,
        input: ActivityInput,
        resolving: Resolving<'_>,
    ) -> Result<ActivityWrite, ServiceError> {
        let Resolving {
            publisher,
            current,
            naming,
            path,
            current_slug,
        } = resolving;
        let mut wanted: Vec<String> = input.co_hosts.clone();
        wanted.extend(input.venue_city.clone());
        let ids = CityRepo::ids_by_slugs(txn, &wanted).await?;
        let venue_city_id = match &input.venue_city {
            Some(slug) => Some(*ids.get(slug).ok_or_else(|| {
                FieldError::new(
                    format!("{path}.venueCity"),
                    format!("no member city has the slug '{slug}'"),
                )
            })?),
            None => None,
        };
        let mut co_hosts: Vec<CityId> = Vec::with_capacity(input.co_hosts.len());
        for (i, slug) in input.co_hosts.iter().enumerate() {
            let id = ids.get(slug).ok_or_else(|| {
                FieldError::new(
                    format!("{path}.coHosts[{i}]"),
                    format!("no member city has the slug '{slug}'"),
                )
            })?;
            co_hosts.push(*id);
        }
        let cities = Named {
            co_hosts,
            venue: venue_city_id,
        }
        .settle(publisher, current, naming);
        let slug = match (&input.slug, current_slug) {
            (Some(wanted), Some(current)) if wanted == current => wanted.clone(),
            (Some(wanted), _) => {
                if ActivityRepo::slug_taken(txn, wanted).await? {
                    return Err(ServiceError::Conflict {
                        message: format!("the slug '{wanted}' is taken"),
                        field: Some(format!("{path}.slug")),
                    });
                }
                wanted.clone()
            }
            (None, Some(current)) => current.to_owned(),
            (None, None) => self.free_slug(txn, &input).await?,
        };
        Ok(ActivityWrite::new(input, slug, cities))
    }

    async fn free_slug(
        &self,
        txn: &DatabaseTransaction,
        input: &ActivityInput,
    ) -> Result<String, ServiceError> {
        let base = self.slug_base(&input.title);
        ActivityRepo::lock_slug_base(txn, &base).await?;
        // One query for every slug of this family (`base`, `base-2`, …).
        let taken: std::collections::HashSet<String> = ActivityRepo::slugs_with_base(txn, &base)
            .await?
            .into_iter()
            .collect();
        Ok(first_free_slug(base, &taken))
    }

    /// The family of slugs a title's activity takes one of (`base`,
    /// `base-2`, …).
    fn slug_base(&self, title: &str) -> String {
        let max = self.limits.slug_chars.saturating_sub(8).max(8);
        let base = text::slugify(title, max);
        if base.is_empty() {
            "activity".into()
        } else {
            base
        }
    }

    /// Loads an activity for the response of a committed write.
    async fn load(&self, id: ActivityId) -> Result<Activity, ServiceError> {
        ActivityRepo::find_by_id(self.db.conn(), ReadScope::All, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound("activity not found".into()))
    }

    /// Locks and checks an activity for `action` by `actor`; returns it
    /// with its invitations as they stand (`invitation::standing`).
    async fn checked(
        &self,
        txn: &DatabaseTransaction,
        actor: &Actor,
        action: Action,
        id: ActivityId,
        expected_version: Option<i32>,
    ) -> Result<(Activity, Vec<Invitation>), ServiceError> {
        let not_found = || ServiceError::NotFound(format!("no activity with id {id}"));
        let (activity, deleted) = ActivityRepo::find_for_update(txn, id)
            .await?
            .ok_or_else(not_found)?;
        if deleted {
            return Err(not_found());
        }
        let invitations =
            cityhub_domain::standing(&activity, &InvitationRepo::of_activity(txn, id).await?);
        match self
            .policy
            .authorize(actor, action, Some(&activity.facts(&invitations)))
        {
            Ok(()) => {}
            Err(Denied::Hidden) => return Err(not_found()),
            Err(denied) => return Err(denied.into()),
        }
        if let Some(expected) = expected_version
            && expected != activity.version
        {
            return Err(ServiceError::Conflict {
                message: format!(
                    "expected version {expected}, but the activity is at version {}",
                    activity.version
                ),
                field: Some("expectedVersion".into()),
            });
        }
        Ok((activity, invitations))
    }

    /// Applies `patch` to an activity the actor hosts.
    pub async fn update(
        &self,
        actor: &Actor,
        id: ActivityId,
        patch: ActivityPatch,
        expected_version: Option<i32>,
    ) -> Result<Activity, ServiceError> {
        self.policy.authorize(actor, Action::ReadNetwork, None)?;
        // Prose is stored with LF line endings, whatever the client sent.
        let patch = patch.normalized();
        retrying!(self.try_update(actor, id, patch.clone(), expected_version))?;
        self.load(id).await
    }

    async fn try_update(
        &self,
        actor: &Actor,
        id: ActivityId,
        patch: ActivityPatch,
        expected_version: Option<i32>,
    ) -> Result<(), ServiceError> {
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        let (current, invitations) = self
            .checked(&txn, actor, Action::Update, id, expected_version)
            .await?;
        self.refuse_imported(&txn, id).await?;
        let before = self.to_input(&txn, &current, &invitations).await?;
        let next = patch.apply(before.clone());
        next.validate("patch", &self.limits)?;
        if next == before {
            // Nothing changes: no new version, no event.
            return Ok(());
        }
        let write = self
            .resolve(
                &txn,
                next,
                Resolving {
                    publisher: current.published_by,
                    current: &invitations,
                    naming: Naming::of(actor),
                    path: "patch",
                    current_slug: Some(&current.slug),
                },
            )
            .await?;
        let version = ActivityRepo::replace(&txn, id, &write, current.version)
            .await
            .map_err(conflict_or)?;
        EventLog::append(
            &txn,
            NewEvent {
                activity: id,
                event_type: ActivityEventType::Updated,
                actor: actor.city_id(),
                status: current.status,
                published_by: current.published_by,
            },
        )
        .await?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(
                &actor_label(actor),
                "updateActivity",
                AuditTarget::Activity(id),
            )
            .versions(Some(current.version), version),
        )
        .await?;
        self.commit(txn).await?;
        Ok(())
    }

    /// Rebuilds the input an activity would be published with: the cities
    /// it names are those of its invitations not declined (the domain's
    /// `Named::of`), whether they accepted yet or not.
    async fn to_input(
        &self,
        db: &impl cityhub_storage::db::ReadConnection,
        a: &Activity,
        invitations: &[Invitation],
    ) -> Result<ActivityInput, ServiceError> {
        let named = Named::of(a, invitations);
        let mut ids: Vec<CityId> = named.co_hosts.clone();
        ids.extend(named.venue);
        let cities: HashMap<CityId, City> = CityRepo::find_by_ids(db, &ids).await?;
        let slug_of = |id: &CityId| cities.get(id).map(|c| c.slug.clone());
        let documents = ActivityRepo::documents_of(db, &[a.id])
            .await?
            .remove(&a.id)
            .unwrap_or_default();
        Ok(ActivityInput {
            kind: a.kind,
            title: a.title.clone(),
            summary: a.summary.clone(),
            description: a.description.clone(),
            format: a.format,
            start_date: a.start_date,
            end_date: a.end_date,
            date_precision: a.date_precision,
            venue: a.venue.clone(),
            venue_city: named.venue.as_ref().and_then(slug_of),
            co_hosts: named.co_hosts.iter().filter_map(slug_of).collect(),
            organizations: a.organizations.clone(),
            fields: a.fields.clone(),
            themes: a.themes.clone(),
            objectives: a.objectives.clone(),
            documents: documents
                .into_iter()
                .map(|d| DocumentInput {
                    kind: d.kind,
                    title: d.title,
                    url: d.url,
                    issued_on: d.issued_on,
                    issued_precision: d.issued_precision,
                    editors: d.editors,
                })
                .collect(),
            slug: Some(a.slug.clone()),
            start_time: a.timing.map(|t| format_local_time(t.start_time)),
            end_time: a.timing.and_then(|t| t.end_time).map(format_local_time),
            time_zone: a.timing.map(|t| t.zone_name().to_owned()),
        })
    }

    /// Makes a draft public.
    pub async fn publish_draft(
        &self,
        actor: &Actor,
        id: ActivityId,
        expected_version: Option<i32>,
    ) -> Result<Activity, ServiceError> {
        self.policy.authorize(actor, Action::ReadNetwork, None)?;
        retrying!(self.try_status(actor, id, expected_version, StatusChange::Publish))?;
        self.load(id).await
    }

    /// Cancels a published activity the actor hosts.
    pub async fn cancel(
        &self,
        actor: &Actor,
        id: ActivityId,
        reason: Option<String>,
    ) -> Result<Activity, ServiceError> {
        self.policy.authorize(actor, Action::ReadNetwork, None)?;
        // A reason is prose: stored with LF line endings.
        let reason = reason.map(|r| cityhub_domain::chars::normalize_newlines(&r).into_owned());
        if let Some(r) = &reason
            && r.chars().count() > self.limits.text_chars
        {
            return Err(FieldError::new(
                "reason",
                format!("must be at most {} characters", self.limits.text_chars),
            )
            .into());
        }
        retrying!(self.try_status(actor, id, None, StatusChange::Cancel(reason.clone())))?;
        self.load(id).await
    }

    /// Deletes an activity the actor published (soft: it leaves every read).
    pub async fn delete(&self, actor: &Actor, id: ActivityId) -> Result<ActivityId, ServiceError> {
        self.policy.authorize(actor, Action::ReadNetwork, None)?;
        retrying!(self.try_status(actor, id, None, StatusChange::Delete))?;
        Ok(id)
    }

    async fn try_status(
        &self,
        actor: &Actor,
        id: ActivityId,
        expected: Option<i32>,
        change: StatusChange,
    ) -> Result<(), ServiceError> {
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        let (action, name) = match change {
            StatusChange::Publish => (Action::Update, "publishDraft"),
            StatusChange::Cancel(_) => (Action::Cancel, "cancelActivity"),
            StatusChange::Delete => (Action::Delete, "deleteActivity"),
        };
        let (current, _) = self.checked(&txn, actor, action, id, expected).await?;
        self.refuse_imported(&txn, id).await?;
        let (version, event, status) = match change {
            StatusChange::Publish => {
                if current.status != ActivityStatus::Draft {
                    return Err(ServiceError::conflict("the activity is not a draft"));
                }
                let v = ActivityRepo::set_status(
                    &txn,
                    id,
                    current.version,
                    ActivityStatus::Published,
                    None,
                    true,
                )
                .await
                .map_err(conflict_or)?;
                (v, ActivityEventType::Published, ActivityStatus::Published)
            }
            StatusChange::Cancel(reason) => {
                if current.status != ActivityStatus::Published {
                    return Err(ServiceError::conflict(match current.status {
                        ActivityStatus::Cancelled => "the activity is already cancelled",
                        _ => "a draft cannot be cancelled; delete it instead",
                    }));
                }
                let v = ActivityRepo::set_status(
                    &txn,
                    id,
                    current.version,
                    ActivityStatus::Cancelled,
                    reason,
                    false,
                )
                .await
                .map_err(conflict_or)?;
                (v, ActivityEventType::Cancelled, ActivityStatus::Cancelled)
            }
            StatusChange::Delete => {
                let v = ActivityRepo::soft_delete(&txn, id, current.version)
                    .await
                    .map_err(conflict_or)?;
                (v, ActivityEventType::Deleted, current.status)
            }
        };
        EventLog::append(
            &txn,
            NewEvent {
                activity: id,
                event_type: event,
                actor: actor.city_id(),
                status,
                published_by: current.published_by,
            },
        )
        .await?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(&actor_label(actor), name, AuditTarget::Activity(id))
                .versions(Some(current.version), version),
        )
        .await?;
        self.commit(txn).await?;
        Ok(())
    }

    /// Adds the actor's city as a participant, or removes it.
    pub async fn participate(
        &self,
        actor: &Actor,
        id: ActivityId,
        participation: Participation,
    ) -> Result<Activity, ServiceError> {
        let action = participation.action();
        self.policy.authorize(actor, Action::ReadNetwork, None)?;
        let city = acting_city(actor)?;
        retrying!(async move {
            let _guard = self.db.write_guard().await;
            let txn = self.begin().await?;
            let (current, _) = self.checked(&txn, actor, action, id, None).await?;
            if participation == Participation::Join && current.status != ActivityStatus::Published {
                return Err(ServiceError::conflict(
                    "only a published activity can be joined",
                ));
            }
            let version =
                ActivityRepo::set_participant(&txn, id, current.version, city, participation)
                    .await
                    .map_err(conflict_or)?;
            if version != current.version {
                record_city_change(
                    &txn,
                    actor,
                    city,
                    &current,
                    participation.mutation(),
                    version,
                )
                .await?;
            }
            self.commit(txn).await?;
            Ok::<(), ServiceError>(())
        })?;
        self.load(id).await
    }

    /// The actor city's answer to its invitation to an activity: accepting
    /// makes the activity the city's (a host, or its venue city);
    /// declining refuses it, or leaves it after accepting. One
    /// transaction with an `UPDATED` event and the audit row. An activity
    /// the actor cannot see is `NotFound`; a city not invited (or no city)
    /// is `Denied`; an answer already given is a `Conflict`.
    pub async fn answer(
        &self,
        actor: &Actor,
        id: ActivityId,
        answer: Answer,
    ) -> Result<Activity, ServiceError> {
        self.policy.authorize(actor, Action::ReadNetwork, None)?;
        let city = acting_city(actor)?;
        retrying!(async move {
            let _guard = self.db.write_guard().await;
            let txn = self.begin().await?;
            let (current, invitations) = self
                .checked(&txn, actor, Action::AnswerInvitation, id, None)
                .await?;
            let cities =
                Cities::answer(&current, &invitations, city, answer).map_err(|refused| {
                    match refused {
                        AnswerRefused::NotInvited => ServiceError::Denied(Denied::Forbidden),
                        AnswerRefused::AlreadyAccepted | AnswerRefused::AlreadyDeclined => {
                            ServiceError::conflict(refused.to_string())
                        }
                    }
                })?;
            // The row is locked (PostgreSQL) or the writer alone (SQLite):
            // the version check guards a write that bypassed both.
            let version = ActivityRepo::set_cities(&txn, id, current.version, &cities)
                .await
                .map_err(|e| match e {
                    StorageError::Conflict(message) => ServiceError::conflict(message),
                    other => other.into(),
                })?;
            record_city_change(&txn, actor, city, &current, answer.mutation(), version).await?;
            self.commit(txn).await?;
            Ok::<(), ServiceError>(())
        })?;
        self.load(id).await
    }

    /// Registers a member city (secretariat only).
    pub async fn create_city(&self, actor: &Actor, input: CityInput) -> Result<City, ServiceError> {
        self.policy.authorize(actor, Action::ManageCities, None)?;
        input.validate("input", &self.limits)?;
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        let city = CityRepo::insert(&txn, &input).await.map_err(|e| match e {
            StorageError::Conflict(message) => ServiceError::Conflict {
                message,
                field: Some("input.slug".into()),
            },
            other => other.into(),
        })?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(
                &actor_label(actor),
                "createCity",
                AuditTarget::City(&city.slug),
            ),
        )
        .await?;
        self.commit(txn).await?;
        Ok(city)
    }

    /// Changes a member city (secretariat only).
    pub async fn update_city(
        &self,
        actor: &Actor,
        slug: &str,
        patch: CityPatch,
    ) -> Result<City, ServiceError> {
        self.policy.authorize(actor, Action::ManageCities, None)?;
        let _guard = self.db.write_guard().await;
        let txn = self.begin().await?;
        let current = CityRepo::find_by_slug(&txn, slug)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no city with slug '{slug}'")))?;
        let next = patch.apply(CityInput {
            slug: current.slug.clone(),
            name: current.name.clone(),
            country: current.country.clone(),
            fields: current.fields.clone(),
            member_since: current.member_since,
            website: current.website.clone(),
            latitude: current.latitude,
            longitude: current.longitude,
        });
        next.validate("patch", &self.limits)?;
        let city = CityRepo::update(&txn, current.id, &next).await?;
        AuditRepo::record(
            &txn,
            &AuditRepo::entry(&actor_label(actor), "updateCity", AuditTarget::City(slug)),
        )
        .await?;
        self.commit(txn).await?;
        Ok(city)
    }
}

/// What [`HubService::resolve`] needs besides the input.
struct Resolving<'a> {
    /// The activity's publishing city (`None`: the secretariat).
    publisher: Option<CityId>,
    /// The activity's invitations now (none for a new activity).
    current: &'a [Invitation],
    /// How newly named cities are asked.
    naming: Naming,
    /// The input's path, for errors (`input`, `patch`).
    path: &'a str,
    /// The activity's slug now, for an update; for a new activity, the
    /// slug already reserved for it (an import reserves its batch's slugs
    /// at once); `None`: pick a free one.
    current_slug: Option<&'a str>,
}

enum StatusChange {
    Publish,
    Cancel(Option<String>),
    Delete,
}

fn conflict_or(err: StorageError) -> ServiceError {
    match err {
        StorageError::Conflict(message) => ServiceError::Conflict {
            message,
            field: Some("expectedVersion".into()),
        },
        other => other.into(),
    }
}

/// The city a city's own action (joining, leaving, answering an
/// invitation) is taken for: the actor's; anonymous callers and the
/// secretariat have none.
fn acting_city(actor: &Actor) -> Result<CityId, ServiceError> {
    match (actor.city_id(), actor) {
        (Some(city), _) => Ok(city),
        (None, Actor::Anonymous) => Err(Denied::Unauthenticated.into()),
        (None, _) => Err(ServiceError::Denied(Denied::Forbidden)),
    }
}

/// The `UPDATED` event and the audit row of a change `city` made to
/// `current` (now at `version`) with `mutation`, in the change's
/// transaction.
async fn record_city_change(
    txn: &DatabaseTransaction,
    actor: &Actor,
    city: CityId,
    current: &Activity,
    mutation: &str,
    version: i32,
) -> Result<(), ServiceError> {
    EventLog::append(
        txn,
        NewEvent {
            activity: current.id,
            event_type: ActivityEventType::Updated,
            actor: Some(city),
            status: current.status,
            published_by: current.published_by,
        },
    )
    .await?;
    AuditRepo::record(
        txn,
        &AuditRepo::entry(
            &actor_label(actor),
            mutation,
            AuditTarget::Activity(current.id),
        )
        .versions(Some(current.version), version),
    )
    .await?;
    Ok(())
}

/// The first slug of `base`'s family that `taken` does not hold.
fn first_free_slug(base: String, taken: &std::collections::HashSet<String>) -> String {
    if !taken.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or(base)
}
