//! Running sources: one run is fetch → read → reconcile → record, with
//! the source's lease held; the scheduler claims due sources and runs
//! them in the background.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use cityhub_app::service::{HubService, ImportItem, ServiceError};
use cityhub_domain::{Actor, SkippedItem, Source, SourceId, SourceKind, SourceStatus};
use cityhub_storage::repo::source::RunOutcome;
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fetch::{FetchError, Fetched, Fetcher, Validators};
use crate::settings::SourceSettings;

/// Why the sources could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is wrong.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// The hub's sources: runs on demand and on schedule. Cheap to clone.
#[derive(Clone)]
pub struct Sources {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

struct Inner {
    service: HubService,
    settings: SourceSettings,
    fetcher: Fetcher,
    /// This instance's name in leases.
    owner: String,
    interval: Duration,
    max_backoff: Duration,
    /// One request at a time per host.
    hosts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Runs at once on this instance.
    runs: Semaphore,
    /// Runs ended on this instance, by final status (for the metrics).
    ended: Mutex<HashMap<String, u64>>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Sources {
    /// The sources of the hub `service` writes to. Runs started by
    /// [`Sources::sync`] and the scheduler are tasks of `tasks` and stop
    /// with `stop`.
    pub fn new(
        service: HubService,
        settings: SourceSettings,
        stop: CancellationToken,
        tasks: TaskTracker,
    ) -> Result<Self, RunError> {
        settings.validate()?;
        let fetcher = Fetcher::new(&settings)?;
        Ok(Self {
            inner: Arc::new(Inner {
                interval: settings.interval()?,
                max_backoff: settings.max_backoff()?,
                runs: Semaphore::new(settings.max_concurrent_runs),
                service,
                fetcher,
                owner: uuid::Uuid::new_v4().to_string(),
                hosts: Mutex::new(HashMap::new()),
                ended: Mutex::new(HashMap::new()),
                settings,
                stop,
                tasks,
            }),
        })
    }

    /// Runs ended on this instance so far, by final status (`OK`,
    /// `NOT_MODIFIED`, `PARTIAL`, `FAILED`).
    #[must_use]
    pub fn run_counts(&self) -> Vec<(String, u64)> {
        let ended = cityhub_domain::sync::lock(&self.inner.ended);
        ended.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> &SourceSettings {
        &self.inner.settings
    }

    /// When a newly connected source's first run is due: now.
    #[must_use]
    pub fn first_run_at(&self) -> i64 {
        Utc::now().timestamp_micros()
    }

    fn lease_micros(&self) -> i64 {
        i64::try_from(self.inner.settings.lease_secs)
            .unwrap_or(i64::MAX / 2_000_000)
            .saturating_mul(1_000_000)
    }

    /// Runs a source now, for `actor` (its city or the secretariat).
    /// Waits for the run up to `sources.sync_wait_ms`, then answers with
    /// the source as it stands (`RUNNING` if the run goes on). A source
    /// another run holds is not fetched twice: the answer says `RUNNING`.
    pub async fn sync(&self, actor: &Actor, id: SourceId) -> Result<Source, ServiceError> {
        let service = &self.inner.service;
        let source = service.source(actor, id).await?;
        if source.paused {
            return Err(ServiceError::Conflict {
                message: "the source is paused; resume it first".into(),
                field: Some("id".into()),
            });
        }
        if service
            .claim_source(id, &self.inner.owner, self.lease_micros())
            .await?
        {
            let this = self.clone();
            let run = self
                .inner
                .tasks
                .spawn(async move { this.run_claimed(id).await });
            let wait = Duration::from_millis(self.inner.settings.sync_wait_ms);
            let _ = tokio::time::timeout(wait, run).await;
        }
        service.source(actor, id).await
    }

    /// Runs a source now and waits for the whole run (the command line).
    /// A source another run holds is not fetched twice: this waits for
    /// that run to end instead.
    pub async fn run_now(&self, actor: &Actor, id: SourceId) -> Result<Source, ServiceError> {
        let service = &self.inner.service;
        service.source(actor, id).await?;
        if service
            .claim_source(id, &self.inner.owner, self.lease_micros())
            .await?
        {
            self.run_claimed(id).await;
        }
        loop {
            let source = service.source(actor, id).await?;
            if source.last_status != SourceStatus::Running
                || source.lease_until.is_none_or(|until| until < Utc::now())
            {
                return Ok(source);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs every due source once, now, and waits for the runs (the CLI's
    /// `cityhub source sync` without an id, and tests).
    pub async fn run_due(&self) -> Result<usize, ServiceError> {
        let mut runs = Vec::new();
        while let Some(source) = self
            .inner
            .service
            .claim_due_source(&self.inner.owner, self.lease_micros())
            .await?
        {
            let this = self.clone();
            runs.push(
                self.inner
                    .tasks
                    .spawn(async move { this.run_claimed(source.id).await }),
            );
        }
        let count = runs.len();
        for run in runs {
            let _ = run.await;
        }
        Ok(count)
    }

    /// Starts the scheduler: every `sources.poll_interval_ms` it claims
    /// the due sources (each by one instance only) and runs them, at most
    /// `sources.max_concurrent_runs` at once, until `stop`.
    pub fn start(&self) {
        let this = self.clone();
        self.inner.tasks.spawn(async move { this.schedule().await });
    }

    async fn schedule(self) {
        let poll = Duration::from_millis(self.inner.settings.poll_interval_ms);
        loop {
            tokio::select! {
                () = self.inner.stop.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
            loop {
                let Ok(permit) = self.inner.runs.try_acquire() else {
                    break;
                };
                match self
                    .inner
                    .service
                    .claim_due_source(&self.inner.owner, self.lease_micros())
                    .await
                {
                    Ok(Some(source)) => {
                        let this = self.clone();
                        permit.forget();
                        self.inner.tasks.spawn(async move {
                            this.run_claimed(source.id).await;
                            this.inner.runs.add_permits(1);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "sources: cannot claim a due source");
                        break;
                    }
                }
            }
        }
    }

    fn host_lock(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let mut hosts = cityhub_domain::sync::lock(&self.inner.hosts);
        hosts.retain(|_, lock| Arc::strong_count(lock) > 1);
        hosts.entry(host).or_default().clone()
    }

    /// Runs a source this instance holds the lease of, and records how it
    /// went. Never panics on bad input; every failure ends in the record.
    async fn run_claimed(&self, id: SourceId) {
        let service = &self.inner.service;
        let source = match cityhub_storage::repo::source::SourceRepo::find(service.db().conn(), id)
            .await
        {
            Ok(Some(source)) => source,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, source = %id, "sources: cannot load a claimed source");
                return;
            }
        };
        let (outcome, skipped) = {
            let lock = self.host_lock(&source.url);
            let _one_per_host = lock.lock().await;
            tokio::select! {
                result = self.run(&source) => result,
                () = self.inner.stop.cancelled() => (self.failed(&source, "the hub stopped during the run".into(), None), None),
            }
        };
        if let Err(e) = service
            .finish_source_run(id, &self.inner.owner, &outcome, skipped.as_deref())
            .await
        {
            tracing::warn!(error = %e, source = %id, "sources: cannot record a run");
        }
        {
            let mut ended = cityhub_domain::sync::lock(&self.inner.ended);
            *ended.entry(outcome.status.to_string()).or_default() += 1;
        }
        tracing::info!(source = %id, status = %outcome.status, error = ?outcome.error, "sources: run ended");
    }

    fn next_ok(&self) -> i64 {
        (Utc::now() + self.inner.interval).timestamp_micros()
    }

    fn failed(&self, source: &Source, error: String, retry_after: Option<Duration>) -> RunOutcome {
        let failures = source.failures.saturating_add(1);
        // Exponential back-off from the interval, with jitter, capped;
        // never sooner than the server asked.
        let base = self.inner.interval.as_secs_f64() * 2f64.powi(failures.clamp(0, 16) - 1);
        let capped = base.min(self.inner.max_backoff.as_secs_f64());
        let jittered = capped * rand::thread_rng().gen_range(0.5..=1.0);
        let wait = Duration::from_secs_f64(jittered)
            .max(self.inner.settings.min_interval().unwrap_or_default())
            .max(retry_after.unwrap_or_default().min(self.inner.max_backoff));
        RunOutcome {
            status: SourceStatus::Failed,
            error: Some(error),
            changed: false,
            etag: None,
            last_modified: None,
            body_hash: None,
            replace_validators: false,
            next_run_at: (Utc::now() + wait).timestamp_micros(),
            failures,
        }
    }

    fn not_modified(&self, validators: Option<(Validators, String)>) -> RunOutcome {
        let replace = validators.is_some();
        let (validators, hash) = validators.unwrap_or_default();
        RunOutcome {
            status: SourceStatus::NotModified,
            error: None,
            changed: false,
            etag: validators.etag,
            last_modified: validators.last_modified,
            body_hash: (!hash.is_empty()).then_some(hash),
            replace_validators: replace,
            next_run_at: self.next_ok(),
            failures: 0,
        }
    }

    async fn run(&self, source: &Source) -> (RunOutcome, Option<Vec<SkippedItem>>) {
        let validators = Validators {
            etag: source.etag.clone(),
            last_modified: source.last_modified.clone(),
        };
        let fetched = match self.inner.fetcher.fetch(&source.url, &validators).await {
            Ok(fetched) => fetched,
            Err(e) => {
                let retry_after = e.retry_after();
                return (self.failed(source, e.to_string(), retry_after), None);
            }
        };
        let (body, validators) = match fetched {
            Fetched::NotModified => return (self.not_modified(None), None),
            Fetched::Body {
                body, validators, ..
            } => (body, validators),
        };
        let hash = hex::encode(Sha256::digest(&body));
        if source.body_hash.as_deref() == Some(hash.as_str()) {
            return (self.not_modified(Some((validators, hash))), None);
        }
        let text = String::from_utf8_lossy(&body);
        let read = match source.kind {
            SourceKind::Icalendar => self.read_icalendar(&text),
            SourceKind::JsonLd => self.read_jsonld(&text),
        };
        let (items, mut skipped, unreadable) = match read {
            Ok(read) => read,
            Err(message) => return (self.failed(source, message, None), None),
        };
        let limits = self.inner.service.limits().clone();
        let mut imports: Vec<ImportItem> = Vec::with_capacity(items.len());
        let mut complete = true;
        for item in items {
            if imports.len() >= self.inner.settings.max_items {
                complete = false;
                skipped.push(SkippedItem {
                    uid: item.key,
                    reason: format!(
                        "the source has more than {} items (sources.max_items)",
                        self.inner.settings.max_items
                    ),
                });
                continue;
            }
            match item.to_import(&source.defaults, &limits) {
                Ok(import) => imports.push(import),
                Err(skip) => skipped.push(skip),
            }
        }
        let keep: HashSet<String> = skipped
            .iter()
            .map(|s| s.uid.clone())
            .chain(unreadable)
            .collect();
        let today = Utc::now().date_naive();
        let report = match self
            .inner
            .service
            .import_items(source, imports, &keep, complete, today)
            .await
        {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!(error = %e, source = %source.id, "sources: an import failed");
                let message = match e {
                    ServiceError::Storage(_) => {
                        "the import could not be written; it will be retried".to_owned()
                    }
                    other => other.to_string(),
                };
                return (self.failed(source, message, None), None);
            }
        };
        skipped.extend(report.skipped.iter().cloned());
        let status = if skipped.is_empty() {
            SourceStatus::Ok
        } else {
            SourceStatus::Partial
        };
        let error = (!skipped.is_empty()).then(|| {
            format!(
                "{} item(s) were not imported; skippedItems says why",
                skipped.len()
            )
        });
        let outcome = RunOutcome {
            status,
            error,
            changed: report.changed(),
            etag: validators.etag,
            last_modified: validators.last_modified,
            body_hash: Some(hash),
            replace_validators: true,
            next_run_at: self.next_ok(),
            failures: 0,
        };
        (outcome, Some(skipped))
    }

    #[expect(clippy::type_complexity, reason = "items, skipped, unreadable keys")]
    fn read_icalendar(
        &self,
        text: &str,
    ) -> Result<(Vec<crate::item::Item>, Vec<SkippedItem>, HashSet<String>), String> {
        let now = Utc::now();
        let window = chrono::Duration::days(i64::from(self.inner.settings.recurrence_window_days));
        let expansion = crate::ical::Expansion {
            from: now - window,
            to: now + window,
            max_instances: self.inner.settings.max_instances_per_event,
        };
        let parsed = crate::ical::parse(text, &expansion).map_err(|e| e.0)?;
        Ok((parsed.items, parsed.skipped, parsed.unreadable))
    }

    #[expect(clippy::type_complexity, reason = "items, skipped, unreadable keys")]
    fn read_jsonld(
        &self,
        text: &str,
    ) -> Result<(Vec<crate::item::Item>, Vec<SkippedItem>, HashSet<String>), String> {
        let parsed = crate::jsonld::parse(text);
        if parsed.items.is_empty() && parsed.skipped.is_empty() {
            // A page that carries no event at all is more likely a changed
            // or broken page than a calendar emptied: nothing is cancelled.
            return Err("the page carries no schema.org Event in JSON-LD".into());
        }
        Ok((parsed.items, parsed.skipped, HashSet::new()))
    }
}
