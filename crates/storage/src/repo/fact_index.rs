//! Every live activity's countable facts in memory, for the `stats`
//! filters the kept counts cannot answer: two or more of kinds, formats,
//! fields, countries and cities at once, or several fields, countries or
//! cities (an activity can have more than one, so summing kept counts per
//! value would count it twice).
//!
//! The facts are `stats_facts`' (migration `m20261201_000002_stats`: kind,
//! format, year, fields, countries of the venue and host cities, cities
//! involved), so these counts agree with the kept ones and with the
//! scanned fallback. Each fact value holds the set of activities that have
//! it as a compressed bitmap ([`roaring`]). A filter of at most two
//! dimensions with one value each (a kind and a field, a city and a kind:
//! how a dashboard drills down) is counted one by one the first time it
//! is asked for, then kept as a tally per status that every activity
//! change moves ([`Tallies`], the few thousand groups last asked for):
//! its cost then follows how many values the answer has, not how many
//! activities match (counting the matches every time, the rate at 100,000
//! activities was half the rate at 10,000). Tallying every group up front
//! was measured and rejected: 93,000 groups at 100,000 activities made the
//! hub 170 MB larger and its start-up read 2.7 times longer. Drafts are
//! not tallied (each is seen by its city only; there are few): they are
//! matched one by one. Any other filter intersects the bitmaps of its
//! dimensions (the union of each one's values) and counts the activities
//! left one by one.
//!
//! Never stale, and no row every publish must lock: the index is a
//! projection of the event log. Every change to an activity appends an
//! event in its own transaction (the application layer's rule), so before
//! answering, one statement reads the facts of every activity with an
//! event after the index's position, as they are now, and the new
//! position: the newest event that can no longer be preceded by another
//! (on PostgreSQL, below the read horizon of [`super::events::EventLog`];
//! on SQLite, the newest). Reloading an activity's facts as they are is
//! idempotent, so an event above that position (committed while an older
//! hub transaction still runs) is simply reloaded again next time. The same
//! statement returns the member cities' countries when `cities_version`
//! moved: a city whose country changed changes the facts of activities
//! whose events say nothing of it, so the index is then read again whole,
//! as it is when events it has not seen were pruned. Requests arriving
//! while a refresh runs wait for that one instead of making their own.
//! `StatsRepo` writes and runs the statements (this module holds no
//! database code); the hub reads the index whole when it starts.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Instant;

use cityhub_domain::sync::{lock, read, write};
use cityhub_domain::{
    ActivityFilter, ActivityFormat, ActivityKind, ActivityStatus, CityId, CreativeField, ReadScope,
};
use roaring::RoaringBitmap;
use sea_orm::DbErr;

use crate::error::StorageError;

/// The facts of live activities in memory, kept current from the event
/// log (module documentation). State of the pool: [`Db::facts`].
#[derive(Default)]
pub struct FactIndex {
    facts: RwLock<Facts>,
    /// Held while the index is brought up to date; holds when the last
    /// refresh that succeeded began.
    refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for FactIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let facts = read(&self.facts);
        f.debug_struct("FactIndex")
            .field("loaded", &facts.loaded)
            .field("position", &facts.position)
            .field("activities", &facts.slot_of.len())
            .finish()
    }
}

/// A fact value one may filter on, naming the activities that have it:
/// vocabulary words by their place in the vocabulary, countries and
/// cities by their number in [`Facts`]' interners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Posting {
    Kind(u8),
    Format(u8),
    Field(u8),
    Country(u32),
    City(u32),
}

impl Posting {
    /// Which dimension the value is of.
    fn dimension(self) -> u8 {
        match self {
            Posting::Kind(_) => 0,
            Posting::Format(_) => 1,
            Posting::Field(_) => 2,
            Posting::Country(_) => 3,
            Posting::City(_) => 4,
        }
    }
}

/// One activity's facts, as small numbers: counting a request's matches
/// is then array arithmetic, without hashing (hashing the values was half
/// of the hub's CPU on a two-dimension `stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    status: ActivityStatus,
    /// The publisher of a draft (`None` for the secretariat's, and for
    /// any activity that is not a draft, which everyone sees).
    draft_of: Option<CityId>,
    /// Place in [`ActivityKind::ALL`].
    kind: Option<u8>,
    /// Place in [`ActivityFormat::ALL`].
    format: Option<u8>,
    /// Number in [`Facts::years`].
    year: Option<u32>,
    /// Bit `i`: [`CreativeField::ALL`]`[i]`.
    fields: u16,
    /// Numbers in [`Facts::countries_seen`].
    countries: Vec<u32>,
    /// Numbers in [`Facts::cities_seen`].
    cities: Vec<u32>,
}

impl Entry {
    fn postings(&self) -> impl Iterator<Item = Posting> + '_ {
        self.kind
            .map(Posting::Kind)
            .into_iter()
            .chain(self.format.map(Posting::Format))
            .chain(bits(self.fields).map(Posting::Field))
            .chain(self.countries.iter().map(|c| Posting::Country(*c)))
            .chain(self.cities.iter().map(|c| Posting::City(*c)))
    }
}

/// The set bits of `set`, lowest first.
fn bits(mut set: u16) -> impl Iterator<Item = u8> {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let bit = set.trailing_zeros() as u8;
            set &= set - 1;
            bit
        })
    })
}

/// The place of `value` in a vocabulary's `ALL` (creative fields, whose
/// places are bits of a `u16`, are fewer than 16: a unit test checks).
fn place<T: PartialEq + Copy>(all: &[T], value: T) -> u8 {
    all.iter().position(|v| *v == value).unwrap_or(0) as u8
}

/// Values seen, each numbered once, in the order first seen. Never
/// forgets: a few hundred countries, cities and years.
#[derive(Debug)]
struct Interner<T> {
    values: Vec<T>,
    ids: HashMap<T, u32>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            ids: HashMap::new(),
        }
    }
}

impl<T: std::hash::Hash + Eq + Clone> Interner<T> {
    fn id(&mut self, value: T) -> u32 {
        if let Some(id) = self.ids.get(&value) {
            return *id;
        }
        let id = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.values.push(value.clone());
        self.ids.insert(value, id);
        id
    }

    fn get(&self, value: &T) -> Option<u32> {
        self.ids.get(value).copied()
    }
}

#[derive(Default)]
struct Facts {
    /// Whether the index was read whole at least once.
    loaded: bool,
    /// Every event up to this sequence number is reflected.
    position: i64,
    /// The `cities_version` whose countries `city_countries` holds.
    cities_version: i64,
    /// Each member city's country, as the facts reflect it.
    city_countries: HashMap<i64, String>,
    /// Entries by slot; `None` for a free slot.
    slots: Vec<Option<Entry>>,
    slot_of: HashMap<i64, u32>,
    free: Vec<u32>,
    postings: HashMap<Posting, RoaringBitmap>,
    /// The slots of drafts.
    drafts: RoaringBitmap,
    /// The counts of the [`Group`]s readers asked for, by status.
    tallies: Mutex<Tallies>,
    countries_seen: Interner<String>,
    cities_seen: Interner<i64>,
    years: Interner<i32>,
}

/// One row of the refresh statement: a fact of an activity, or a marker
/// (`dim` beginning with `~`).
#[derive(Debug)]
pub(crate) struct FactRow {
    pub(crate) id: i64,
    pub(crate) dim: String,
    pub(crate) val: String,
    pub(crate) status: String,
    pub(crate) n: i64,
}

/// What a refresh statement found besides facts.
#[derive(Debug, Default)]
struct Markers {
    head: i64,
    pruned: i64,
    cities_version: i64,
    countries: Option<HashMap<i64, String>>,
    changed: Vec<i64>,
    /// The last activity id of a chunk (`None`: no activity was left).
    last: Option<i64>,
}

fn corrupt(message: String) -> StorageError {
    StorageError::Other(DbErr::Custom(message))
}

impl Facts {
    fn remove(&mut self, id: i64) {
        let Some(slot) = self.slot_of.remove(&id) else {
            return;
        };
        if let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::take) {
            for posting in entry.postings() {
                if let Some(bitmap) = self.postings.get_mut(&posting) {
                    bitmap.remove(slot);
                }
            }
            self.drafts.remove(slot);
            self.tally(&entry, -1);
        }
        self.free.push(slot);
    }

    fn insert(&mut self, id: i64, entry: Entry) -> Result<(), StorageError> {
        self.remove(id);
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => u32::try_from(self.slots.len())
                .map_err(|_| corrupt("fact index: more than 2^32 activities".to_owned()))?,
        };
        for posting in entry.postings() {
            self.postings.entry(posting).or_default().insert(slot);
        }
        if entry.status == ActivityStatus::Draft {
            self.drafts.insert(slot);
        }
        self.tally(&entry, 1);
        match self.slots.get_mut(slot as usize) {
            Some(place) => *place = Some(entry),
            None => self.slots.push(Some(entry)),
        }
        self.slot_of.insert(id, slot);
        Ok(())
    }

    /// Moves the kept tallies of the groups `entry` counts in (none for
    /// a draft) by `delta`.
    fn tally(&mut self, entry: &Entry, delta: i32) {
        let tallies = self
            .tallies
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if entry.status == ActivityStatus::Draft || tallies.kept.is_empty() {
            return;
        }
        for group in Group::all_of(entry) {
            if let Some(tally) = tallies.kept.get_mut(&(entry.status, group)) {
                tally.add(entry, delta);
            }
        }
    }

    /// Adds a chunk of a whole read; the last activity id it covered, or
    /// `None` when no activity was left.
    fn add(&mut self, rows: Vec<FactRow>) -> Result<Option<i64>, StorageError> {
        let (markers, entries) = self.parse(rows)?;
        for (id, entry) in entries {
            self.insert(id, entry)?;
        }
        Ok(markers.last)
    }

    /// Applies a refresh's rows. `Ok(false)` when the index must be read
    /// whole instead (events it has not seen were pruned, or a city's
    /// country changed).
    fn apply(&mut self, rows: Vec<FactRow>, whole: bool) -> Result<bool, StorageError> {
        if whole {
            *self = Facts::default();
        }
        let (markers, entries) = self.parse(rows)?;
        if !whole {
            if markers.pruned > self.position {
                return Ok(false);
            }
            if let Some(countries) = &markers.countries {
                let moved = self
                    .city_countries
                    .iter()
                    .any(|(id, country)| countries.get(id) != Some(country));
                if moved {
                    return Ok(false);
                }
            }
            for id in &markers.changed {
                self.remove(*id);
            }
        }
        for (id, entry) in entries {
            self.insert(id, entry)?;
        }
        if let Some(countries) = markers.countries {
            self.city_countries = countries;
        }
        self.cities_version = markers.cities_version;
        self.position = self.position.max(markers.head);
        self.loaded = true;
        Ok(true)
    }

    /// The counts of the activities `scope` sees that `filter` (whose
    /// cities are given as ids) selects, as `(dim, val, n)` rows.
    fn count(
        &self,
        scope: ReadScope,
        filter: &ActivityFilter,
        cities: Option<&[i64]>,
    ) -> Vec<(String, String, i64)> {
        let dimensions = self.dimensions(filter, cities);
        let statuses = filter.statuses();
        let mut counts = Counts::new(self);
        match Group::of(&dimensions) {
            Some(group) => {
                // Kept tallies for what everyone sees (a group asked for
                // the first time is counted one by one, then kept);
                // drafts (few, and seen by their city only) counted one
                // by one.
                let mut selected = None;
                // Each status once, however often the filter names it.
                let tallied = ActivityStatus::ALL
                    .iter()
                    .filter(|s| **s != ActivityStatus::Draft && statuses.contains(s));
                for status in tallied {
                    if lock(&self.tallies).add_to(&mut counts, *status, group) {
                        continue;
                    }
                    let selected = selected.get_or_insert_with(|| self.select(&dimensions));
                    let mut tally = Tally::default();
                    for entry in self.matches(selected, ReadScope::All, &[*status]) {
                        tally.add(entry, 1);
                    }
                    counts.add_tally(&tally);
                    lock(&self.tallies).keep(*status, group, tally);
                }
                if statuses.contains(&ActivityStatus::Draft) && scope != ReadScope::Public {
                    let drafts = if dimensions.is_empty() {
                        self.drafts.clone()
                    } else {
                        self.select(&dimensions) & &self.drafts
                    };
                    for entry in self.matches(&drafts, scope, &[ActivityStatus::Draft]) {
                        counts.add_entry(entry);
                    }
                }
            }
            None => {
                let selected = self.select(&dimensions);
                for entry in self.matches(&selected, scope, statuses) {
                    counts.add_entry(entry);
                }
            }
        }
        counts.rows(self)
    }

    /// Each dimension the filter names, as the fact values it accepts
    /// (`None` for a value nobody has).
    fn dimensions(
        &self,
        filter: &ActivityFilter,
        cities: Option<&[i64]>,
    ) -> Vec<Vec<Option<Posting>>> {
        let mut dimensions: Vec<Vec<Option<Posting>>> = Vec::new();
        let mut add = |values: Vec<Option<Posting>>| {
            if !values.is_empty() {
                dimensions.push(values);
            }
        };
        add(filter
            .kinds
            .iter()
            .map(|k| Some(Posting::Kind(place(ActivityKind::ALL, *k))))
            .collect());
        add(filter
            .formats
            .iter()
            .map(|f| Some(Posting::Format(place(ActivityFormat::ALL, *f))))
            .collect());
        add(filter
            .fields
            .iter()
            .map(|f| Some(Posting::Field(place(CreativeField::ALL, *f))))
            .collect());
        add(filter
            .country_codes()
            .iter()
            .map(|c| self.countries_seen.get(c).map(Posting::Country))
            .collect());
        if let Some(cities) = cities {
            // Even with no city known: a dimension that selects nothing.
            dimensions.push(
                cities
                    .iter()
                    .map(|c| self.cities_seen.get(c).map(Posting::City))
                    .collect(),
            );
        }
        dimensions
    }

    /// The slots of the activities with a value of every dimension: the
    /// union of each dimension's bitmaps, intersected, smallest first.
    fn select(&self, dimensions: &[Vec<Option<Posting>>]) -> RoaringBitmap {
        let empty = RoaringBitmap::new();
        let mut sets: Vec<RoaringBitmap> = dimensions
            .iter()
            .map(|values| {
                values
                    .iter()
                    .flatten()
                    .map(|v| self.postings.get(v).unwrap_or(&empty))
                    .fold(RoaringBitmap::new(), |acc, b| acc | b)
            })
            .collect();
        sets.sort_by_key(RoaringBitmap::len);
        match sets.split_first_mut() {
            Some((first, rest)) => {
                for other in rest.iter() {
                    *first &= other;
                }
                std::mem::take(first)
            }
            None => self.slot_of.values().copied().collect::<RoaringBitmap>(),
        }
    }

    /// The activities in `slots` that have one of `statuses` and that
    /// `scope` sees.
    fn matches<'a>(
        &'a self,
        slots: &'a RoaringBitmap,
        scope: ReadScope,
        statuses: &'a [ActivityStatus],
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        slots
            .iter()
            .filter_map(|slot| self.slots.get(slot as usize)?.as_ref())
            .filter(move |entry| {
                statuses.contains(&entry.status) && scope.sees(entry.status, entry.draft_of)
            })
    }
}

/// A filter of at most two dimensions with one value each (what a
/// dashboard drills down with), canonically ordered: such filters are
/// answered from tallies kept per group, whatever the size of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Group(Option<Posting>, Option<Posting>);

impl Group {
    /// The group a filter's dimensions name, if it is one.
    fn of(dimensions: &[Vec<Option<Posting>>]) -> Option<Group> {
        let mut one = dimensions.iter().map(|values| match values.as_slice() {
            [Some(value)] => Some(*value),
            _ => None,
        });
        match dimensions.len() {
            0 => Some(Group(None, None)),
            1 => Some(Group(Some(one.next()??), None)),
            2 => {
                let (a, b) = (one.next()??, one.next()??);
                Some(Group(Some(a.min(b)), Some(a.max(b))))
            }
            _ => None,
        }
    }

    /// Every group an entry counts in: no dimension, each of its values
    /// alone, and each pair of values of two dimensions.
    fn all_of(entry: &Entry) -> Vec<Group> {
        let mut postings: Vec<Posting> = entry.postings().collect();
        postings.sort_unstable();
        postings.dedup();
        let mut groups = Vec::with_capacity(1 + postings.len() * (postings.len() + 1) / 2);
        groups.push(Group(None, None));
        for (i, a) in postings.iter().enumerate() {
            groups.push(Group(Some(*a), None));
            for b in &postings[i + 1..] {
                if a.dimension() != b.dimension() {
                    groups.push(Group(Some(*a), Some(*b)));
                }
            }
        }
        groups
    }
}

/// How many group tallies an index keeps: a dashboard's drill-downs
/// (every kind with every field, each of a few hundred cities with every
/// kind or field) are a few thousand, and each tally weighs well under a
/// kilobyte.
const TALLIES_KEPT: usize = 8_192;

/// The tallies of the groups readers asked for, moved by every activity
/// change while kept; the least recently used quarter is forgotten when
/// `limit` is reached.
#[derive(Debug)]
struct Tallies {
    kept: HashMap<(ActivityStatus, Group), Tally>,
    /// Ticks once per use: a tally's `used` is the tick of its last use.
    clock: u64,
    limit: usize,
}

impl Default for Tallies {
    fn default() -> Self {
        Tallies {
            kept: HashMap::new(),
            clock: 0,
            limit: TALLIES_KEPT,
        }
    }
}

impl Tallies {
    /// Adds the kept tally of `group`'s activities of `status` to
    /// `counts`; `false` when it is not kept.
    fn add_to(&mut self, counts: &mut Counts, status: ActivityStatus, group: Group) -> bool {
        self.clock += 1;
        match self.kept.get_mut(&(status, group)) {
            Some(tally) => {
                tally.used = self.clock;
                counts.add_tally(tally);
                true
            }
            None => false,
        }
    }

    /// Keeps a tally counted one by one.
    fn keep(&mut self, status: ActivityStatus, group: Group, mut tally: Tally) {
        if self.kept.len() >= self.limit {
            let mut uses: Vec<u64> = self.kept.values().map(|t| t.used).collect();
            let quarter = uses.len() / 4;
            let (_, oldest, _) = uses.select_nth_unstable(quarter);
            let oldest = *oldest;
            self.kept.retain(|_, t| t.used > oldest);
        }
        self.clock += 1;
        tally.used = self.clock;
        self.kept.insert((status, group), tally);
    }
}

/// Every vocabulary counted in a fixed array of a [`Tally`] or
/// [`Counts`] has at most 16 words.
const VOCABULARY: usize = 16;
const _: () = assert!(
    ActivityKind::ALL.len() <= VOCABULARY
        && ActivityFormat::ALL.len() <= VOCABULARY
        && CreativeField::ALL.len() <= VOCABULARY
);

/// Counts by number (a year, country or city of [`Facts`]), sorted: a
/// group holds the few values its activities have.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Sparse(Vec<(u32, i32)>);

impl Sparse {
    fn add(&mut self, key: u32, delta: i32) {
        match self.0.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(at) => {
                self.0[at].1 += delta;
                if self.0[at].1 == 0 {
                    self.0.remove(at);
                }
            }
            Err(at) => self.0.insert(at, (key, delta)),
        }
    }
}

/// The counts of one group's activities of one status, moved by each
/// activity change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally {
    /// The [`Tallies::clock`] of its last use.
    used: u64,
    total: i64,
    kinds: [i32; VOCABULARY],
    formats: [i32; VOCABULARY],
    fields: [i32; VOCABULARY],
    years: Sparse,
    countries: Sparse,
    cities: Sparse,
}

impl Tally {
    fn add(&mut self, entry: &Entry, delta: i32) {
        self.total += i64::from(delta);
        if let Some(kind) = entry.kind {
            self.kinds[usize::from(kind)] += delta;
        }
        if let Some(format) = entry.format {
            self.formats[usize::from(format)] += delta;
        }
        if let Some(year) = entry.year {
            self.years.add(year, delta);
        }
        for field in bits(entry.fields) {
            self.fields[usize::from(field)] += delta;
        }
        for country in &entry.countries {
            self.countries.add(*country, delta);
        }
        for city in &entry.cities {
            self.cities.add(*city, delta);
        }
    }
}

/// The counts of one answer, by number. Dense arrays, unlike a
/// [`Tally`]: an answer lives for one request and may count every
/// activity one by one, while a tally is kept (thousands of them) and
/// holds only the values its group has.
struct Counts {
    total: i64,
    kinds: [i64; VOCABULARY],
    formats: [i64; VOCABULARY],
    fields: [i64; VOCABULARY],
    years: Vec<i64>,
    countries: Vec<i64>,
    /// Bit `i`: city `i` of [`Facts::cities_seen`] is involved.
    involved: Vec<u64>,
}

impl Counts {
    fn new(facts: &Facts) -> Counts {
        Counts {
            total: 0,
            kinds: [0; VOCABULARY],
            formats: [0; VOCABULARY],
            fields: [0; VOCABULARY],
            years: vec![0; facts.years.values.len()],
            countries: vec![0; facts.countries_seen.values.len()],
            involved: vec![0; facts.cities_seen.values.len().div_ceil(64)],
        }
    }

    fn involve(&mut self, city: u32) {
        self.involved[city as usize / 64] |= 1 << (city % 64);
    }

    fn add_entry(&mut self, entry: &Entry) {
        self.total += 1;
        if let Some(kind) = entry.kind {
            self.kinds[usize::from(kind)] += 1;
        }
        if let Some(format) = entry.format {
            self.formats[usize::from(format)] += 1;
        }
        if let Some(year) = entry.year {
            self.years[year as usize] += 1;
        }
        for field in bits(entry.fields) {
            self.fields[usize::from(field)] += 1;
        }
        for country in &entry.countries {
            self.countries[*country as usize] += 1;
        }
        for city in &entry.cities {
            self.involve(*city);
        }
    }

    fn add_tally(&mut self, tally: &Tally) {
        self.total += tally.total;
        for (sum, n) in self.kinds.iter_mut().zip(tally.kinds) {
            *sum += i64::from(n);
        }
        for (sum, n) in self.formats.iter_mut().zip(tally.formats) {
            *sum += i64::from(n);
        }
        for (sum, n) in self.fields.iter_mut().zip(tally.fields) {
            *sum += i64::from(n);
        }
        for (year, n) in &tally.years.0 {
            self.years[*year as usize] += i64::from(*n);
        }
        for (country, n) in &tally.countries.0 {
            self.countries[*country as usize] += i64::from(*n);
        }
        for (city, _) in &tally.cities.0 {
            self.involve(*city);
        }
    }

    /// The `(dim, val, n)` rows, values named, zero counts left out.
    fn rows(self, facts: &Facts) -> Vec<(String, String, i64)> {
        let city_count: u32 = self.involved.iter().map(|w| w.count_ones()).sum();
        let mut rows: Vec<(String, String, i64)> = vec![
            ("all".into(), String::new(), self.total),
            ("cities".into(), String::new(), i64::from(city_count)),
        ];
        let mut put = |dim: &str, val: &str, n: i64| {
            if n > 0 {
                rows.push((dim.to_owned(), val.to_owned(), n));
            }
        };
        for (kind, n) in ActivityKind::ALL.iter().zip(self.kinds) {
            put("kind", kind.as_str(), n);
        }
        for (format, n) in ActivityFormat::ALL.iter().zip(self.formats) {
            put("format", format.as_str(), n);
        }
        for (field, n) in CreativeField::ALL.iter().zip(self.fields) {
            put("field", field.as_str(), n);
        }
        for (country, n) in facts.countries_seen.values.iter().zip(self.countries) {
            put("country", country, n);
        }
        for (year, n) in facts.years.values.iter().zip(self.years) {
            put("year", &year.to_string(), n);
        }
        rows
    }
}

impl Facts {
    /// Splits a refresh's rows into its markers and the activities' facts.
    fn parse(&mut self, rows: Vec<FactRow>) -> Result<(Markers, Vec<(i64, Entry)>), StorageError> {
        let mut markers = Markers::default();
        let mut entries: Vec<(i64, Entry)> = Vec::new();
        let mut at: HashMap<i64, usize> = HashMap::new();
        for row in rows {
            let FactRow {
                id,
                dim,
                val,
                status,
                n,
            } = row;
            let bad = |what: &str| corrupt(format!("fact index: {what} {val:?} of {dim} for {id}"));
            match dim.as_str() {
                "~head" => markers.head = n,
                "~pruned" => markers.pruned = n,
                "~cities" => markers.cities_version = n,
                "~country" => {
                    markers.countries.get_or_insert_default().insert(id, val);
                }
                "~changed" => markers.changed.push(id),
                "~last" => markers.last = (id >= 0).then_some(id),
                _ => {
                    let index = *at.entry(id).or_insert_with(|| entries.len());
                    if index == entries.len() {
                        let status = ActivityStatus::parse(&status).ok_or_else(|| bad("status"))?;
                        // `scope`: the publisher of a draft, -1 for the
                        // secretariat's, 0 for what everyone sees.
                        let draft_of =
                            (status == ActivityStatus::Draft && n > 0).then_some(CityId(n));
                        entries.push((
                            id,
                            Entry {
                                status,
                                draft_of,
                                kind: None,
                                format: None,
                                year: None,
                                fields: 0,
                                countries: Vec::new(),
                                cities: Vec::new(),
                            },
                        ));
                    }
                    let entry = &mut entries[index].1;
                    match dim.as_str() {
                        "all" => {}
                        "kind" => {
                            let kind = ActivityKind::parse(&val).ok_or_else(|| bad("kind"))?;
                            entry.kind = Some(place(ActivityKind::ALL, kind));
                        }
                        "format" => {
                            let format =
                                ActivityFormat::parse(&val).ok_or_else(|| bad("format"))?;
                            entry.format = Some(place(ActivityFormat::ALL, format));
                        }
                        "field" => {
                            let field = CreativeField::parse(&val).ok_or_else(|| bad("field"))?;
                            entry.fields |= 1 << place(CreativeField::ALL, field);
                        }
                        "year" => {
                            let year = val.parse().map_err(|_| bad("year"))?;
                            entry.year = Some(self.years.id(year));
                        }
                        "country" => entry.countries.push(self.countries_seen.id(val)),
                        "city" => {
                            let city = val.parse().map_err(|_| bad("city"))?;
                            entry.cities.push(self.cities_seen.id(city));
                        }
                        _ => return Err(bad("dimension")),
                    }
                }
            }
        }
        Ok((markers, entries))
    }
}

/// Activities read per statement when the index is read whole: about
/// 57,000 fact rows, so the transient rows stay a few megabytes whatever
/// the size of the network (read in one statement, 100,000 activities'
/// rows peaked at 600 MB).
pub(crate) const LOAD_CHUNK: usize = 5_000;

/// What a refresh statement reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read {
    /// The facts of the activities with an event after `position`, and
    /// the markers; the countries if `cities_version` is not `cities`.
    Changes { position: i64, cities: i64 },
    /// The markers and every city's country: the start of a whole read.
    Markers,
    /// The facts of the next [`LOAD_CHUNK`] live activities after id
    /// `after`, and the last id read (`~last`, -1 when none was left).
    Chunk { after: i64 },
}

impl FactIndex {
    /// Whether the index was read whole at least once (it answers
    /// requests without a whole read of its own).
    pub(crate) fn loaded(&self) -> bool {
        read(&self.facts).loaded
    }

    /// How many live activities the index holds (0 before its first use).
    pub fn activities(&self) -> usize {
        read(&self.facts).slot_of.len()
    }

    /// Whether the index answers `filter`: anything but text, themes and
    /// dates, which facts do not hold.
    pub fn answers(filter: &ActivityFilter) -> bool {
        filter.text.is_none()
            && filter.themes.is_empty()
            && filter.from.is_none()
            && filter.to.is_none()
    }

    /// Counts the activities `filter` selects as `scope` sees them, as
    /// `(dim, val, n)` rows (`StatsRepo` assembles them), `cities` being
    /// the ids of the filter's city slugs. Only for filters it
    /// [answers](Self::answers), after [`Self::refresh`].
    pub(crate) fn count(
        &self,
        scope: ReadScope,
        filter: &ActivityFilter,
        cities: Option<&[i64]>,
    ) -> Vec<(String, String, i64)> {
        read(&self.facts).count(scope, filter, cities)
    }

    /// The `cities_version` the facts were last brought up to date at:
    /// the member cities to resolve a filter's slugs with are at least
    /// this new.
    pub(crate) fn cities_version(&self) -> i64 {
        read(&self.facts).cities_version
    }

    /// Every live activity's facts, read [`LOAD_CHUNK`] activities at a
    /// time after the markers. The chunks see later snapshots than the
    /// markers' position, which is safe: an activity changed since has an
    /// event after that position (on PostgreSQL, every event that will
    /// ever be committed below it was visible to the markers' statement),
    /// so the next refresh reads it again.
    async fn read_whole<F, Fut>(fetch: &F) -> Result<Facts, StorageError>
    where
        F: Fn(Read) -> Fut,
        Fut: Future<Output = Result<Vec<FactRow>, StorageError>>,
    {
        let mut facts = Facts::default();
        facts.apply(fetch(Read::Markers).await?, true)?;
        let mut after = 0;
        while let Some(last) = facts.add(fetch(Read::Chunk { after }).await?)? {
            after = last;
        }
        Ok(facts)
    }

    /// Brings the index up to date, `fetch` running each refresh
    /// statement (`StatsRepo` writes and runs them): everything committed
    /// before this call is reflected when it returns.
    pub(crate) async fn refresh<F, Fut>(&self, fetch: F) -> Result<(), StorageError>
    where
        F: Fn(Read) -> Fut,
        Fut: Future<Output = Result<Vec<FactRow>, StorageError>>,
    {
        let arrived = Instant::now();
        let mut last = self.refresh.lock().await;
        if last.is_some_and(|began| began >= arrived) {
            // A refresh that began after this request arrived ended while
            // it waited.
            return Ok(());
        }
        let began = Instant::now();
        let (loaded, position, cities) = {
            let facts = read(&self.facts);
            (facts.loaded, facts.position, facts.cities_version)
        };
        let fresh = if loaded {
            let rows = fetch(Read::Changes { position, cities }).await?;
            if write(&self.facts).apply(rows, false)? {
                None
            } else {
                tracing::info!("the fact index is read again whole");
                Some(Self::read_whole(&fetch).await?)
            }
        } else {
            Some(Self::read_whole(&fetch).await?)
        };
        if let Some(fresh) = fresh {
            *write(&self.facts) = fresh;
        }
        *last = Some(began);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(id: i64, dim: &str, val: &str, status: &str, scope: i64) -> FactRow {
        FactRow {
            id,
            dim: dim.into(),
            val: val.into(),
            status: status.into(),
            n: scope,
        }
    }

    fn marker(dim: &str, n: i64) -> FactRow {
        fact(0, dim, "", "", n)
    }

    /// An activity's facts as `stats_facts` holds them.
    fn activity(id: i64, kind: &str, fields: &[&str], cities: &[(i64, &str)]) -> Vec<FactRow> {
        let p = "PUBLISHED";
        let mut rows = vec![
            fact(id, "all", "", p, 0),
            fact(id, "kind", kind, p, 0),
            fact(id, "format", "IN_PERSON", p, 0),
            fact(id, "year", "2024", p, 0),
        ];
        rows.extend(fields.iter().map(|f| fact(id, "field", f, p, 0)));
        for (city, country) in cities {
            rows.push(fact(id, "city", &city.to_string(), p, 0));
            rows.push(fact(id, "country", country, p, 0));
        }
        rows
    }

    fn counts(facts: &Facts, filter: &ActivityFilter) -> HashMap<(String, String), i64> {
        facts
            .count(ReadScope::Public, filter, None)
            .into_iter()
            .map(|(d, v, n)| ((d, v), n))
            .collect()
    }

    fn loaded() -> Facts {
        let mut rows = activity(1, "FESTIVAL", &["MUSIC", "FILM"], &[(10, "FR")]);
        rows.extend(activity(
            2,
            "FESTIVAL",
            &["MUSIC"],
            &[(11, "KR"), (10, "FR")],
        ));
        rows.extend(activity(3, "WORKSHOP", &["MUSIC"], &[(11, "KR")]));
        rows.extend([
            marker("~head", 30),
            marker("~cities", 5),
            fact(10, "~country", "FR", "", 0),
            fact(11, "~country", "KR", "", 0),
        ]);
        let mut facts = Facts::default();
        assert!(facts.apply(rows, true).expect("applies"));
        facts
    }

    #[test]
    fn counts_intersect_dimensions_and_count_each_activity_once() {
        let facts = loaded();
        let music_or_film = ActivityFilter {
            fields: vec![CreativeField::Music, CreativeField::Film],
            ..ActivityFilter::default()
        };
        let c = counts(&facts, &music_or_film);
        assert_eq!(c[&("all".into(), String::new())], 3);
        assert_eq!(c[&("field".into(), "MUSIC".into())], 3);
        assert_eq!(c[&("field".into(), "FILM".into())], 1);
        assert_eq!(c[&("cities".into(), String::new())], 2);
        let festivals_in_kr = ActivityFilter {
            kinds: vec![ActivityKind::Festival],
            countries: vec!["kr".into()],
            ..ActivityFilter::default()
        };
        let c = counts(&facts, &festivals_in_kr);
        assert_eq!(c[&("all".into(), String::new())], 1);
        assert_eq!(c[&("country".into(), "FR".into())], 1);
        let drafts = ActivityFilter {
            statuses: Some(vec![ActivityStatus::Draft]),
            ..music_or_film
        };
        assert_eq!(counts(&facts, &drafts)[&("all".into(), String::new())], 0);
        // Cities given as ids; none known selects nothing.
        let c = facts.count(ReadScope::Public, &festivals_in_kr, Some(&[]));
        assert_eq!(c[0], ("all".into(), String::new(), 0));
    }

    #[test]
    fn changes_replace_an_activitys_facts_and_free_its_slot() {
        let mut facts = loaded();
        // Activity 1 became a draft of city 10; activity 3 was deleted.
        let mut rows = vec![
            fact(1, "all", "", "DRAFT", 10),
            fact(1, "kind", "WORKSHOP", "DRAFT", 10),
            fact(1, "format", "IN_PERSON", "DRAFT", 10),
            fact(1, "~changed", "", "", 0),
            fact(3, "~changed", "", "", 0),
            marker("~head", 40),
            marker("~cities", 5),
        ];
        rows.extend(activity(4, "WORKSHOP", &["DESIGN"], &[]));
        rows.push(fact(4, "~changed", "", "", 0));
        assert!(facts.apply(rows, false).expect("applies"));
        assert_eq!(facts.position, 40);
        assert_eq!(facts.slot_of.len(), 3);
        assert_eq!(
            facts.slots.len(),
            3,
            "the deleted activity's slot is reused"
        );
        let workshops = ActivityFilter {
            kinds: vec![ActivityKind::Workshop],
            fields: vec![CreativeField::Design, CreativeField::Music],
            statuses: Some(vec![ActivityStatus::Draft, ActivityStatus::Published]),
            ..ActivityFilter::default()
        };
        // Anonymous readers see activity 4 only; city 10 sees its draft too.
        assert_eq!(
            counts(&facts, &workshops)[&("all".into(), String::new())],
            1
        );
        let lyon = facts.count(ReadScope::City(CityId(10)), &workshops, None);
        assert_eq!(
            lyon[0],
            ("all".into(), String::new(), 1),
            "no field: not matched"
        );
        let any_kind = ActivityFilter {
            kinds: vec![ActivityKind::Workshop, ActivityKind::Festival],
            formats: vec![ActivityFormat::InPerson],
            statuses: Some(vec![ActivityStatus::Draft, ActivityStatus::Published]),
            ..ActivityFilter::default()
        };
        let lyon = facts.count(ReadScope::City(CityId(10)), &any_kind, None);
        assert_eq!(lyon[0], ("all".into(), String::new(), 3), "its own draft");
        let seoul = facts.count(ReadScope::City(CityId(11)), &any_kind, None);
        assert_eq!(seoul[0], ("all".into(), String::new(), 2));
        assert_eq!(counts(&facts, &any_kind)[&("all".into(), String::new())], 2);
    }

    #[test]
    fn pruned_events_or_a_moved_country_ask_for_a_whole_read() {
        let mut facts = loaded();
        let pruned = vec![marker("~head", 50), marker("~pruned", 31)];
        assert!(!facts.apply(pruned, false).expect("applies"));
        assert_eq!(facts.position, 30, "nothing applied");
        let moved = vec![
            marker("~head", 50),
            marker("~cities", 6),
            fact(10, "~country", "BE", "", 0),
            fact(11, "~country", "KR", "", 0),
        ];
        assert!(!facts.apply(moved, false).expect("applies"));
        // A new city alone moves nothing.
        let added = vec![
            marker("~head", 50),
            marker("~cities", 7),
            fact(10, "~country", "FR", "", 0),
            fact(11, "~country", "KR", "", 0),
            fact(12, "~country", "AQ", "", 0),
        ];
        assert!(facts.apply(added, false).expect("applies"));
        assert_eq!((facts.position, facts.cities_version), (50, 7));
    }

    /// The counts of `filter`, every activity matched one by one (what
    /// the tallies must agree with).
    fn matched_one_by_one(
        facts: &Facts,
        scope: ReadScope,
        filter: &ActivityFilter,
        cities: Option<&[i64]>,
    ) -> Vec<(String, String, i64)> {
        let dimensions = facts.dimensions(filter, cities);
        let selected = facts.select(&dimensions);
        let mut counts = Counts::new(facts);
        for entry in facts.matches(&selected, scope, filter.statuses()) {
            counts.add_entry(entry);
        }
        counts.rows(facts)
    }

    /// One activity as the refresh statement returns it, from small
    /// numbers: status, kind, format, year, a set of fields, of
    /// countries and of cities (bits), and the publisher of a draft.
    type Spec = (usize, usize, usize, i32, u16, u8, u8, i64);

    fn rows_of(id: i64, spec: Spec) -> Vec<FactRow> {
        let (status, kind, format, year, fields, countries, cities, publisher) = spec;
        let status = ActivityStatus::ALL[status % ActivityStatus::ALL.len()].as_str();
        let scope = if status == "DRAFT" { publisher } else { 0 };
        let mut rows = vec![
            fact(id, "~changed", "", "", 0),
            fact(id, "all", "", status, scope),
            fact(
                id,
                "kind",
                ActivityKind::ALL[kind % ActivityKind::ALL.len()].as_str(),
                status,
                scope,
            ),
            fact(
                id,
                "format",
                ActivityFormat::ALL[format % ActivityFormat::ALL.len()].as_str(),
                status,
                scope,
            ),
            fact(id, "year", &year.to_string(), status, scope),
        ];
        for (i, field) in CreativeField::ALL.iter().enumerate() {
            if fields & (1 << i) != 0 {
                rows.push(fact(id, "field", field.as_str(), status, scope));
            }
        }
        for (i, country) in ["FR", "KR", "BR"].iter().enumerate() {
            if countries & (1 << i) != 0 {
                rows.push(fact(id, "country", country, status, scope));
            }
        }
        for city in 0..4 {
            if cities & (1 << city) != 0 {
                rows.push(fact(
                    id,
                    "city",
                    &(10 + i64::from(city)).to_string(),
                    status,
                    scope,
                ));
            }
        }
        rows
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Whatever activities come, change and go, the tallies answer
        /// every filter of at most two single-value dimensions as matching
        /// each activity one by one does, for every reader.
        #[test]
        fn tallies_agree_with_matching_one_by_one(
            changes in proptest::collection::vec(
                (1i64..30, proptest::option::weighted(0.85, (
                    0usize..8, 0usize..8, 0usize..4, 2020i32..2024, 0u16..512, 0u8..8, 0u8..16, 10i64..12,
                ))),
                1..120,
            ),
            limit in proptest::prop_oneof![proptest::strategy::Just(TALLIES_KEPT), 8usize..200],
        ) {
            let filters = group_filters();
            let mut facts = Facts::default();
            let mut head = 0;
            for (n, chunk) in changes.chunks(7).enumerate() {
                // A refresh reads each activity once, as it is now.
                let last: HashMap<i64, Option<Spec>> = chunk.iter().copied().collect();
                let mut rows = Vec::new();
                for (id, spec) in &last {
                    match spec {
                        Some(spec) => rows.extend(rows_of(*id, *spec)),
                        None => rows.push(fact(*id, "~changed", "", "", 0)),
                    }
                }
                head += 1;
                rows.push(marker("~head", head));
                proptest::prop_assert!(facts.apply(rows, head == 1).expect("applies"));
                lock(&facts.tallies).limit = limit;
                // Tallies kept after the first changes, then moved by the
                // later ones; the last ones checked once more.
                if n == 0 || n == 3 {
                    agree(&facts, &filters)?;
                }
            }
            agree(&facts, &filters)?;
        }
    }

    /// The empty filter, each single value of every dimension (some
    /// nobody has), and each pair of values of two dimensions, with the
    /// city ids a city dimension is given as.
    fn group_filters() -> Vec<(ActivityFilter, Option<Vec<i64>>)> {
        let one = |filter: ActivityFilter| (filter, None);
        let mut atoms: Vec<(ActivityFilter, Option<Vec<i64>>)> = Vec::new();
        atoms.extend(ActivityKind::ALL.iter().map(|k| {
            one(ActivityFilter {
                kinds: vec![*k],
                ..ActivityFilter::default()
            })
        }));
        atoms.extend(ActivityFormat::ALL.iter().map(|f| {
            one(ActivityFilter {
                formats: vec![*f],
                ..ActivityFilter::default()
            })
        }));
        atoms.extend(CreativeField::ALL.iter().map(|f| {
            one(ActivityFilter {
                fields: vec![*f],
                ..ActivityFilter::default()
            })
        }));
        atoms.extend(["fr", "KR", "BR", "XX"].iter().map(|c| {
            one(ActivityFilter {
                countries: vec![(*c).into()],
                ..ActivityFilter::default()
            })
        }));
        for city in [10, 11, 12, 13, 99] {
            atoms.push((ActivityFilter::default(), Some(vec![city])));
        }
        let mut filters = vec![(ActivityFilter::default(), None)];
        filters.extend(atoms.iter().cloned());
        for (i, (a, a_cities)) in atoms.iter().enumerate() {
            for (b, b_cities) in &atoms[i + 1..] {
                if a_cities.is_some() && b_cities.is_some() {
                    continue;
                }
                let both = ActivityFilter {
                    kinds: [a.kinds.clone(), b.kinds.clone()].concat(),
                    formats: [a.formats.clone(), b.formats.clone()].concat(),
                    fields: [a.fields.clone(), b.fields.clone()].concat(),
                    countries: [a.countries.clone(), b.countries.clone()].concat(),
                    ..ActivityFilter::default()
                };
                filters.push((both, a_cities.clone().or(b_cities.clone())));
            }
        }
        filters
    }

    /// Every filter, with a few sets of statuses, for every reader:
    /// `count` agrees with matching one by one.
    fn agree(
        facts: &Facts,
        filters: &[(ActivityFilter, Option<Vec<i64>>)],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        let statuses = [
            None,
            Some(vec![ActivityStatus::Draft, ActivityStatus::Published]),
            Some(ActivityStatus::ALL.to_vec()),
            // Named twice: still counted once.
            Some([ActivityStatus::ALL, ActivityStatus::ALL].concat()),
        ];
        for (filter, cities) in filters {
            for statuses in &statuses {
                let filter = ActivityFilter {
                    statuses: statuses.clone(),
                    ..filter.clone()
                };
                for scope in [
                    ReadScope::Public,
                    ReadScope::City(CityId(10)),
                    ReadScope::All,
                ] {
                    let mut kept = facts.count(scope, &filter, cities.as_deref());
                    let mut matched = matched_one_by_one(facts, scope, &filter, cities.as_deref());
                    kept.sort();
                    matched.sort();
                    proptest::prop_assert_eq!(
                        kept,
                        matched,
                        "{:?} {:?} {:?}",
                        filter,
                        cities,
                        scope
                    );
                }
            }
        }
        let tallies = lock(&facts.tallies);
        proptest::prop_assert!(tallies.kept.len() <= tallies.limit);
        Ok(())
    }

    #[test]
    fn creative_fields_fit_the_bits_of_an_entry() {
        assert!(CreativeField::ALL.len() <= 16);
        let all = CreativeField::ALL
            .iter()
            .fold(0u16, |set, f| set | 1 << place(CreativeField::ALL, *f));
        assert_eq!(bits(all).count(), CreativeField::ALL.len());
    }

    #[test]
    fn unknown_values_are_refused() {
        let mut facts = Facts::default();
        let rows = vec![fact(1, "kind", "NOPE", "PUBLISHED", 0)];
        assert!(facts.apply(rows, true).is_err());
        let rows = vec![fact(1, "all", "", "NOPE", 0)];
        assert!(facts.apply(rows, true).is_err());
    }
}
