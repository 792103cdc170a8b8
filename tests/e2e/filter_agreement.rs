//! One filter rule, evaluated two ways: generated filters run through the
//! SQL translation (`ActivityRepo::page` in every order, and
//! `ActivityRepo::count`) and through the domain's in-memory rule
//! (`ReadScope::sees` and `ActivityFilter::matches`, which live events use)
//! over the same seeded data, and must select the same activities. The
//! data and the filters come from proptest strategies run with a fixed
//! seed, so every run checks the same cases. Named co-hosts and venue
//! cities are invited, and each accepts, declines or leaves the
//! invitation pending: a city only invited is none of the activity's
//! cities, on both paths.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use cityhub_domain::{
    ActivityFilter, ActivityFormat, ActivityId, ActivityInput, ActivityKind, ActivityOrder,
    ActivityStatus, Actor, Answer, City, CityId, CreativeField, DatePrecision, Participation,
    PublishAs, ReadScope, Surroundings,
};
use cityhub_storage::{ActivityRepo, CityFilter, CityRepo};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sea_orm::{ConnectionTrait, Statement};

use crate::both_backends;
use crate::support::{Backend, TestHub};

/// Activities generated beside the seeded ones.
const ACTIVITIES: usize = 90;
/// Filters checked per backend.
const FILTERS: usize = 400;

/// Words titles, summaries, descriptions and themes are made of: accents,
/// case, digits and punctuation included, so folding and word splitting
/// are exercised.
const WORDS: &[&str] = &[
    "design",
    "Design",
    "DÉSIGN",
    "música",
    "Musica",
    "café",
    "Östersund",
    "ostersund",
    "e-waste",
    "co-creation",
    "gastronomy",
    "Gastronomía",
    "crafts",
    "folk",
    "art",
    "arts",
    "2024",
    "v2",
    "UNESCO's",
    "media",
    "literature",
    "film",
    "Łódź",
    "straße",
    "strasse",
    "naïve",
    "résidence",
    "urban",
    "!",
    "—",
];

/// Themes, with the variants a theme filter must fold together.
const THEMES: &[&str] = &[
    "urban design",
    "Urban Design",
    "  urban design ",
    "Música",
    "musica",
    "sustainability",
    "Sustainability ",
    "youth",
    "Éducation",
    "education",
];

/// Search queries: words, prefixes, several terms, nothing searchable.
const QUERIES: &[&str] = &[
    "design",
    "des",
    "musica",
    "MÚSICA",
    "cafe",
    "oster",
    "waste",
    "e-waste",
    "co creation",
    "gastro",
    "2024",
    "v2",
    "unesco",
    "unesco s",
    "lodz",
    "strasse",
    "stra",
    "naive",
    "urban design",
    "design urban",
    "art",
    "arts",
    "film media",
    "zzz",
    "!!",
    "—",
    "résid",
];

/// How an activity ends up after it is published.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Published,
    Draft,
    DraftThenPublished,
    Cancelled,
    Deleted,
}

/// One generated activity; cities are indexes into the member list.
#[derive(Debug, Clone)]
struct Spec {
    publisher: usize,
    co_hosts: Vec<usize>,
    venue: Option<usize>,
    participants: Vec<usize>,
    /// Each invited city's answer, in the order invited (co-hosts, then
    /// the venue city): 0 none, 1 accept, 2 decline.
    answers: Vec<u8>,
    kind: ActivityKind,
    format: ActivityFormat,
    fields: Vec<CreativeField>,
    themes: Vec<&'static str>,
    title: Vec<&'static str>,
    summary: Option<Vec<&'static str>>,
    description: Option<Vec<&'static str>>,
    dates: Option<(u32, Option<u32>)>,
    fate: Fate,
}

/// A day from 2018 on, `offset` days later.
fn day(offset: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2018, 1, 1).expect("a date") + chrono::Days::new(u64::from(offset))
}

fn words(range: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(WORDS), range)
}

fn spec(cities: usize) -> impl Strategy<Value = Spec> {
    let city = 0..cities;
    (
        (
            city.clone(),
            prop::collection::vec(city.clone(), 0..=2),
            prop::option::of(city.clone()),
            prop::collection::vec(city, 0..=3),
            prop::collection::vec(0u8..3, 3),
        ),
        prop::sample::select(ActivityKind::ALL),
        prop::sample::select(ActivityFormat::ALL),
        prop::sample::subsequence(CreativeField::ALL, 0..=3),
        prop::sample::subsequence(THEMES, 0..=3),
        words(1..=4),
        prop::option::of(words(1..=6)),
        prop::option::of(words(1..=8)),
        prop::option::of((0u32..3000, prop::option::of(0u32..40))),
        prop_oneof![
            4 => Just(Fate::Published),
            2 => Just(Fate::Draft),
            1 => Just(Fate::DraftThenPublished),
            1 => Just(Fate::Cancelled),
            1 => Just(Fate::Deleted),
        ],
    )
        .prop_map(
            |(
                (publisher, co_hosts, venue, participants, answers),
                kind,
                format,
                fields,
                themes,
                title,
                summary,
                description,
                dates,
                fate,
            )| Spec {
                publisher,
                co_hosts,
                venue,
                participants,
                answers,
                kind,
                format,
                fields,
                themes,
                title,
                summary,
                description,
                dates,
                fate,
            },
        )
}

/// A filter part, present a quarter of the time: filters then combine a
/// few parts, and most select something.
fn some<S: Strategy>(part: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::weighted(0.25, part)
}

fn filter(slugs: Vec<String>, countries: Vec<String>) -> impl Strategy<Value = ActivityFilter> {
    let mut city_values = slugs;
    city_values.push("no-such-city".into());
    let mut country_values: Vec<String> = countries
        .iter()
        .flat_map(|c| [c.clone(), c.to_ascii_lowercase()])
        .collect();
    country_values.push("ZZ".into());
    let date = (0u32..3100).prop_map(day);
    (
        some(prop::sample::subsequence(ActivityKind::ALL, 1..=2)),
        some(prop::sample::subsequence(CreativeField::ALL, 1..=2)),
        some(prop::sample::subsequence(city_values, 1..=2)),
        some(prop::sample::subsequence(country_values, 1..=2)),
        some(date.clone()),
        some(date),
        some(prop::sample::subsequence(ActivityFormat::ALL, 1..=2)),
        prop::option::of(prop::sample::subsequence(ActivityStatus::ALL, 0..=3)),
        some(prop::sample::subsequence(THEMES, 1..=2)),
        some(prop::sample::select(QUERIES)),
    )
        .prop_map(
            |(kinds, fields, cities, countries, from, to, formats, statuses, themes, text)| {
                ActivityFilter {
                    kinds: kinds.unwrap_or_default(),
                    fields: fields.unwrap_or_default(),
                    cities: cities.unwrap_or_default(),
                    countries: countries.unwrap_or_default(),
                    from,
                    to,
                    formats: formats.unwrap_or_default(),
                    statuses,
                    themes: themes
                        .unwrap_or_default()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                    text: text.map(str::to_owned),
                }
            },
        )
}

/// Draws one value of `strategy` (no shrinking: the case is printed instead).
fn draw<S: Strategy>(runner: &mut TestRunner, strategy: &S) -> S::Value {
    strategy
        .new_tree(runner)
        .expect("a generated value")
        .current()
}

/// Publishes the generated activities through the write service, then
/// drafts, joins, cancellations and deletions as each one's fate says.
async fn generate(hub: &TestHub, runner: &mut TestRunner, cities: &[City]) -> usize {
    let service = cityhub::app::hub_service(hub.db.clone(), &hub.config);
    let actor = |i: usize| Actor::City {
        id: cities[i].id,
        slug: cities[i].slug.clone(),
    };
    let strategy = spec(cities.len());
    let mut written = 0;
    for n in 0..ACTIVITIES {
        let spec = draw(runner, &strategy);
        let (start_date, end_date) = match spec.dates {
            Some((start, length)) => (Some(day(start)), length.map(|l| day(start + l))),
            None => (None, None),
        };
        let mut fields = spec.fields.clone();
        fields.dedup();
        let input = ActivityInput {
            kind: spec.kind,
            title: format!("{} {n}", spec.title.join(" ")),
            summary: spec.summary.as_ref().map(|w| w.join(" ")),
            description: spec.description.as_ref().map(|w| w.join(" ")),
            format: spec.format,
            start_date,
            end_date,
            date_precision: DatePrecision::Day,
            venue: None,
            venue_city: spec.venue.map(|i| cities[i].slug.clone()),
            co_hosts: spec
                .co_hosts
                .iter()
                .filter(|i| **i != spec.publisher)
                .map(|i| cities[*i].slug.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            organizations: Vec::new(),
            fields,
            themes: spec.themes.iter().map(|t| (*t).to_owned()).collect(),
            objectives: Vec::new(),
            documents: Vec::new(),
            slug: None,
            start_time: None,
            end_time: None,
            time_zone: None,
        };
        let publisher = actor(spec.publisher);
        let draft = matches!(spec.fate, Fate::Draft | Fate::DraftThenPublished);
        let activity = service
            .publish(&publisher, input, PublishAs::from_draft_flag(draft), None)
            .await
            .unwrap_or_else(|e| panic!("publish {spec:?}: {e}"));
        written += 1;
        if matches!(spec.fate, Fate::DraftThenPublished) {
            service
                .publish_draft(&publisher, activity.id, None)
                .await
                .expect("publish the draft");
        }
        if !draft || matches!(spec.fate, Fate::DraftThenPublished) {
            // The invited cities answer (a draft's cannot see it yet).
            let mut invited: Vec<usize> = Vec::new();
            for i in spec.co_hosts.iter().chain(spec.venue.iter()) {
                if *i != spec.publisher && !invited.contains(i) {
                    invited.push(*i);
                }
            }
            for (i, answer) in invited.iter().zip(&spec.answers) {
                let answer = match answer {
                    1 => Answer::Accept,
                    2 => Answer::Decline,
                    _ => continue,
                };
                service
                    .answer(&actor(*i), activity.id, answer)
                    .await
                    .unwrap_or_else(|e| panic!("answer {answer:?} for {spec:?}: {e}"));
            }
            for i in spec.participants.iter().collect::<BTreeSet<_>>() {
                if *i != spec.publisher && !spec.co_hosts.contains(i) {
                    // Joining twice, or as a host, is refused: no matter.
                    let _ = service
                        .participate(&actor(*i), activity.id, Participation::Join)
                        .await;
                }
            }
        }
        match spec.fate {
            Fate::Cancelled => {
                service
                    .cancel(&publisher, activity.id, Some("generated".into()))
                    .await
                    .expect("cancel");
            }
            Fate::Deleted => {
                service
                    .delete(&publisher, activity.id)
                    .await
                    .expect("delete");
            }
            _ => {}
        }
    }
    written
}

/// Every activity with its surroundings, and whether it is deleted.
struct Dataset {
    activities: Vec<(cityhub_domain::Activity, bool)>,
    participants: HashMap<ActivityId, Vec<CityId>>,
    cities: HashMap<CityId, City>,
}

async fn dataset(hub: &TestHub, cities: &[City]) -> Dataset {
    let conn = hub.db.conn();
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT id, CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END AS deleted FROM activities"
                .to_owned(),
        ))
        .await
        .expect("activity ids");
    let mut deleted = HashMap::new();
    for row in rows {
        let id: i64 = row.try_get("", "id").expect("id");
        let gone: i32 = row.try_get("", "deleted").expect("deleted");
        deleted.insert(ActivityId(id), gone == 1);
    }
    let ids: Vec<ActivityId> = deleted.keys().copied().collect();
    let found = ActivityRepo::find_by_ids_unscoped(conn, &ids)
        .await
        .expect("activities");
    assert_eq!(found.len(), ids.len());
    let participants = ActivityRepo::participants_of(conn, &ids)
        .await
        .expect("participants");
    Dataset {
        activities: found
            .into_values()
            .map(|a| {
                let gone = deleted[&a.id];
                (a, gone)
            })
            .collect(),
        participants,
        cities: cities.iter().map(|c| (c.id, c.clone())).collect(),
    }
}

impl Dataset {
    /// What the in-memory rule selects.
    fn select(&self, scope: ReadScope, filter: &ActivityFilter) -> BTreeSet<ActivityId> {
        let none = Vec::new();
        self.activities
            .iter()
            .filter(|(a, deleted)| {
                let around = Surroundings {
                    participants: self.participants.get(&a.id).unwrap_or(&none),
                    cities: &self.cities,
                };
                !deleted && scope.sees(a.status, a.published_by) && filter.matches(a, &around)
            })
            .map(|(a, _)| a.id)
            .collect()
    }
}

both_backends!(sql_and_memory_select_alike, |backend: Backend| async move {
    let hub = TestHub::start(backend).await;
    let conn = hub.db.conn();
    let cities = CityRepo::page(conn, &CityFilter::default(), 1_000, None)
        .await
        .expect("cities")
        .items;
    assert!(cities.len() > 5, "the seeded network has cities");
    let mut runner = TestRunner::deterministic();
    let written = generate(&hub, &mut runner, &cities).await;
    assert_eq!(written, ACTIVITIES);
    let data = dataset(&hub, &cities).await;

    let slugs: Vec<String> = cities.iter().map(|c| c.slug.clone()).collect();
    let countries: Vec<String> = cities
        .iter()
        .map(|c| c.country.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let scopes: Vec<ReadScope> = [ReadScope::Public, ReadScope::All]
        .into_iter()
        .chain(cities.iter().take(4).map(|c| ReadScope::City(c.id)))
        .collect();
    let filters = filter(slugs, countries);
    let mut selected_something = 0;
    for case in 0..FILTERS {
        let filter = draw(&mut runner, &filters);
        let scope = scopes[case % scopes.len()];
        let order = ActivityOrder::ALL[(case / scopes.len()) % ActivityOrder::ALL.len()];
        let expected = data.select(scope, &filter);
        let page = ActivityRepo::page(conn, scope, &filter, order, 10_000, None)
            .await
            .unwrap_or_else(|e| panic!("page for {filter:?}: {e}"));
        assert!(!page.has_next);
        let listed: BTreeSet<ActivityId> = page.items.iter().map(|a| a.id).collect();
        assert_eq!(
            listed, expected,
            "case {case}: SQL (left) and memory (right) disagree for {scope:?}, {order:?}, {filter:#?}"
        );
        let counted = ActivityRepo::count(conn, scope, &filter)
            .await
            .unwrap_or_else(|e| panic!("count for {filter:?}: {e}"));
        assert_eq!(
            counted,
            expected.len() as u64,
            "case {case}: count disagrees for {scope:?}, {filter:#?}"
        );
        if !expected.is_empty() {
            selected_something += 1;
        }
    }
    // The generated filters are not all empty-handed: the comparison
    // covered real selections.
    assert!(
        selected_something > FILTERS / 3,
        "only {selected_something} of {FILTERS} filters selected anything"
    );
    hub.stop().await;
});
