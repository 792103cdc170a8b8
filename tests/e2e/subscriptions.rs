//! Live subscriptions (`activityEvents`) over real WebSockets: delivery and
//! order, filters, draft privacy, resuming with `after`, expired cursors,
//! several instances on one PostgreSQL database, slow consumers, auth
//! refusals, both sub-protocols and per-connection limits.
//!
//! Subscriptions consumed as an ordinary client would are read through
//! graphql-ws-client (`ws::WsClient`); the stories about close codes,
//! keep-alives, malformed or early messages, a client that stops reading,
//! and the legacy protocol speak raw frames (`ws_raw::RawClient`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};
use crate::ws::{self, Event, WAIT, WsClient};
use crate::ws_raw::{Incoming, Protocol, RawClient, expect_refused};

/// The hub's count of active subscriptions (the `cityhub_subscribers` gauge).
async fn subscribers(hub: &TestHub) -> Option<f64> {
    hub.metrics()
        .await
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .find(|(name, _)| *name == "cityhub_subscribers")
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
}

/// Asserts the hub counts `n` active subscriptions; call it once the
/// sockets that changed the count are synced ([`WsClient::synced`],
/// [`RawClient::synced`]).
async fn assert_subscribers(hub: &TestHub, n: usize) {
    assert_eq!(
        subscribers(hub).await,
        Some(n as f64),
        "active subscriptions"
    );
}

/// Waits until the hub counts `n` active subscriptions after a socket
/// closed. Polled: a socket's teardown, after the client closed it, is
/// announced to no one.
async fn wait_subscribers_after_close(hub: &TestHub, n: usize) {
    let what = format!("the hub counting {n} subscriptions");
    crate::support::eventually(&what, WAIT, || async {
        let count = subscribers(hub).await;
        if count == Some(n as f64) {
            Ok(())
        } else {
            Err(count)
        }
    })
    .await;
}

/// Publishes an activity (a draft if `draft`); returns its id and slug.
async fn publish_as(hub: &TestHub, token: &str, input: Value, draft: bool) -> (String, String) {
    let data = hub
        .ok(
            "mutation($i: ActivityInput!, $d: Boolean) { publishActivity(input: $i, draft: $d) { id slug } }",
            json!({ "i": input, "d": draft }),
            Some(token),
        )
        .await;
    let a = &data["publishActivity"];
    (
        a["id"].as_str().expect("id").to_owned(),
        a["slug"].as_str().expect("slug").to_owned(),
    )
}

async fn publish(hub: &TestHub, token: &str, input: Value) -> (String, String) {
    publish_as(hub, token, input, false).await
}

/// A plain workshop titled `title`.
fn workshop(title: &str) -> Value {
    json!({ "kind": "WORKSHOP", "title": title })
}

async fn update(hub: &TestHub, token: &str, id: &str, patch: Value) {
    hub.ok(
        "mutation($id: ID!, $p: ActivityPatch!) { updateActivity(id: $id, patch: $p) { id } }",
        json!({ "id": id, "p": patch }),
        Some(token),
    )
    .await;
}

async fn cancel(hub: &TestHub, token: &str, id: &str) {
    hub.ok(
        "mutation($id: ID!) { cancelActivity(id: $id, reason: \"postponed\") { id } }",
        json!({ "id": id }),
        Some(token),
    )
    .await;
}

async fn delete(hub: &TestHub, token: &str, id: &str) {
    hub.ok(
        "mutation($id: ID!) { deleteActivity(id: $id) }",
        json!({ "id": id }),
        Some(token),
    )
    .await;
}

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn slugs(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.slug.as_str()).collect()
}

/// An RFC 3339 UTC instant as a sortable key (whole seconds, nanoseconds).
fn instant_key(text: &str) -> (String, u32) {
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .unwrap_or_else(|| panic!("{text} is not in UTC"));
    let (seconds, fraction) = body.split_once('.').unwrap_or((body, ""));
    assert!(
        seconds.len() == 19 && seconds.as_bytes()[10] == b'T',
        "{text} is not RFC 3339"
    );
    let digits = format!("{fraction:0<9}");
    (seconds.to_owned(), digits[..9].parse().expect("fraction"))
}

both_backends!(
    events_arrive_in_order_with_their_fields,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let anonymous = WsClient::connect(&hub, None).await;
        let mut events = anonymous.events(json!(null), None).await;
        anonymous.synced().await;

        let (id, slug) = publish(
            &hub,
            &lyon,
            json!({ "kind": "WORKSHOP", "title": "Risograph workshop", "venueCity": "lyon",
                    "startDate": "2026-05-04" }),
        )
        .await;
        update(
            &hub,
            &lyon,
            &id,
            json!({ "title": "Risograph and screen printing workshop" }),
        )
        .await;
        cancel(&hub, &lyon, &id).await;
        delete(&hub, &lyon, &id).await;
        let (_, network) = publish(
            &hub,
            &secretariat,
            json!({ "kind": "ANNUAL_MEETING", "title": "Annual meeting 2027" }),
        )
        .await;

        let events = events.events(5).await;
        assert_eq!(
            kinds(&events),
            ["PUBLISHED", "UPDATED", "CANCELLED", "DELETED", "PUBLISHED"]
        );
        assert_eq!(
            slugs(&events),
            [&slug, &slug, &slug, &slug, &network].map(String::as_str)
        );
        for e in &events[..4] {
            assert_eq!(e.actor.as_deref(), Some("lyon"), "{e:?}");
            // The activity is shown as it is when the event is delivered:
            // once deleted, as a tombstone without content.
            assert!(
                e.title == "Risograph workshop"
                    || e.title == "Risograph and screen printing workshop"
                    || e.title.is_empty(),
                "{e:?}"
            );
        }
        assert_eq!(events[3].title, "", "deleted means deleted");
        assert_eq!(events[4].actor, None, "the secretariat acts as no city");
        assert_eq!(events[4].title, "Annual meeting 2027");
        let cursors: BTreeSet<&str> = events.iter().map(|e| e.cursor.as_str()).collect();
        assert_eq!(cursors.len(), 5, "every event has its own cursor");
        assert!(events.iter().all(|e| !e.cursor.is_empty()));
        let instants: Vec<(String, u32)> =
            events.iter().map(|e| instant_key(&e.occurred_at)).collect();
        assert!(
            instants.windows(2).all(|w| w[0] <= w[1]),
            "occurredAt follows the log: {events:?}"
        );
    }
);

both_backends!(
    filters_select_events_like_activities_selects_activities,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let secretariat = hub.token(None).await;
        let filters = [
            json!({ "kinds": ["WORKSHOP"] }),
            json!({ "cities": ["kobe"] }),
            json!({ "cities": ["lyon", "dakar"] }),
            json!({ "text": "ceramics" }),
            json!({ "text": "CERAM" }),
            json!({ "fields": ["DESIGN"] }),
            json!({ "countries": ["JP"] }),
            json!({ "from": "2027-01-01" }),
            json!({ "to": "2027-04-30" }),
            json!({ "formats": ["IN_PERSON"] }),
            json!({ "themes": ["ceramics"] }),
            json!({ "statuses": ["CANCELLED"] }),
            json!({ "kinds": ["WORKSHOP"], "countries": ["JP"], "formats": ["IN_PERSON"] }),
            json!({ "kinds": ["WORKSHOP"], "statuses": ["CANCELLED"] }),
        ];
        let client = WsClient::connect(&hub, None).await;
        let mut streams = Vec::new();
        for filter in &filters {
            streams.push(client.events(filter.clone(), None).await);
        }
        client.synced().await;
        assert_subscribers(&hub, filters.len()).await;

        let inputs = [
            json!({ "kind": "WORKSHOP", "title": "Ceramics workshop in Kobe", "venueCity": "kobe",
                    "fields": ["DESIGN"], "startDate": "2027-03-01" }),
            json!({ "kind": "FESTIVAL", "title": "Light festival", "coHosts": ["lyon"],
                    "fields": ["MEDIA_ARTS"], "startDate": "2026-12-01" }),
            json!({ "kind": "WORKSHOP", "title": "Typography workshop", "coHosts": ["seoul"],
                    "fields": ["DESIGN"], "startDate": "2026-10-01", "format": "HYBRID" }),
            json!({ "kind": "EXHIBITION", "title": "Porcelain exhibition", "venueCity": "shenzhen",
                    "themes": ["Ceramics"], "startDate": "2027-05-01" }),
            json!({ "kind": "MEMBER_MEETING", "title": "Online member meeting", "format": "ONLINE",
                    "coHosts": ["kobe", "braga"], "startDate": "2027-02-01" }),
            json!({ "kind": "WORKSHOP", "title": "Glaze chemistry", "summary": "Ceramic glazes for potters",
                    "coHosts": ["dakar"], "startDate": "2026-09-01" }),
            json!({ "kind": "RESIDENCY", "title": "Writers residency" }),
        ];
        // Every event, in order: (type, slug, status after the event).
        let mut log: Vec<(&str, String, &str)> = Vec::new();
        let mut ids = Vec::new();
        for input in inputs {
            let (id, slug) = publish(&hub, &secretariat, input).await;
            log.push(("PUBLISHED", slug, "PUBLISHED"));
            ids.push(id);
        }
        cancel(&hub, &secretariat, &ids[2]).await;
        log.push(("CANCELLED", log[2].1.clone(), "CANCELLED"));
        // The last activity matches every filter: its cancellation ends each stream.
        let (last_id, last) = publish(
            &hub,
            &secretariat,
            json!({ "kind": "WORKSHOP", "title": "Ceramics closing workshop", "venueCity": "kobe",
                    "coHosts": ["lyon"], "fields": ["DESIGN"], "themes": ["ceramics"], "startDate": "2027-04-01" }),
        )
        .await;
        log.push(("PUBLISHED", last.clone(), "PUBLISHED"));
        cancel(&hub, &secretariat, &last_id).await;
        log.push(("CANCELLED", last.clone(), "CANCELLED"));
        let ours: BTreeSet<&str> = log.iter().map(|(_, s, _)| s.as_str()).collect();

        for (filter, stream) in filters.iter().zip(&mut streams) {
            let statuses = filter.get("statuses").cloned();
            // `activities` lists PUBLISHED only by default; events carry every status.
            let mut listing = filter.clone();
            listing["statuses"] = statuses
                .clone()
                .unwrap_or(json!(["PUBLISHED", "CANCELLED"]));
            let data = hub
                .ok(
                    "query($f: ActivityFilter) { activities(filter: $f, first: 100) { nodes { slug } } }",
                    json!({ "f": listing }),
                    None,
                )
                .await;
            let selected: BTreeSet<&str> = data["activities"]["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .filter_map(|n| n["slug"].as_str())
                .filter(|s| ours.contains(s))
                .collect();
            let expected: Vec<(&str, &str)> = log
                .iter()
                .filter(|(_, slug, _)| selected.contains(slug.as_str()))
                .filter(|(_, _, status)| {
                    statuses
                        .as_ref()
                        .is_none_or(|s| s.as_array().is_some_and(|s| s.iter().any(|x| x == status)))
                })
                .map(|(kind, slug, _)| (*kind, slug.as_str()))
                .collect();
            let got = stream.events_until("CANCELLED", &last).await;
            let got: Vec<(&str, &str)> = got
                .iter()
                .map(|e| (e.kind.as_str(), e.slug.as_str()))
                .collect();
            assert_eq!(got, expected, "filter {filter}");
        }
        // A filter input is checked like the `activities` one.
        let mut bad = client
            .events(json!({ "text": "x".repeat(5000) }), None)
            .await;
        bad.error("BAD_USER_INPUT").await;
    }
);

both_backends!(
    drafts_reach_only_their_city_and_the_secretariat,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let secretariat = hub.token(None).await;
        let mut watchers = Vec::new();
        for token in [None, Some(&seoul), Some(&lyon), Some(&secretariat)] {
            let client = WsClient::connect(&hub, token.map(String::as_str)).await;
            let stream = client.events(json!(null), None).await;
            client.synced().await;
            watchers.push((client, stream));
        }
        let (_, opening) = publish(&hub, &secretariat, workshop("Opening workshop")).await;

        let (draft_id, draft) =
            publish_as(&hub, &lyon, workshop("Secret draft workshop"), true).await;
        update(
            &hub,
            &lyon,
            &draft_id,
            json!({ "summary": "still private" }),
        )
        .await;
        let (gone_id, gone) = publish_as(&hub, &lyon, workshop("Abandoned draft"), true).await;
        delete(&hub, &lyon, &gone_id).await;
        hub.ok(
            "mutation($id: ID!) { publishDraft(id: $id) { status } }",
            json!({ "id": draft_id }),
            Some(&lyon),
        )
        .await;

        let (_, marker) = publish(&hub, &secretariat, workshop("Marker workshop")).await;

        let public = vec![
            ("PUBLISHED", opening.as_str()),
            ("PUBLISHED", draft.as_str()),
            ("PUBLISHED", marker.as_str()),
        ];
        let private = vec![
            ("PUBLISHED", opening.as_str()),
            ("PUBLISHED", draft.as_str()),
            ("UPDATED", draft.as_str()),
            ("PUBLISHED", gone.as_str()),
            ("DELETED", gone.as_str()),
            ("PUBLISHED", draft.as_str()),
            ("PUBLISHED", marker.as_str()),
        ];
        let who = ["anonymous", "seoul", "lyon", "secretariat"];
        let mut cursors: Vec<Vec<String>> = Vec::new();
        for (i, (_, stream)) in watchers.iter_mut().enumerate() {
            let want = if i < 2 { &public } else { &private };
            let got = stream.events_until("PUBLISHED", &marker).await;
            cursors.push(got.iter().map(|e| e.cursor.clone()).collect());
            let got: Vec<(&str, &str)> = got
                .iter()
                .map(|e| (e.kind.as_str(), e.slug.as_str()))
                .collect();
            assert_eq!(&got, want, "live, as {}", who[i]);
        }
        // Everyone else's PUBLISHED is publishDraft's, not the draft's own.
        assert_eq!(cursors[0][1], cursors[3][5]);
        assert_eq!(cursors[1][1], cursors[2][5]);
        let opening_cursor = cursors[0][0].clone();

        // Replaying from before the drafts applies the same rule.
        for (i, token) in [None, Some(&seoul), Some(&lyon), Some(&secretariat)]
            .into_iter()
            .enumerate()
        {
            let replay = WsClient::connect(&hub, token.map(String::as_str)).await;
            let mut stream = replay.events(json!(null), Some(&opening_cursor)).await;
            let want = if i < 2 { &public } else { &private };
            let got = stream.events_until("PUBLISHED", &marker).await;
            let got: Vec<(&str, &str)> = got
                .iter()
                .map(|e| (e.kind.as_str(), e.slug.as_str()))
                .collect();
            assert_eq!(got, want[1..], "replayed, as {}", who[i]);
        }
        // Another city never sees drafts, even when asking for them: the
        // first thing its DRAFT-or-CANCELLED stream shows is a cancellation.
        let asking = WsClient::connect(&hub, Some(&seoul)).await;
        let mut asking_stream = asking
            .events(
                json!({ "statuses": ["DRAFT", "CANCELLED"] }),
                Some(&opening_cursor),
            )
            .await;
        let owner = WsClient::connect(&hub, Some(&lyon)).await;
        let mut owner_stream = owner
            .events(
                json!({ "statuses": ["DRAFT", "CANCELLED"] }),
                Some(&opening_cursor),
            )
            .await;
        asking.synced().await;
        owner.synced().await;
        let (_, another) = publish_as(&hub, &lyon, workshop("Another draft"), true).await;
        let (after_id, after) = publish(&hub, &secretariat, workshop("After workshop")).await;
        cancel(&hub, &secretariat, &after_id).await;
        let first = asking_stream.event().await;
        assert_eq!(
            (first.kind.as_str(), first.slug.as_str()),
            ("CANCELLED", after.as_str())
        );
        let own = owner_stream.events_until("CANCELLED", &after).await;
        let own: Vec<(&str, &str)> = own
            .iter()
            .map(|e| (e.kind.as_str(), e.slug.as_str()))
            .collect();
        assert_eq!(
            own,
            [
                ("PUBLISHED", draft.as_str()),
                ("UPDATED", draft.as_str()),
                ("PUBLISHED", gone.as_str()),
                ("DELETED", gone.as_str()),
                ("PUBLISHED", another.as_str()),
                ("CANCELLED", after.as_str()),
            ],
            "the city's own drafts, by their status after each event"
        );
    }
);

both_backends!(
    resuming_with_after_replays_exactly_what_was_missed,
    |backend: Backend| async move {
        let hub = Arc::new(TestHub::start(backend).await);
        let secretariat = hub.token(None).await;
        let first = WsClient::connect(&hub, None).await;
        let mut first_stream = first.events(json!(null), None).await;
        first.synced().await;
        let mut published = Vec::new();
        for i in 0..5 {
            let (_, slug) = publish(&hub, &secretariat, workshop(&format!("Before {i}"))).await;
            published.push(slug);
        }
        let seen = first_stream.events(5).await;
        assert_eq!(slugs(&seen), published);
        let resume_from = seen[4].cursor.clone();
        first.close().await;
        wait_subscribers_after_close(&hub, 0).await;

        // Thirty more, in the background: some while nobody listens, the
        // rest while the replay runs and after it has gone live.
        let (sent, mut progress) = tokio::sync::mpsc::unbounded_channel();
        let background = {
            let hub = hub.clone();
            let token = secretariat.clone();
            tokio::spawn(async move {
                let mut slugs = Vec::new();
                for i in 0..30 {
                    let kind = if i % 2 == 0 { "WORKSHOP" } else { "EXHIBITION" };
                    let (_, slug) = publish(
                        &hub,
                        &token,
                        json!({ "kind": kind, "title": format!("While away {i}") }),
                    )
                    .await;
                    let _ = sent.send(());
                    slugs.push((kind, slug));
                }
                slugs
            })
        };
        for _ in 0..10 {
            tokio::time::timeout(WAIT, progress.recv())
                .await
                .expect("background publishing stalled");
        }
        let second = WsClient::connect(&hub, None).await;
        let mut resumed = second.events(json!(null), Some(&resume_from)).await;
        let mut resumed_x = second
            .events(json!({ "kinds": ["EXHIBITION"] }), Some(&resume_from))
            .await;
        let later = tokio::time::timeout(Duration::from_secs(60), background)
            .await
            .expect("background publishing timed out")
            .expect("background publishing");
        let later_slugs: Vec<&str> = later.iter().map(|(_, s)| s.as_str()).collect();
        let (_, last) = later.last().expect("published");
        let got = resumed.events_until("PUBLISHED", last).await;
        assert_eq!(
            slugs(&got),
            later_slugs,
            "exactly the events after the cursor, in order"
        );
        let exhibitions: Vec<&str> = later
            .iter()
            .filter(|(k, _)| *k == "EXHIBITION")
            .map(|(_, s)| s.as_str())
            .collect();
        let got_x = resumed_x
            .events_until("PUBLISHED", exhibitions.last().expect("exhibition"))
            .await;
        assert_eq!(slugs(&got_x), exhibitions, "the replay applies the filter");

        let mut everything: Vec<&str> = slugs(&seen);
        everything.extend(slugs(&got));
        let mut expected: Vec<&str> = published.iter().map(String::as_str).collect();
        expected.extend(later_slugs.iter().copied());
        assert_eq!(everything, expected, "each event once, in sequence order");
        let cursors: BTreeSet<&str> = seen.iter().chain(&got).map(|e| e.cursor.as_str()).collect();
        assert_eq!(cursors.len(), 35);

        // And the resumed stream goes on live.
        let (_, live) = publish(&hub, &secretariat, workshop("Live again")).await;
        assert_eq!(resumed.event().await.slug, live);
    }
);

both_backends!(
    an_expired_cursor_is_refused,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let secretariat = hub.token(None).await;
        let watcher = WsClient::connect(&hub, None).await;
        let mut stream = watcher.events(json!(null), None).await;
        watcher.synced().await;
        let mut published = Vec::new();
        for i in 0..3 {
            published.push(
                publish(&hub, &secretariat, workshop(&format!("Old {i}")))
                    .await
                    .1,
            );
        }
        let seen = stream.events(3).await;
        assert_eq!(slugs(&seen), published);

        // Prune everything but the newest event, as the hub's pruner does
        // once events pass the retention.
        {
            let _writer = hub.db.write_guard().await;
            let txn = hub.db.conn().begin().await.expect("begin");
            let cutoff = cityhub_storage::time::now_micros() + 1_000_000;
            let pruned = cityhub_storage::repo::events::EventLog::prune(&txn, cutoff)
                .await
                .expect("prune");
            txn.commit().await.expect("commit");
            assert!(pruned >= 2, "pruned {pruned}");
        }

        let client = WsClient::connect(&hub, None).await;
        let mut old = client.events(json!(null), Some(&seen[0].cursor)).await;
        let error = old.error("CURSOR_EXPIRED").await;
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("without `after`")),
            "{error}"
        );
        // The newest pruned event's own cursor still resumes: nothing after it is gone.
        let mut edge = client.events(json!(null), Some(&seen[1].cursor)).await;
        assert_eq!(edge.event().await.slug, published[2]);
        // A cursor this hub never issued is bad input, not an expiry.
        let mut bad = client.events(json!(null), Some("not-a-cursor")).await;
        bad.error("BAD_USER_INPUT").await;
    }
);

/// The hub's `LISTEN` connections on the test database.
async fn listeners(admin: &sea_orm::DatabaseConnection) -> i64 {
    let row = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        ))
        .await
        .expect("pg_stat_activity")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("count")
}

/// Waits until the test database has `n` `LISTEN` connections. Polled:
/// PostgreSQL announces no new session.
async fn wait_listeners(admin: &sea_orm::DatabaseConnection, n: i64) {
    let what = format!("{n} LISTEN connections");
    crate::support::eventually(&what, WAIT, || async {
        let now = listeners(admin).await;
        if now == n { Ok(()) } else { Err(now) }
    })
    .await;
}

/// Publishes through `hub` and expects `stream` to see it (within
/// [`WAIT`], a deadline, not a latency bound).
async fn publish_and_expect(
    hub: &TestHub,
    token: &str,
    stream: &mut ws::Subscription,
    title: &str,
) -> String {
    let (_, slug) = publish(hub, token, workshop(title)).await;
    let event = stream.event().await;
    assert_eq!(event.slug, slug, "events in order");
    slug
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_share_events_and_survive_a_lost_listener() {
    if !crate::support::pg_available().await {
        return;
    }
    // Polling once an hour: what arrives here (within `WAIT`) arrived by
    // NOTIFY, however slow the machine.
    let quiet = |c: &mut cityhub::config::Config| c.events.poll_interval_ms = 3_600_000;
    let a = TestHub::start_with(Backend::Postgres, quiet).await;
    let b = TestHub::start_on(Backend::Postgres, a.test_db.clone(), quiet).await;
    let admin = sea_orm::Database::connect(&a.test_db.url)
        .await
        .expect("admin connection");
    wait_listeners(&admin, 2).await;
    let secretariat = a.token(None).await;
    let client = WsClient::connect(&b, None).await;
    let mut on_b = client.events(json!(null), None).await;
    client.synced().await;

    for i in 0..10 {
        publish_and_expect(&a, &secretariat, &mut on_b, &format!("Via A {i}")).await;
    }

    // Kill both instances' listener connections, and keep publishing.
    let killed = admin
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%' \
             AND pid <> pg_backend_pid()",
        ))
        .await
        .expect("terminate listeners");
    assert_eq!(killed.len(), 2, "both instances listen");
    for i in 0..10 {
        publish_and_expect(&a, &secretariat, &mut on_b, &format!("Lost {i}")).await;
    }
    // Reconnected: notifications flow again.
    wait_listeners(&admin, 2).await;
    for i in 0..10 {
        publish_and_expect(&a, &secretariat, &mut on_b, &format!("Again {i}")).await;
    }
    // And B's own writes reach subscribers of A.
    let client_a = WsClient::connect(&a, None).await;
    let mut on_a = client_a.events(json!(null), None).await;
    client_a.synced().await;
    let via_b = publish_and_expect(&b, &secretariat, &mut on_a, "Via B").await;
    assert_eq!(on_b.event().await.slug, via_b);
    let _ = admin.close().await;
}

/// PostgreSQL writers commit concurrently (no lock held through commit), so
/// a transaction that appended an event and is still open may commit below
/// later events. It holds them back: a subscriber gets nothing past it
/// until it commits, then every event once, in cursor order. The later
/// publish itself is acknowledged without waiting for the open
/// transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_open_writer_holds_back_later_events_without_blocking_them() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let secretariat = hub.token(None).await;
    let (first_id, first_slug) = publish(&hub, &secretariat, workshop("Held open")).await;
    let client = WsClient::connect(&hub, None).await;
    let mut stream = client.events(json!(null), None).await;
    client.synced().await;

    // An event appended in a transaction that stays open, on one of the
    // hub's connections (named as the hub's: the horizon waits only for
    // those).
    let open = hub.db.conn().begin().await.expect("begin");
    let name = open
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT current_setting('application_name') AS name",
        ))
        .await
        .expect("application_name")
        .expect("a row")
        .try_get::<String>("", "name")
        .expect("a name");
    assert_eq!(name, cityhub_storage::db::HUB_APPLICATION_NAME);
    cityhub_storage::repo::events::EventLog::append(
        &open,
        cityhub_storage::repo::events::NewEvent {
            activity: cityhub_domain::ActivityId(first_id.parse().expect("numeric id")),
            event_type: cityhub_domain::ActivityEventType::Updated,
            actor: None,
            status: cityhub_domain::ActivityStatus::Published,
            published_by: None,
        },
    )
    .await
    .expect("append in the open transaction");

    // A later publish commits and is acknowledged meanwhile.
    let (_, later) = tokio::time::timeout(
        WAIT,
        publish(&hub, &secretariat, workshop("Committed first")),
    )
    .await
    .expect("a publish does not wait for another open writer");
    // The data version (ETags, response cache) still moves with each
    // commit, although the open transaction commits below the later one.
    let etag = || async {
        let response = hub
            .client
            .get(hub.url())
            .query(&[("query", "{ network { activityCount } }")])
            .send()
            .await
            .expect("GET /graphql");
        response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .expect("an ETag")
    };
    let before_commit = etag().await;

    open.commit().await.expect("commit");
    assert_ne!(
        etag().await,
        before_commit,
        "a commit below the log's head changes the data version"
    );
    // The held event is the sentinel: it is committed after the later
    // publish was acknowledged, so had anything past it been delivered
    // while its transaction was open, that would arrive first. It arrives
    // first: nothing did.
    let sentinel = stream.event().await;
    assert_eq!(
        slugs(std::slice::from_ref(&sentinel)),
        [first_slug.as_str()],
        "nothing past the open transaction's event is delivered before it commits"
    );
    let events = [sentinel, stream.event().await];
    assert_eq!(slugs(&events), [first_slug.as_str(), later.as_str()]);
    assert_eq!(kinds(&events), ["UPDATED", "PUBLISHED"]);

    // A replay from before them yields the same two, in the same order.
    use base64::Engine;
    let seq = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&events[0].cursor)
            .expect("cursor"),
    )
    .expect("cursor text");
    let seq: i64 = seq.strip_prefix("ev:").expect("ev:").parse().expect("seq");
    let before = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("ev:{}", seq - 1));
    let mut replay = client.events(json!(null), Some(&before)).await;
    let replayed = replay.events(2).await;
    assert_eq!(replayed, events);
}

/// SQLite only: another instance's commits do not wake this one (no
/// NOTIFY) and its poll is off, so they reach its pump as one burst, larger
/// than its buffer, on its next own commit. Subscribers that already have
/// those events (they predate the subscription, or were replayed) must not
/// be closed for missing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_a_subscriber_already_has_does_not_close_it() {
    let tweak = |c: &mut cityhub::config::Config| {
        c.events.buffer = 16;
        c.events.poll_interval_ms = 60_000;
    };
    // The seeding, committed after the hub started, is the first burst.
    let a = TestHub::start_with(Backend::Sqlite, tweak).await;
    let b = TestHub::start_on(Backend::Sqlite, a.test_db.clone(), tweak).await;
    let secretariat = a.token(None).await;
    let first = WsClient::connect(&a, None).await;
    let mut first_stream = first.events(json!(null), None).await;
    first.synced().await;
    let (_, before) = publish(&a, &secretariat, workshop("Before the burst")).await;
    let seen = first_stream.event().await;
    assert_eq!(seen.slug, before, "the seeded backlog is not new to it");
    first.close().await;

    let mut burst = Vec::new();
    for i in 0..40 {
        burst.push(
            publish(&b, &secretariat, workshop(&format!("Burst {i}")))
                .await
                .1,
        );
    }
    let fresh = WsClient::connect(&a, None).await;
    let mut fresh_stream = fresh.events(json!(null), None).await;
    let resumed = WsClient::connect(&a, None).await;
    let mut resumed_stream = resumed.events(json!(null), Some(&seen.cursor)).await;
    fresh.synced().await;
    resumed.synced().await;
    let (_, after) = publish(&a, &secretariat, workshop("After the burst")).await;
    assert_eq!(fresh_stream.event().await.slug, after);
    let replayed = resumed_stream.events_until("PUBLISHED", &after).await;
    burst.push(after);
    assert_eq!(slugs(&replayed), burst);
}

both_backends!(
    a_slow_consumer_is_closed_and_resumes_with_its_cursor,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.events.buffer = 16;
            c.events.max_queued_messages = 16;
            // The socket of the consumer that does not read stays blocked
            // while we publish; the test is about the event buffer, not the
            // socket timeout.
            c.http.ws_send_timeout_secs = 60;
        })
        .await;
        let secretariat = hub.token(None).await;
        // Large events fill the socket buffers after a few dozen.
        let heavy = "subscription { activityEvents { cursor type activity { slug \
                     a: description b: description c: description d: description } } }";
        // The consumer that stops reading speaks raw frames: a client
        // library would read its socket ahead of it.
        let mut slow = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        slow.subscribe_query("slow", heavy, json!({})).await;
        let normal = WsClient::connect(&hub, None).await;
        let mut normal_stream = normal.events(json!(null), None).await;
        slow.synced().await;
        normal.synced().await;
        let description = "Printmaking, letterpress and paper. ".repeat(400);
        let mut published = Vec::new();
        for i in 0..200 {
            let (_, slug) = publish(
                &hub,
                &secretariat,
                json!({ "kind": "WORKSHOP", "title": format!("Busy workshop {i}"),
                        "description": description }),
            )
            .await;
            // A reader that keeps up (one event behind at most) gets all:
            // reading before the next publish keeps this free of CPU luck.
            assert_eq!(
                normal_stream.event().await.slug,
                slug,
                "a reader that keeps up"
            );
            published.push(slug);
        }

        // The consumer that did not read gets what was buffered, then a clear error.
        let mut received: Vec<(String, String)> = Vec::new();
        let error = loop {
            match slow.recv_for("slow", WAIT).await {
                Some(Incoming::Next { payload, .. }) if payload.get("errors").is_some() => {
                    break payload["errors"][0].clone();
                }
                Some(Incoming::Next { payload, .. }) => {
                    let e = &payload["data"]["activityEvents"];
                    received.push((
                        e["cursor"].as_str().expect("cursor").to_owned(),
                        e["activity"]["slug"].as_str().expect("slug").to_owned(),
                    ));
                }
                other => panic!("expected events then an error, got {other:?}"),
            }
        };
        assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("resubscribe") && m.contains("after")),
            "{error}"
        );
        assert!(
            matches!(
                slow.recv_for("slow", WAIT).await,
                Some(Incoming::Complete { .. })
            ),
            "the closed subscription completes"
        );
        assert!(
            !received.is_empty() && received.len() < 200,
            "received {} before the error",
            received.len()
        );
        let got: Vec<&str> = received.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(got, published[..got.len()], "in order until it fell behind");

        // Resuming with the last cursor received brings the rest, once each.
        let (cursor, _) = received.last().expect("received");
        let again = WsClient::connect(&hub, None).await;
        let mut rest = again.events(json!(null), Some(cursor)).await;
        let rest = rest
            .events_until("PUBLISHED", published.last().expect("published"))
            .await;
        assert_eq!(slugs(&rest), published[got.len()..]);
    }
);

both_backends!(
    refused_credentials_close_the_socket,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        // graphql-transport-ws: 4403, not a protocol error.
        let mut client = RawClient::open(&hub, Protocol::TransportWs).await;
        expect_refused(client.init(Some("not-a-jwt")).await, "a bad token");
        let mut client = RawClient::open(&hub, Protocol::TransportWs).await;
        let forged = format!("{}x", hub.token(Some("lyon")).await);
        expect_refused(client.init(Some(&forged)).await, "a bad signature");
        // Legacy graphql-ws: connection_error, then the socket closes.
        let mut legacy = RawClient::open(&hub, Protocol::LegacyWs).await;
        match legacy.init(Some("not-a-jwt")).await {
            Incoming::ConnectionError(payload) => {
                assert!(payload["message"].is_string(), "{payload}");
            }
            other => panic!("expected connection_error, got {other:?}"),
        }
        assert!(matches!(legacy.recv().await, Incoming::Closed { .. }));

        // No anonymous reads: no token, no socket; a token still works.
        let private = TestHub::start_with(backend, |c| c.auth.public_read = false).await;
        let mut anonymous = RawClient::open(&private, Protocol::TransportWs).await;
        expect_refused(anonymous.init(None).await, "anonymous");
        let lyon = private.token(Some("lyon")).await;
        let city = WsClient::connect(&private, Some(&lyon)).await;
        let mut stream = city.events(json!(null), None).await;
        city.synced().await;
        let (_, slug) = publish(&private, &lyon, workshop("Members only")).await;
        assert_eq!(stream.event().await.slug, slug);
    }
);

both_backends!(
    a_revoked_token_ends_its_subscriptions,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| c.events.token_check_secs = 1).await;
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let viewer = hub
            .ok("{ viewer { tokenId } }", json!({}), Some(&lyon))
            .await;
        let token_id = viewer["viewer"]["tokenId"].clone();
        let mut client = RawClient::connect(&hub, Protocol::TransportWs, Some(&lyon)).await;
        client.subscribe("s", json!(null), None).await;
        client
            .subscribe("t", json!({ "kinds": ["WORKSHOP"] }), None)
            .await;
        client.synced().await;
        let (_, slug) = publish(&hub, &lyon, workshop("Before revocation")).await;
        let before = client.event("s").await;
        assert_eq!(before.slug, slug);
        assert_eq!(client.event("t").await.slug, slug);
        let (_, plans) = publish_as(&hub, &lyon, workshop("Private plans"), true).await;
        assert_eq!(client.event("s").await.slug, plans);
        assert_eq!(client.event("t").await.slug, plans);

        let revoked = hub
            .ok(
                "mutation($id: ID!) { revokeToken(id: $id) }",
                json!({ "id": token_id }),
                Some(&secretariat),
            )
            .await;
        assert_eq!(revoked["revokeToken"], true);
        // The socket itself closes with 4403 and a reason (due within the
        // check interval plus the revocation cache; `WAIT` is a deadline,
        // not a latency bound).
        let closed = loop {
            match client.recv_within(WAIT).await {
                Some(Incoming::Closed { code, reason }) => break (code, reason),
                Some(_) => {}
                None => panic!("the socket of a revoked token stayed open"),
            }
        };
        assert_eq!(closed.0, Some(4403), "{closed:?}");
        assert!(!closed.1.is_empty(), "a reason is given");
        wait_subscribers_after_close(&hub, 0).await;
        let mut again = RawClient::open(&hub, Protocol::TransportWs).await;
        expect_refused(again.init(Some(&lyon)).await, "a revoked token");
    }
);

both_backends!(
    both_protocols_deliver_and_keep_alive,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| c.http.ws_keepalive_secs = 1).await;
        let lyon = hub.token(Some("lyon")).await;
        let mut modern = RawClient::connect(&hub, Protocol::TransportWs, Some(&lyon)).await;
        modern.subscribe("m", json!(null), None).await;
        let mut legacy = RawClient::connect(&hub, Protocol::LegacyWs, Some(&lyon)).await;
        legacy.subscribe("l", json!(null), None).await;
        modern.synced().await;
        legacy.synced().await;
        let (_, first) = publish(&hub, &lyon, workshop("Both protocols")).await;
        let m = modern.event("m").await;
        let l = legacy.event("l").await;
        assert_eq!(
            (m.slug.as_str(), m.kind.as_str()),
            (first.as_str(), "PUBLISHED")
        );
        assert_eq!(m, l, "the same event on either protocol");

        // Keep-alives: `ping` (answered with `pong`) and legacy `ka`; the
        // connections stay open across them.
        modern.keepalive().await;
        legacy.keepalive().await;
        modern.send(json!({ "type": "ping" })).await;
        modern.pong().await;
        let (_, second) = publish(&hub, &lyon, workshop("Still alive")).await;
        assert_eq!(modern.event("m").await.slug, second);
        assert_eq!(legacy.event("l").await.slug, second);

        // Stopping: legacy `stop` is answered with `complete`.
        legacy.stop("l").await;
        assert!(matches!(
            legacy.recv_for("l", WAIT).await,
            Some(Incoming::Complete { .. })
        ));
        modern.stop("m").await;
        modern.synced().await;
        assert_subscribers(&hub, 0).await;
    }
);

both_backends!(
    too_many_subscriptions_on_one_connection_are_refused,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.events.max_subscriptions_per_connection = 2;
            c.events.max_connections_per_token = 2;
        })
        .await;
        let secretariat = hub.token(None).await;
        let mut client = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        client.subscribe("a", json!(null), None).await;
        client.subscribe("b", json!(null), None).await;
        client.synced().await;
        assert_subscribers(&hub, 2).await;
        client.subscribe("c", json!(null), None).await;
        let error = client.error("c", "RATE_LIMITED").await;
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains('2')),
            "{error}"
        );
        assert_subscribers(&hub, 2).await;
        // The allowance is per connection.
        let mut other = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        other.subscribe("x", json!(null), None).await;
        other.synced().await;
        assert_subscribers(&hub, 3).await;
        // Stopping one frees its slot.
        client.stop("a").await;
        client.synced().await;
        assert_subscribers(&hub, 2).await;
        client.subscribe("d", json!(null), None).await;
        client.synced().await;
        assert_subscribers(&hub, 3).await;
        let (_, slug) = publish(&hub, &secretariat, workshop("Within limits")).await;
        assert_eq!(client.event("b").await.slug, slug);
        assert_eq!(client.event("d").await.slug, slug);
        assert_eq!(other.event("x").await.slug, slug);
        assert!(
            client
                .pending
                .iter()
                .all(|m| m.id() != Some("a") || matches!(m, Incoming::Complete { .. })),
            "a stopped subscription delivers nothing: {:?}",
            client.pending
        );

        // Connections per token are limited too (4429), and a closed one
        // frees its slot.
        let lyon = hub.token(Some("lyon")).await;
        let mut held = Vec::new();
        for _ in 0..hub.config.events.max_connections_per_token {
            held.push(RawClient::connect(&hub, Protocol::TransportWs, Some(&lyon)).await);
        }
        let mut extra = RawClient::open(&hub, Protocol::TransportWs).await;
        match extra.init(Some(&lyon)).await {
            Incoming::Closed {
                code: Some(4429), ..
            } => {}
            other => panic!("expected a 4429 close, got {other:?}"),
        }
        held.pop().expect("a connection").close().await;
        let deadline = Instant::now() + WAIT;
        loop {
            let mut retry = RawClient::open(&hub, Protocol::TransportWs).await;
            match retry.init(Some(&lyon)).await {
                Incoming::Ack => break,
                Incoming::Closed {
                    code: Some(4429), ..
                } if Instant::now() < deadline => {
                    // The slot frees when the hub has torn the closed
                    // socket down, which it announces to no one: retried.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("the freed slot was not reusable: {other:?}"),
            }
        }
    }
);

/// The hub still answers a fresh client normally.
async fn still_serves(hub: &TestHub) {
    let client = WsClient::connect(hub, None).await;
    let mut query = client.subscribe("{ network { name } }", json!({})).await;
    let payload = query.payload().await;
    assert!(payload["data"]["network"]["name"].is_string(), "{payload}");
}

both_backends!(
    graphql_transport_ws_close_codes_follow_the_protocol,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.events.init_timeout_secs = 1;
            c.events.max_message_bytes = 2048;
        })
        .await;
        let lyon = hub.token(Some("lyon")).await;

        // No connection_init in time: 4408.
        let mut silent = RawClient::open(&hub, Protocol::TransportWs).await;
        assert_eq!(silent.closed_with().await.0, Some(4408));

        // subscribe before connection_ack: 4401.
        let mut early = RawClient::open(&hub, Protocol::TransportWs).await;
        early.subscribe("s", json!(null), None).await;
        assert_eq!(early.closed_with().await.0, Some(4401));

        // A second connection_init: 4429.
        let mut twice = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        twice
            .send(json!({ "type": "connection_init", "payload": {} }))
            .await;
        assert_eq!(twice.closed_with().await.0, Some(4429));

        // A duplicate operation id: 4409.
        let mut dup = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        dup.subscribe("same", json!(null), None).await;
        dup.subscribe("same", json!(null), None).await;
        let (code, reason) = dup.closed_with().await;
        assert_eq!(code, Some(4409));
        assert!(reason.contains("same"), "{reason}");

        // Ambiguous or non-string credentials: 4403, never anonymous.
        let bearer = format!("Bearer {lyon}");
        for payload in [
            json!({ "Authorization": 1, "authorization": bearer }),
            json!({ "authorization": bearer, "Authorization": bearer }),
            json!({ "authorization": 42 }),
            json!({ "authorization": { "token": bearer } }),
            json!({ "authorization": bearer, "headers": { "authorization": bearer } }),
        ] {
            let mut client = RawClient::open(&hub, Protocol::TransportWs).await;
            client
                .send(json!({ "type": "connection_init", "payload": payload }))
                .await;
            expect_refused(client.recv().await, &payload.to_string());
        }

        // A message over events.max_message_bytes: 4400; so is one that is
        // not a protocol message.
        let mut big = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        let padding = " ".repeat(3000);
        big.subscribe_query(
            "b",
            &format!("{{ network {{ name }} }}{padding}"),
            json!({}),
        )
        .await;
        assert_eq!(big.closed_with().await.0, Some(4400));
        let mut junk = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        junk.send(json!({ "type": "nonsense" })).await;
        assert_eq!(junk.closed_with().await.0, Some(4400));

        // After all of it, the hub answers normally.
        still_serves(&hub).await;
    }
);

both_backends!(
    queries_and_mutations_run_over_websocket_until_the_token_ends,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let mut client = RawClient::connect(&hub, Protocol::TransportWs, Some(&lyon)).await;
        client
            .subscribe_query(
                "m",
                "mutation($i: ActivityInput!) { publishActivity(input: $i) { slug } }",
                json!({ "i": workshop("Published over a socket") }),
            )
            .await;
        let slug = match client.recv_for("m", WAIT).await {
            Some(Incoming::Next { payload, .. }) => payload["data"]["publishActivity"]["slug"]
                .as_str()
                .unwrap_or_else(|| panic!("{payload}"))
                .to_owned(),
            other => panic!("expected a result, got {other:?}"),
        };
        assert!(matches!(
            client.recv_for("m", WAIT).await,
            Some(Incoming::Complete { .. })
        ));
        let found = hub
            .ok(
                "query($s: String!) { activity(slug: $s) { slug } }",
                json!({ "s": slug }),
                None,
            )
            .await;
        assert_eq!(found["activity"]["slug"], slug.as_str());

        // Validation errors carry their code.
        client
            .subscribe_query("bad", "{ noSuchField }", json!({}))
            .await;
        client.error("bad", "GRAPHQL_VALIDATION_FAILED").await;

        // Once the token is revoked, the next operation closes the socket
        // with 4403 and does not run.
        let viewer = hub
            .ok("{ viewer { tokenId } }", json!({}), Some(&lyon))
            .await;
        hub.ok(
            "mutation($id: ID!) { revokeToken(id: $id) }",
            json!({ "id": viewer["viewer"]["tokenId"] }),
            Some(&secretariat),
        )
        .await;
        client
            .subscribe_query(
                "late",
                "mutation($i: ActivityInput!) { publishActivity(input: $i) { slug } }",
                json!({ "i": workshop("Never published") }),
            )
            .await;
        let (code, _) = client.closed_with().await;
        assert_eq!(code, Some(4403));
        let listed = hub
            .ok(
                "{ activities(filter: { text: \"Never published\" }) { totalCount } }",
                json!({}),
                None,
            )
            .await;
        assert_eq!(listed["activities"]["totalCount"], 0);
        still_serves(&hub).await;
    }
);

both_backends!(
    deleted_activities_leave_no_content_in_events,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let detail = "subscription($after: String) { activityEvents(after: $after) { \
                      cursor type activity { id globalId deleted slug title summary description venue themes } } }";
        let live = WsClient::connect(&hub, None).await;
        let mut live_stream = live.subscribe(detail, json!({})).await;
        live.synced().await;
        let (_, marker) = publish(&hub, &lyon, workshop("Marker")).await;
        let first = live_stream.payload().await["data"]["activityEvents"].clone();
        assert_eq!(first["activity"]["slug"], marker.as_str());
        assert_eq!(first["activity"]["deleted"], false, "{first}");
        let (id, slug) = publish(
            &hub,
            &lyon,
            json!({ "kind": "WORKSHOP", "title": "Secret plans",
                    "summary": "Confidential summary", "themes": ["secrets"] }),
        )
        .await;
        delete(&hub, &lyon, &id).await;
        // Live: the PUBLISHED event went out while it existed; the DELETED
        // one carries no content.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.push(live_stream.payload().await["data"]["activityEvents"].clone());
        }
        let deleted = &seen[1];
        assert_eq!(deleted["type"], "DELETED");
        assert_eq!(deleted["activity"]["slug"], slug.as_str());
        // Replayed: every event of the deleted activity is a tombstone.
        let replay = WsClient::connect(&hub, None).await;
        let mut replay_stream = replay
            .subscribe(detail, json!({ "after": first["cursor"] }))
            .await;
        let mut replayed = Vec::new();
        while replayed.len() < 2 {
            replayed.push(replay_stream.payload().await["data"]["activityEvents"].clone());
        }
        assert_eq!(replayed[0]["type"], "PUBLISHED");
        assert_eq!(replayed[1]["type"], "DELETED");
        for event in replayed.iter().chain(std::iter::once(deleted)) {
            let a = &event["activity"];
            assert_eq!(a["id"], id.as_str(), "{event}");
            assert_eq!(a["slug"], slug.as_str(), "{event}");
            // A tombstone says it is one, and keeps its global id.
            assert_eq!(a["deleted"], true, "{event}");
            assert!(a["globalId"].as_str().is_some_and(|g| !g.is_empty()));
            let text = a.to_string();
            assert!(
                !text.contains("Secret")
                    && !text.contains("Confidential")
                    && !text.contains("secrets"),
                "a tombstone carries no content: {event}"
            );
        }
    }
);

/// The hub's count of SQL statements run (`cityhub_db_queries`).
async fn db_queries(hub: &TestHub) -> f64 {
    let text = hub
        .client
        .get(format!("{}/metrics", hub.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with("cityhub_db_queries"))
        .filter_map(|l| l.split_once(' '))
        .find_map(|(_, v)| v.trim().parse::<f64>().ok())
        .expect("a query counter")
}

both_backends!(
    identical_subscriptions_share_one_execution,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        // A selection that reaches beyond the event's preloaded data: it
        // queries the database each time it is executed.
        let deep = "subscription { activityEvents { cursor type \
                    activity { slug title } actor { slug activities(first: 1) { totalCount } } } }";
        let one = WsClient::connect(&hub, None).await;
        let mut one_stream = one.subscribe(deep, json!({})).await;
        one.synced().await;
        let before = db_queries(&hub).await;
        let (_, a) = publish(&hub, &lyon, workshop("Executed once")).await;
        let got = one_stream.payload().await;
        assert!(
            got["data"]["activityEvents"]["activity"]["slug"] == a.as_str()
                && got["data"]["activityEvents"]["actor"]["activities"]["totalCount"].as_i64()
                    >= Some(1),
            "{got}"
        );
        let alone = db_queries(&hub).await - before;

        // Forty more identical subscribers on other sockets, and one with
        // a different filter: each gets every event it should.
        let mut many = Vec::new();
        for _ in 0..40 {
            let client = WsClient::connect(&hub, None).await;
            let stream = client.subscribe(deep, json!({})).await;
            client.synced().await;
            many.push((client, stream));
        }
        let other = WsClient::connect(&hub, None).await;
        let mut other_stream = other.events(json!({ "kinds": ["FESTIVAL"] }), None).await;
        other.synced().await;
        assert_subscribers(&hub, 42).await;
        let before = db_queries(&hub).await;
        let (_, b) = publish(&hub, &lyon, workshop("Shared by all")).await;
        let streams = many.iter_mut().map(|(_, stream)| stream);
        for stream in streams.chain(std::iter::once(&mut one_stream)) {
            let payload = stream.payload().await;
            assert_eq!(
                payload["data"]["activityEvents"]["activity"]["slug"],
                b.as_str(),
                "{payload}"
            );
        }
        let shared = db_queries(&hub).await - before;
        // Slack for the pump's extra log reads on PostgreSQL while an open
        // writer of the hub holds the read horizon back; a query per
        // subscriber would add 41.
        assert!(
            shared <= alone + 20.0,
            "41 identical subscribers ran {shared} statements for one event, one ran {alone}"
        );
        // The filtered subscriber saw nothing of the workshops; it gets a festival.
        let (_, fest) = publish(
            &hub,
            &lyon,
            json!({ "kind": "FESTIVAL", "title": "Only for the filter" }),
        )
        .await;
        assert_eq!(other_stream.event().await.slug, fest);
        // A subscriber joining the running group gets only what comes next.
        let late = WsClient::connect(&hub, None).await;
        let mut late_stream = late.subscribe(deep, json!({})).await;
        late.synced().await;
        assert_subscribers(&hub, 43).await;
        let (_, c) = publish(&hub, &lyon, workshop("After the late joiner")).await;
        let payload = late_stream.payload().await;
        assert_eq!(
            payload["data"]["activityEvents"]["activity"]["slug"],
            c.as_str(),
            "{payload}"
        );
    }
);
