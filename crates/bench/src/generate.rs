//! The synthetic network: `N` member cities and `K` activities with
//! realistic text, hosts, participants, themes and documents, written
//! through the storage layer in large transactions and reproducible from a
//! seed (each activity draws from its own generator, seeded from the run's
//! seed and its index, so batching and concurrency change nothing).

use std::collections::HashSet;
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::{Datelike, Duration, NaiveDate};
use cityhub_domain::{
    ActivityFormat, ActivityId, ActivityInput, ActivityKind, ActivityStatus, CityId, CityInput,
    CreativeField, DatePrecision, DocumentInput, DocumentKind, Limits, Named, Naming, text,
};
use cityhub_storage::repo::activity::ActivityWrite;
use cityhub_storage::{ActivityRepo, CityRepo, Db, DbConfig};
use futures::TryStreamExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};

use crate::words;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Database URL.
    pub database: String,
    /// Member cities.
    pub cities: usize,
    /// Activities.
    pub activities: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Activities per transaction.
    pub batch: usize,
}

/// A generated city, as the activity generator needs it.
#[derive(Debug, Clone)]
struct GenCity {
    id: CityId,
    slug: String,
    name: String,
    fields: Vec<CreativeField>,
}

/// Connects with a pool big enough for concurrent batches.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
    let config = DbConfig {
        url: url.to_owned(),
        max_connections,
        acquire_timeout_secs: 30,
        statement_timeout_secs: 600,
        ..DbConfig::default()
    };
    Db::connect(&config)
        .await
        .with_context(|| format!("cannot connect to {}", cityhub_storage::db::redact_url(url)))
}

/// How many rows a table has.
pub async fn count_rows(db: &Db, table: &str) -> anyhow::Result<i64> {
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            db.backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await?
        .context("COUNT returned no row")?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// Activities between two rounds of the upkeep a running hub does by
/// itself ([`keep_up`]).
const KEEP_UP_EVERY: usize = 10_000;

/// What a running hub does in the background while a network grows, done
/// by the generator as it writes: the kept counts' deltas folded
/// (PostgreSQL) and the planner statistics refreshed. Without it the
/// deltas pile up and plans made on the small tables stay, and the
/// generator slowed from about 500 to 170 activities/s on the way to
/// 100,000 (BENCHMARKS.md).
async fn keep_up(db: &Db) -> anyhow::Result<()> {
    cityhub_storage::StatsRepo::fold(db.conn())
        .await
        .context("folding the kept counts")?;
    cityhub_storage::StatsRepo::vacuum_churn(db.conn())
        .await
        .context("vacuuming the kept counts' deltas")?;
    db.refresh_planner_statistics()
        .await
        .context("refreshing the planner statistics")?;
    Ok(())
}

/// Generates the network into an empty (or new) database.
pub async fn generate(options: &GenerateOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let db = connect(&options.database, 8).await?;
    db.migrate_up().await.context("applying migrations")?;
    if count_rows(&db, "cities").await? > 0 || count_rows(&db, "activities").await? > 0 {
        bail!("the database already has cities or activities: generate into an empty database");
    }
    if options.cities < 2 {
        bail!("--cities must be at least 2");
    }
    let cities = insert_cities(&db, options).await?;
    eprintln!(
        "generated {} cities in {:.1}s",
        cities.len(),
        started.elapsed().as_secs_f64()
    );
    let activities_started = Instant::now();
    let batch = options.batch.max(1);
    let batches: Vec<(usize, usize)> = (0..options.activities)
        .step_by(batch)
        .map(|from| (from, (from + batch).min(options.activities)))
        .collect();
    // SQLite has one writer; PostgreSQL takes a few batches at once.
    let parallel = match db.backend() {
        DatabaseBackend::Postgres => 3,
        _ => 1,
    };
    let done = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(batches.into_iter().map(Ok::<_, anyhow::Error>))
        .try_for_each_concurrent(parallel, |(from, to)| {
            let db = &db;
            let cities = &cities;
            let done = &done;
            async move {
                insert_activities(db, cities, options.seed, from, to).await?;
                let n = done.fetch_add(to - from, std::sync::atomic::Ordering::Relaxed) + to - from;
                if (n - (to - from)) / KEEP_UP_EVERY != n / KEEP_UP_EVERY {
                    keep_up(db).await?;
                }
                let secs = activities_started.elapsed().as_secs_f64();
                eprintln!(
                    "  {n}/{} activities ({:.0}/s)",
                    options.activities,
                    n as f64 / secs.max(0.001)
                );
                Ok(())
            }
        })
        .await?;
    if db.backend() == DatabaseBackend::Postgres {
        // The kept counts' deltas folded into their totals, as a running hub
        // folds them within a second: otherwise the first hub started on the
        // dataset spends its first seconds folding the whole network's
        // (half a million rows at 10k), and whatever is measured then pays
        // for it.
        keep_up(&db).await?;
        db.conn()
            .execute_unprepared("VACUUM ANALYZE")
            .await
            .context("VACUUM ANALYZE")?;
    } else {
        db.conn()
            .execute_unprepared("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);")
            .await
            .context("ANALYZE")?;
    }
    eprintln!(
        "generated {} activities in {:.1}s ({:.0}/s); total {:.1}s",
        options.activities,
        activities_started.elapsed().as_secs_f64(),
        options.activities as f64 / activities_started.elapsed().as_secs_f64().max(0.001),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn pick<'a, T: ?Sized>(rng: &mut StdRng, items: &'a [&'a T]) -> &'a T {
    items[rng.gen_range(0..items.len())]
}

/// Builds the cities (deterministic for the seed) and inserts them in one
/// transaction.
async fn insert_cities(db: &Db, options: &GenerateOptions) -> anyhow::Result<Vec<GenCity>> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let limits = Limits::default();
    let mut slugs: HashSet<String> = HashSet::new();
    let mut inputs: Vec<CityInput> = Vec::with_capacity(options.cities);
    for i in 0..options.cities {
        let name = format!(
            "{}{}{}",
            pick(&mut rng, words::NAME_START),
            pick(&mut rng, words::NAME_MIDDLE),
            pick(&mut rng, words::NAME_END)
        );
        let mut slug = text::slugify(&name, 60);
        if slug.is_empty() {
            slug = format!("city-{i}");
        }
        if !slugs.insert(slug.clone()) {
            slug = format!("{slug}-{i}");
            slugs.insert(slug.clone());
        }
        // Every field is represented: the first cities take them in turn.
        let field = if i < CreativeField::ALL.len() {
            CreativeField::ALL[i]
        } else {
            *CreativeField::ALL
                .choose(&mut rng)
                .unwrap_or(&CreativeField::Design)
        };
        let mut fields = vec![field];
        if rng.gen_bool(0.05) {
            let second = CreativeField::ALL[rng.gen_range(0..7)];
            if second != field {
                fields.push(second);
            }
        }
        let member_since = if fields.contains(&CreativeField::Architecture) {
            2025
        } else {
            rng.gen_range(2004..=2025)
        };
        let input = CityInput {
            slug: slug.clone(),
            name,
            country: pick(&mut rng, words::COUNTRIES).to_owned(),
            fields,
            member_since,
            website: rng
                .gen_bool(0.8)
                .then(|| format!("https://www.{slug}.example.org/creative-city")),
            latitude: Some(rng.gen_range(-55.0..70.0)),
            longitude: Some(rng.gen_range(-180.0..180.0)),
        };
        input
            .validate("city", &limits)
            .with_context(|| format!("generated city {} is invalid", input.slug))?;
        inputs.push(input);
    }
    let txn = db.conn().begin().await?;
    let mut out = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let city = CityRepo::insert(&txn, input).await?;
        out.push(GenCity {
            id: city.id,
            slug: city.slug,
            name: city.name,
            fields: city.fields,
        });
    }
    txn.commit().await?;
    Ok(out)
}

/// One activity: what is written, its status and publisher, and its participants.
struct GenActivity {
    write: ActivityWrite,
    status: ActivityStatus,
    published_by: Option<CityId>,
    participants: Vec<CityId>,
}

/// Inserts activities `from..to` in one transaction.
async fn insert_activities(
    db: &Db,
    cities: &[GenCity],
    seed: u64,
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    let limits = Limits::default();
    let generated: Vec<GenActivity> = (from..to)
        .map(|i| activity(cities, seed, i, &limits))
        .collect::<anyhow::Result<_>>()?;
    let txn = db.conn().begin().await?;
    let mut participants: Vec<(ActivityId, Vec<CityId>)> = Vec::new();
    for g in &generated {
        let id = ActivityRepo::insert(&txn, &g.write, g.status, g.published_by).await?;
        if !g.participants.is_empty() {
            participants.push((id, g.participants.clone()));
        }
    }
    crate::bulk::BulkRepo::add_participants(&txn, &participants).await?;
    crate::bulk::BulkRepo::audit_generated(&txn, from, to).await?;
    txn.commit().await?;
    Ok(())
}

/// A city index skewed towards the first cities: some cities are far more
/// active than others, as in the real network.
fn skewed(rng: &mut StdRng, n: usize) -> usize {
    let u: f64 = rng.r#gen();
    ((u.powf(1.6) * n as f64) as usize).min(n - 1)
}

fn fill(template: &str, city: &str, topic: &str) -> String {
    template
        .replace("{city}", city)
        .replace("{topic}", &topic.to_lowercase())
}

fn date(rng: &mut StdRng, precision: DatePrecision) -> NaiveDate {
    let year = rng.gen_range(2005..=2027);
    let (month, day) = match precision {
        DatePrecision::Day => (rng.gen_range(1..=12), rng.gen_range(1..=28)),
        DatePrecision::Month => (rng.gen_range(1..=12), 1),
        DatePrecision::Year => (1, 1),
    };
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or_default()
}

/// Activity number `index`, drawn from its own generator.
fn activity(
    cities: &[GenCity],
    seed: u64,
    index: usize,
    limits: &Limits,
) -> anyhow::Result<GenActivity> {
    let mut rng = StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(index as u64 + 1),
    );
    let rng = &mut rng;
    let n = cities.len();
    let kind = ActivityKind::ALL[rng.gen_range(0..ActivityKind::ALL.len())];
    let by_secretariat = kind == ActivityKind::AnnualMeeting || rng.gen_bool(0.03);
    let publisher = &cities[skewed(rng, n)];
    let topic = pick(rng, words::TOPICS);
    let opening = pick(rng, words::TITLE_OPENINGS[kind as usize]);
    let mut co_hosts: Vec<&GenCity> = Vec::new();
    let wanted_hosts = if by_secretariat {
        rng.gen_range(1..=2)
    } else if rng.gen_bool(0.6) {
        0
    } else {
        rng.gen_range(1..=3)
    };
    while co_hosts.len() < wanted_hosts {
        let c = &cities[rng.gen_range(0..n)];
        if (by_secretariat || c.id != publisher.id) && !co_hosts.iter().any(|h| h.id == c.id) {
            co_hosts.push(c);
        }
    }
    let lead = if by_secretariat {
        co_hosts.first().copied().unwrap_or(publisher)
    } else {
        publisher
    };
    let format = match rng.gen_range(0..10) {
        0..=5 => ActivityFormat::InPerson,
        6..=7 => ActivityFormat::Hybrid,
        _ => ActivityFormat::Online,
    };
    let precision = match rng.gen_range(0..20) {
        0..=16 => DatePrecision::Day,
        17..=18 => DatePrecision::Month,
        _ => DatePrecision::Year,
    };
    let undated = rng.gen_bool(0.03);
    let start = (!undated).then(|| date(rng, precision));
    let end = match (start, precision) {
        (Some(s), DatePrecision::Day) if rng.gen_bool(0.7) => {
            Some(s + Duration::days(rng.gen_range(0..5)))
        }
        _ => None,
    };
    let year = start.map(|d| d.year()).unwrap_or(2024);
    let title = format!("{opening} {topic}, {} {year}", lead.name);
    let mut summary = fill(pick(rng, words::SUMMARY_SENTENCES), &lead.name, topic);
    if rng.gen_bool(0.6) {
        summary.push(' ');
        summary.push_str(&fill(
            pick(rng, words::SUMMARY_SENTENCES),
            &lead.name,
            topic,
        ));
    }
    let paragraphs = rng.gen_range(2..=4);
    let mut description = format!("## {title}\n\n");
    for _ in 0..paragraphs {
        description.push_str(&fill(
            pick(rng, words::DESCRIPTION_PARAGRAPHS),
            &lead.name,
            topic,
        ));
        description.push_str("\n\n");
    }
    if rng.gen_bool(0.4) {
        description.push_str("### Programme\n\n");
        for _ in 0..rng.gen_range(2..=4) {
            description.push_str(&format!("- {}\n", pick(rng, words::OBJECTIVES)));
        }
    }
    let mut fields = lead.fields.clone();
    fields.truncate(1);
    if rng.gen_bool(0.25) {
        let extra = CreativeField::ALL[rng.gen_range(0..CreativeField::ALL.len())];
        if !fields.contains(&extra) {
            fields.push(extra);
        }
    }
    let mut themes: Vec<String> = Vec::new();
    for _ in 0..rng.gen_range(1..=5) {
        let t = pick(rng, words::THEMES).to_owned();
        if !themes.contains(&t) {
            themes.push(t);
        }
    }
    let objectives: Vec<String> = (0..rng.gen_range(0..=3))
        .map(|_| pick(rng, words::OBJECTIVES).to_owned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect::<Vec<_>>();
    let mut objectives = objectives;
    objectives.sort();
    let mut organizations: Vec<String> = Vec::new();
    if by_secretariat || rng.gen_bool(0.3) {
        organizations.push("UNESCO".into());
    }
    if rng.gen_bool(0.2) {
        let o = pick(rng, words::ORGANIZATIONS).to_owned();
        if !organizations.contains(&o) {
            organizations.push(o);
        }
    }
    let slug_base = text::slugify(&title, 80);
    let documents: Vec<DocumentInput> = (0..rng.gen_range(0..=3))
        .map(|d| {
            let kind = DocumentKind::ALL[rng.gen_range(0..DocumentKind::ALL.len())];
            let issued = start.map(|s| s + Duration::days(rng.gen_range(0..60)));
            let editors = if kind == DocumentKind::Publication {
                vec![
                    pick(rng, words::EDITORS).to_owned(),
                    pick(rng, words::EDITORS).to_owned(),
                ]
            } else {
                Vec::new()
            };
            DocumentInput {
                kind,
                title: format!("{} — {}", kind_title(kind), title),
                url: Some(format!(
                    "https://www.{}.example.org/documents/{slug_base}-{index}-{d}.pdf",
                    lead.slug
                )),
                issued_on: issued,
                issued_precision: DatePrecision::Day,
                editors,
            }
        })
        .collect();
    let venue_city = match format {
        ActivityFormat::Online => None,
        _ if rng.gen_bool(0.85) => Some(lead),
        _ => co_hosts.last().copied().or(Some(lead)),
    };
    let venue = venue_city.map(|c| {
        format!(
            "{}, {}",
            pick(
                rng,
                &[
                    "City Hall",
                    "Convention Centre",
                    "Museum of Fine Arts",
                    "Public Library",
                    "Cultural Centre",
                    "Old Market Hall"
                ]
            ),
            c.name
        )
    });
    let slug = format!("{slug_base}-{index}");
    let input = ActivityInput {
        kind,
        title,
        summary: Some(summary),
        description: Some(description),
        format,
        start_date: start,
        end_date: end,
        date_precision: precision,
        venue,
        venue_city: venue_city.map(|c| c.slug.clone()),
        co_hosts: co_hosts.iter().map(|c| c.slug.clone()).collect(),
        organizations,
        fields,
        themes,
        objectives,
        documents,
        slug: Some(slug.clone()),
        start_time: None,
        end_time: None,
        time_zone: None,
    };
    input
        .validate("input", limits)
        .with_context(|| format!("generated activity {index} is invalid"))?;
    let published_by = (!by_secretariat).then_some(publisher.id);
    // The generated network counts as accepted, as the seeded one does:
    // every named city hosts (or is the venue city) at once.
    let settled = Named {
        co_hosts: co_hosts.iter().map(|c| c.id).collect(),
        venue: venue_city.map(|c| c.id),
    }
    .settle(published_by, &[], Naming::Direct);
    let hosts = settled.hosts.clone();
    let mut participants: Vec<CityId> = Vec::new();
    let wanted_participants = match rng.gen_range(0..10) {
        0..=3 => 0,
        4..=7 => rng.gen_range(1..=4),
        _ => rng.gen_range(5..=12),
    };
    let mut tries = 0;
    while participants.len() < wanted_participants.min(n.saturating_sub(hosts.len())) && tries < 100
    {
        tries += 1;
        let c = cities[rng.gen_range(0..n)].id;
        if !hosts.contains(&c) && !participants.contains(&c) {
            participants.push(c);
        }
    }
    let status = match rng.gen_range(0..100) {
        0..=3 => ActivityStatus::Draft,
        4..=6 => ActivityStatus::Cancelled,
        _ => ActivityStatus::Published,
    };
    Ok(GenActivity {
        write: ActivityWrite::new(input, slug, settled),
        status,
        published_by,
        participants,
    })
}

fn kind_title(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::Communique => "Communiqué",
        DocumentKind::Publication => "Publication",
        DocumentKind::Programme => "Programme",
        DocumentKind::Report => "Report",
        DocumentKind::Website => "Website",
        DocumentKind::Other => "Document",
    }
}
