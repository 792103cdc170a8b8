//! Invitations (issue 19): naming another member city as co-host or venue
//! city invites it, and the activity becomes that city's only once it
//! accepts. Checked from outside, over HTTP and WebSocket, on both
//! backends: the invited city's surfaces (its filtered listing,
//! `city.activities`, calendar, Atom feed, the widget's query, its counts)
//! before and after its answer, the hosts and venue city, the permission
//! to edit, who sees the invitations, the answers' errors, leaving after
//! accepting, the secretariat's direct naming, concurrent answers, the
//! events, and the migration down and up with data in place.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub, cityhub_ok as run};
use crate::ws::WsClient;

/// The activity fields the stories look at.
const ACTIVITY: &str = "id slug version hosts { slug } venueCity { slug } \
    invitations { city { slug } role state }";

/// Publishes `input` as `token`; returns the activity.
async fn publish(hub: &TestHub, token: &str, input: Value) -> Value {
    hub.ok(
        &format!(
            "mutation($i: ActivityInput!, $d: Boolean) {{ publishActivity(input: $i, draft: $d) {{ {ACTIVITY} }} }}"
        ),
        json!({ "i": input, "d": false }),
        Some(token),
    )
    .await["publishActivity"]
        .clone()
}

/// A festival in Lyon's name titled `title`, naming `extra`'s cities.
fn festival(title: &str, extra: Value) -> Value {
    let mut input = json!({
        "kind": "FESTIVAL",
        "title": title,
        "startDate": "2027-12-08",
        "endDate": "2027-12-11",
        "fields": ["MEDIA_ARTS"],
    });
    if let (Some(base), Some(more)) = (input.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    input
}

/// Reads an activity by id as `token`.
async fn read(hub: &TestHub, id: &str, token: Option<&str>) -> Value {
    hub.ok(
        &format!("query($id: ID!) {{ activity(id: $id) {{ {ACTIVITY} }} }}"),
        json!({ "id": id }),
        token,
    )
    .await["activity"]
        .clone()
}

const ACCEPT: &str = "mutation($a: ID!) { acceptInvitation(activity: $a) { id slug version hosts { slug } venueCity { slug } invitations { city { slug } role state } } }";
const DECLINE: &str = "mutation($a: ID!) { declineInvitation(activity: $a) { id slug version hosts { slug } venueCity { slug } invitations { city { slug } role state } } }";
const RETITLE: &str =
    "mutation($id: ID!, $t: String!) { updateActivity(id: $id, patch: { title: $t }) { title } }";

fn slugs(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|c| c["slug"].as_str().expect("slug").to_owned())
        .collect()
}

/// `(city, role, state)` of an activity's `invitations`, as read.
fn invitations(activity: &Value) -> Vec<(String, String, String)> {
    activity["invitations"]
        .as_array()
        .unwrap_or_else(|| panic!("invitations: {activity}"))
        .iter()
        .map(|i| {
            (
                i["city"]["slug"].as_str().expect("city").to_owned(),
                i["role"].as_str().expect("role").to_owned(),
                i["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

fn invitation(city: &str, role: &str, state: &str) -> (String, String, String) {
    (city.to_owned(), role.to_owned(), state.to_owned())
}

/// Everything a member city's own surfaces show: what its website, its
/// calendar subscribers and its dashboard see.
#[derive(Debug)]
struct Surfaces {
    /// `activities(filter: { cities: [city] })`.
    listing: BTreeSet<String>,
    /// Its `totalCount`.
    listing_total: i64,
    /// `city(slug) { activities }`.
    city_activities: BTreeSet<String>,
    /// `/cities/{city}/calendar.ics`.
    calendar: String,
    /// `/cities/{city}/feed.atom`, parsed: entry link → author names.
    feed: Vec<(String, Vec<String>)>,
    /// The widget's own query over `GET /graphql`, as `embed.js` sends it.
    widget: BTreeSet<String>,
    /// `stats(filter: { cities: [city] }) { total }`.
    stats_total: i64,
}

impl Surfaces {
    /// Which surfaces show `slug` (empty: none; all seven: every one).
    fn showing(&self, slug: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.listing.contains(slug) {
            out.push("listing");
        }
        if self.city_activities.contains(slug) {
            out.push("city.activities");
        }
        if self.calendar.contains(&format!("/activities/{slug}")) {
            out.push("calendar");
        }
        if self
            .feed
            .iter()
            .any(|(link, _)| link.ends_with(&format!("/activities/{slug}")))
        {
            out.push("feed");
        }
        if self.widget.contains(slug) {
            out.push("widget");
        }
        out
    }

    /// The feed entry's authors for `slug`.
    fn feed_authors(&self, slug: &str) -> Vec<String> {
        self.feed
            .iter()
            .find(|(link, _)| link.ends_with(&format!("/activities/{slug}")))
            .map(|(_, authors)| authors.clone())
            .unwrap_or_default()
    }
}

const EVERY_SURFACE: [&str; 5] = ["listing", "city.activities", "calendar", "feed", "widget"];

/// Reads `city`'s surfaces, anonymously, as a city's website does.
async fn surfaces(hub: &TestHub, city: &str) -> Surfaces {
    let data = hub
        .ok(
            "query($c: String!) { activities(filter: { cities: [$c] }, first: 100) { totalCount nodes { slug } } \
             city(slug: $c) { activities(first: 100) { nodes { slug } } } \
             stats(filter: { cities: [$c] }) { total } }",
            json!({ "c": city }),
            None,
        )
        .await;
    let nodes = |v: &Value| -> BTreeSet<String> { slugs(&v["nodes"]).into_iter().collect() };
    let get = |path: String| async move {
        let response = hub
            .client
            .get(format!("{}{path}", hub.base))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.text().await.expect("body")
    };
    let calendar = get(format!("/cities/{city}/calendar.ics")).await;
    let feed_text = get(format!("/cities/{city}/feed.atom")).await;
    let feed = feed_rs::parser::parse(feed_text.as_bytes())
        .expect("a valid Atom feed")
        .entries
        .into_iter()
        .map(|e| {
            (
                e.links.first().map(|l| l.href.clone()).unwrap_or_default(),
                e.authors.into_iter().map(|a| a.name).collect(),
            )
        })
        .collect();
    // `crates/web/assets/embed.js`'s query and variables for `data-city`.
    let widget_query = "query CityhubWidget($filter: ActivityFilter, $first: Int, $city: String, $hasCity: Boolean!) { \
        city(slug: $city) @include(if: $hasCity) { name } \
        activities(filter: $filter, orderBy: START_DATE_ASC, first: $first) { \
        nodes { slug title status startDate endDate datePrecision venue venueCity { name } } } }";
    let variables = json!({
        "filter": { "from": "2000-01-01", "statuses": ["PUBLISHED", "CANCELLED"], "cities": [city] },
        "first": 100, "city": city, "hasCity": true,
    });
    let widget: Value = hub
        .client
        .get(hub.url())
        .header("Accept", "application/json")
        .query(&[
            ("query", widget_query.to_owned()),
            ("variables", variables.to_string()),
        ])
        .send()
        .await
        .expect("widget request")
        .json()
        .await
        .expect("widget JSON");
    assert!(widget.get("errors").is_none(), "{widget}");
    Surfaces {
        listing: nodes(&data["activities"]),
        listing_total: data["activities"]["totalCount"].as_i64().expect("total"),
        city_activities: nodes(&data["city"]["activities"]),
        calendar,
        feed,
        widget: nodes(&widget["data"]["activities"]),
        stats_total: data["stats"]["total"].as_i64().expect("stats total"),
    }
}

async fn viewer_invitations(hub: &TestHub, token: &str) -> Vec<String> {
    slugs(
        &hub.ok(
            "{ viewer { invitations { slug } } }",
            json!({}),
            Some(token),
        )
        .await["viewer"]["invitations"],
    )
}

both_backends!(
    an_invited_city_shows_nothing_until_it_accepts,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let bologna = hub.token(Some("bologna")).await;
        let before = surfaces(&hub, "seoul").await;

        // Published with the contract's older fields only, so the story
        // reads the same against a hub without invitations.
        let a = hub
            .ok(
                "mutation($i: ActivityInput!) { publishActivity(input: $i) { id slug hosts { slug } venueCity { slug } } }",
                json!({ "i": festival(
                    "Festival of lights in Lyon",
                    json!({ "coHosts": ["seoul"], "venueCity": "kanazawa" }),
                ) }),
                Some(&lyon),
            )
            .await["publishActivity"]
            .clone();
        let (id, slug) = (
            a["id"].as_str().expect("id").to_owned(),
            a["slug"].as_str().expect("slug").to_owned(),
        );

        // Nothing of it on Seoul's surfaces, nor in Seoul's counts.
        let pending = surfaces(&hub, "seoul").await;
        assert_eq!(
            pending.showing(&slug),
            Vec::<&str>::new(),
            "on Seoul's surfaces"
        );
        assert_eq!(pending.listing_total, before.listing_total);
        assert_eq!(pending.stats_total, before.stats_total);
        assert_eq!(slugs(&a["hosts"]), ["lyon"], "only the publisher hosts");
        assert_eq!(
            a["venueCity"],
            Value::Null,
            "the venue city has not accepted"
        );
        // Seoul may not edit it, but it knows what waits for it.
        hub.fails(
            RETITLE,
            json!({ "id": id, "t": "Seoul's festival" }),
            Some(&seoul),
            "FORBIDDEN",
        )
        .await;
        assert_eq!(
            viewer_invitations(&hub, &seoul).await,
            std::slice::from_ref(&slug)
        );
        assert!(viewer_invitations(&hub, &lyon).await.is_empty());
        // The invitations: every one to the host, its own to Seoul, none
        // to a third city or an anonymous reader.
        assert_eq!(
            invitations(&read(&hub, &id, Some(&lyon)).await),
            [
                invitation("seoul", "CO_HOST", "PENDING"),
                invitation("kanazawa", "VENUE", "PENDING")
            ]
        );
        assert_eq!(
            invitations(&read(&hub, &id, Some(&seoul)).await),
            [invitation("seoul", "CO_HOST", "PENDING")]
        );
        assert!(invitations(&read(&hub, &id, Some(&bologna)).await).is_empty());
        assert!(invitations(&read(&hub, &id, None).await).is_empty());

        // Seoul accepts: the activity is Seoul's, everywhere.
        let accepted =
            hub.ok(ACCEPT, json!({ "a": id }), Some(&seoul)).await["acceptInvitation"].clone();
        assert_eq!(slugs(&accepted["hosts"]), ["lyon", "seoul"]);
        assert_eq!(accepted["version"], 2, "an answer is a change");
        assert_eq!(
            invitations(&accepted),
            [
                invitation("seoul", "CO_HOST", "ACCEPTED"),
                invitation("kanazawa", "VENUE", "PENDING")
            ],
            "a host sees every invitation"
        );
        let after = surfaces(&hub, "seoul").await;
        assert_eq!(after.showing(&slug), EVERY_SURFACE, "{after:?}");
        assert_eq!(after.listing_total, before.listing_total + 1);
        assert_eq!(after.stats_total, before.stats_total + 1);
        let mut authors = after.feed_authors(&slug);
        authors.sort();
        assert_eq!(
            authors,
            ["Lyon", "Seoul"],
            "Seoul is an author of the entry"
        );
        assert!(viewer_invitations(&hub, &seoul).await.is_empty());
        hub.ok(
            RETITLE,
            json!({ "id": id, "t": "Festival of lights in Lyon and Seoul" }),
            Some(&seoul),
        )
        .await;
        // Kanazawa, still only invited, is not its venue city anywhere.
        assert_eq!(
            surfaces(&hub, "kanazawa").await.showing(&slug),
            Vec::<&str>::new()
        );
        hub.stop().await;
    }
);

both_backends!(
    a_declined_venue_city_never_shows_it,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let kanazawa = hub.token(Some("kanazawa")).await;
        let a = publish(
            &hub,
            &lyon,
            festival(
                "Media arts night",
                json!({ "coHosts": ["seoul"], "venueCity": "kanazawa" }),
            ),
        )
        .await;
        let (id, slug) = (
            a["id"].as_str().expect("id").to_owned(),
            a["slug"].as_str().expect("slug").to_owned(),
        );
        let declined =
            hub.ok(DECLINE, json!({ "a": id }), Some(&kanazawa)).await["declineInvitation"].clone();
        assert_eq!(declined["venueCity"], Value::Null);
        assert_eq!(
            invitations(&declined),
            [invitation("kanazawa", "VENUE", "DECLINED")],
            "the invited city sees its own answer"
        );
        assert_eq!(
            invitations(&read(&hub, &id, Some(&lyon)).await),
            [
                invitation("seoul", "CO_HOST", "PENDING"),
                invitation("kanazawa", "VENUE", "DECLINED")
            ],
            "the host sees the answer"
        );
        assert_eq!(
            surfaces(&hub, "kanazawa").await.showing(&slug),
            Vec::<&str>::new()
        );
        assert!(viewer_invitations(&hub, &kanazawa).await.is_empty());
        hub.fails(
            RETITLE,
            json!({ "id": id, "t": "Kanazawa's night" }),
            Some(&kanazawa),
            "FORBIDDEN",
        )
        .await;
        // An edit of something else keeps the answer; naming Kanazawa
        // again invites it again.
        hub.ok(
            RETITLE,
            json!({ "id": id, "t": "Media arts night, second edition" }),
            Some(&lyon),
        )
        .await;
        assert_eq!(
            invitations(&read(&hub, &id, Some(&kanazawa)).await),
            [invitation("kanazawa", "VENUE", "DECLINED")]
        );
        hub.ok(
            "mutation($id: ID!) { updateActivity(id: $id, patch: { venueCity: \"kanazawa\", venue: \"Kanazawa 21st Century Museum\" }) { id } }",
            json!({ "id": id }),
            Some(&lyon),
        )
        .await;
        assert_eq!(
            invitations(&read(&hub, &id, Some(&kanazawa)).await),
            [invitation("kanazawa", "VENUE", "PENDING")]
        );
        assert_eq!(viewer_invitations(&hub, &kanazawa).await, [slug]);
        hub.stop().await;
    }
);

both_backends!(
    answers_are_refused_with_the_contract_codes,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let bologna = hub.token(Some("bologna")).await;
        let secretariat = hub.token(None).await;
        let a = publish(
            &hub,
            &lyon,
            festival("Answered once", json!({ "coHosts": ["seoul"] })),
        )
        .await;
        let id = a["id"].as_str().expect("id").to_owned();
        for mutation in [ACCEPT, DECLINE] {
            // A city that is not invited, the publisher itself, the
            // secretariat (which no one invites), and no token at all.
            hub.fails(mutation, json!({ "a": id }), Some(&bologna), "FORBIDDEN")
                .await;
            hub.fails(mutation, json!({ "a": id }), Some(&lyon), "FORBIDDEN")
                .await;
            hub.fails(
                mutation,
                json!({ "a": id }),
                Some(&secretariat),
                "FORBIDDEN",
            )
            .await;
            hub.fails(mutation, json!({ "a": id }), None, "UNAUTHENTICATED")
                .await;
            // No such activity.
            hub.fails(
                mutation,
                json!({ "a": "999999" }),
                Some(&seoul),
                "NOT_FOUND",
            )
            .await;
        }
        // Answering twice is a conflict; so is accepting what was declined.
        hub.ok(ACCEPT, json!({ "a": id }), Some(&seoul)).await;
        hub.fails(ACCEPT, json!({ "a": id }), Some(&seoul), "CONFLICT")
            .await;
        hub.ok(DECLINE, json!({ "a": id }), Some(&seoul)).await;
        hub.fails(DECLINE, json!({ "a": id }), Some(&seoul), "CONFLICT")
            .await;
        hub.fails(ACCEPT, json!({ "a": id }), Some(&seoul), "CONFLICT")
            .await;
        // A draft's invitation waits unseen: the invited city cannot see
        // the draft, so it is not found, and not listed.
        let draft = hub
            .ok(
                "mutation($i: ActivityInput!) { publishActivity(input: $i, draft: true) { id slug } }",
                json!({ "i": festival("Draft festival", json!({ "coHosts": ["seoul"] })) }),
                Some(&lyon),
            )
            .await["publishActivity"]
            .clone();
        let draft_id = draft["id"].as_str().expect("id").to_owned();
        hub.fails(ACCEPT, json!({ "a": draft_id }), Some(&seoul), "NOT_FOUND")
            .await;
        assert!(viewer_invitations(&hub, &seoul).await.is_empty());
        // Once public, it waits for Seoul.
        hub.ok(
            "mutation($id: ID!) { publishDraft(id: $id) { id } }",
            json!({ "id": draft_id }),
            Some(&lyon),
        )
        .await;
        assert_eq!(
            viewer_invitations(&hub, &seoul).await,
            [draft["slug"].as_str().expect("slug").to_owned()]
        );
        // Every answer is audited, with its versions.
        let rows =
            cityhub_storage::repo::audit::AuditRepo::for_target(hub.db.conn(), "activity", &id)
                .await
                .expect("audit rows");
        let actions: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.actor.as_str(), r.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("city:lyon", "publishActivity"),
                ("city:seoul", "acceptInvitation"),
                ("city:seoul", "declineInvitation")
            ]
        );
        hub.stop().await;
    }
);

both_backends!(
    a_co_host_leaves_by_declining_after_accepting,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let a = publish(
            &hub,
            &lyon,
            festival("Light and sound", json!({ "coHosts": ["seoul"] })),
        )
        .await;
        let (id, slug) = (
            a["id"].as_str().expect("id").to_owned(),
            a["slug"].as_str().expect("slug").to_owned(),
        );
        hub.ok(ACCEPT, json!({ "a": id }), Some(&seoul)).await;
        assert_eq!(surfaces(&hub, "seoul").await.showing(&slug), EVERY_SURFACE);
        let left =
            hub.ok(DECLINE, json!({ "a": id }), Some(&seoul)).await["declineInvitation"].clone();
        assert_eq!(slugs(&left["hosts"]), ["lyon"]);
        assert_eq!(left["version"], 3);
        assert_eq!(
            surfaces(&hub, "seoul").await.showing(&slug),
            Vec::<&str>::new()
        );
        hub.fails(
            RETITLE,
            json!({ "id": id, "t": "Seoul's now" }),
            Some(&seoul),
            "FORBIDDEN",
        )
        .await;
        assert_eq!(
            invitations(&read(&hub, &id, Some(&lyon)).await),
            [invitation("seoul", "CO_HOST", "DECLINED")]
        );
        hub.stop().await;
    }
);

both_backends!(
    the_secretariat_names_cities_directly_and_edits_invite,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let secretariat = hub.token(None).await;
        // The seeded network counts as accepted.
        let seeded = hub
            .ok(
                &format!("{{ activity(slug: \"annual-meeting-2011-seoul\") {{ {ACTIVITY} }} }}"),
                json!({}),
                Some(&seoul),
            )
            .await["activity"]
            .clone();
        assert_eq!(slugs(&seeded["hosts"]), ["seoul"]);
        assert_eq!(seeded["venueCity"]["slug"], "seoul");
        assert_eq!(
            invitations(&seeded),
            [
                invitation("seoul", "CO_HOST", "ACCEPTED"),
                invitation("seoul", "VENUE", "ACCEPTED")
            ]
        );
        // The secretariat's names are accepted at once.
        let network = publish(
            &hub,
            &secretariat,
            festival(
                "Network forum",
                json!({ "coHosts": ["seoul", "bologna"], "venueCity": "dakar" }),
            ),
        )
        .await;
        assert_eq!(slugs(&network["hosts"]), ["seoul", "bologna"]);
        assert_eq!(network["venueCity"]["slug"], "dakar");
        assert!(
            surfaces(&hub, "dakar")
                .await
                .showing(network["slug"].as_str().expect("slug"))
                .contains(&"listing")
        );
        // A city's edit invites the cities it adds; the secretariat's sets them.
        let a = publish(&hub, &lyon, festival("Edited festival", json!({}))).await;
        let id = a["id"].as_str().expect("id").to_owned();
        let patch = "mutation($id: ID!, $p: ActivityPatch!) { updateActivity(id: $id, patch: $p) { id slug version hosts { slug } venueCity { slug } invitations { city { slug } role state } } }";
        let edited = hub
            .ok(
                patch,
                json!({ "id": id, "p": { "coHosts": ["seoul", "bologna"] } }),
                Some(&lyon),
            )
            .await["updateActivity"]
            .clone();
        assert_eq!(slugs(&edited["hosts"]), ["lyon"]);
        assert_eq!(
            invitations(&edited),
            [
                invitation("seoul", "CO_HOST", "PENDING"),
                invitation("bologna", "CO_HOST", "PENDING")
            ]
        );
        let edited = hub
            .ok(
                patch,
                json!({ "id": id, "p": { "coHosts": ["seoul", "bologna", "dakar"], "venueCity": "kobe" } }),
                Some(&secretariat),
            )
            .await["updateActivity"]
            .clone();
        assert_eq!(slugs(&edited["hosts"]), ["lyon", "dakar"]);
        assert_eq!(edited["venueCity"]["slug"], "kobe");
        assert_eq!(
            invitations(&edited),
            [
                invitation("seoul", "CO_HOST", "PENDING"),
                invitation("bologna", "CO_HOST", "PENDING"),
                invitation("dakar", "CO_HOST", "ACCEPTED"),
                invitation("kobe", "VENUE", "ACCEPTED")
            ],
            "names kept keep their state"
        );
        // Removing a name removes its invitation, and the host if accepted.
        hub.ok(ACCEPT, json!({ "a": id }), Some(&seoul)).await;
        let edited = hub
            .ok(
                patch,
                json!({ "id": id, "p": { "coHosts": ["bologna"], "venueCity": null } }),
                Some(&lyon),
            )
            .await["updateActivity"]
            .clone();
        assert_eq!(slugs(&edited["hosts"]), ["lyon"]);
        assert_eq!(edited["venueCity"], Value::Null);
        assert_eq!(
            invitations(&edited),
            [invitation("bologna", "CO_HOST", "PENDING")]
        );
        assert!(viewer_invitations(&hub, &seoul).await.is_empty());
        hub.stop().await;
    }
);

both_backends!(
    concurrent_answers_lose_nothing,
    |backend: Backend| async move {
        let hub = Arc::new(TestHub::start(backend).await);
        let lyon = hub.token(Some("lyon")).await;
        let invited = ["seoul", "bologna", "dakar", "kobe", "braga", "quito"];
        let a = publish(
            &hub,
            &lyon,
            festival(
                "Crowded festival",
                json!({ "coHosts": invited, "venueCity": "seoul" }),
            ),
        )
        .await;
        let id = a["id"].as_str().expect("id").to_owned();
        let mut tokens = Vec::new();
        for city in invited {
            tokens.push(hub.token(Some(city)).await);
        }
        let answers = tokens.into_iter().enumerate().map(|(i, token)| {
            let hub = hub.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let mutation = if i % 3 == 2 { DECLINE } else { ACCEPT };
                hub.ok(mutation, json!({ "a": id }), Some(&token)).await;
            })
        });
        for answer in futures::future::join_all(answers).await {
            answer.expect("an answer");
        }
        let now = read(&hub, &id, Some(&lyon)).await;
        assert_eq!(
            slugs(&now["hosts"]),
            ["lyon", "seoul", "bologna", "kobe", "braga"],
            "every accepted co-host, in the order named"
        );
        assert_eq!(now["venueCity"]["slug"], "seoul");
        assert_eq!(now["version"], 7, "six answers, none lost");
        let states: Vec<String> = invitations(&now).into_iter().map(|(_, _, s)| s).collect();
        assert_eq!(
            states,
            [
                "ACCEPTED", "ACCEPTED", "DECLINED", "ACCEPTED", "ACCEPTED", "DECLINED", "ACCEPTED"
            ]
        );
    }
);

both_backends!(
    invitation_events_reach_those_allowed_to_see_them,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let bologna = hub.token(Some("bologna")).await;
        const EVENTS: &str = "subscription($filter: ActivityFilter) { activityEvents(filter: $filter) { \
            type actor { slug } activity { slug hosts { slug } invitations { city { slug } state } } } }";
        let seoul_ws = WsClient::connect(&hub, Some(&seoul)).await;
        let mut seoul_all = seoul_ws.subscribe(EVENTS, json!({ "filter": null })).await;
        let mut seoul_own = seoul_ws
            .subscribe(EVENTS, json!({ "filter": { "cities": ["seoul"] } }))
            .await;
        seoul_ws.synced().await;
        let bologna_ws = WsClient::connect(&hub, Some(&bologna)).await;
        let mut bologna_all = bologna_ws
            .subscribe(EVENTS, json!({ "filter": null }))
            .await;
        bologna_ws.synced().await;

        let a = publish(
            &hub,
            &lyon,
            festival("Festival seen live", json!({ "coHosts": ["seoul"] })),
        )
        .await;
        let (id, slug) = (
            a["id"].as_str().expect("id").to_owned(),
            a["slug"].as_str().expect("slug").to_owned(),
        );
        let event = |payload: Value| {
            assert!(payload.get("errors").is_none(), "{payload}");
            payload["data"]["activityEvents"].clone()
        };
        // The invitation reaches Seoul, which sees it; Bologna sees the
        // publication, not the invitation.
        let invited = event(seoul_all.payload().await);
        assert_eq!(invited["type"], "PUBLISHED");
        assert_eq!(invited["activity"]["slug"], slug.as_str());
        assert_eq!(
            invited["activity"]["invitations"],
            json!([{ "city": { "slug": "seoul" }, "state": "PENDING" }])
        );
        let seen = event(bologna_all.payload().await);
        assert_eq!(seen["activity"]["slug"], slug.as_str());
        assert_eq!(seen["activity"]["invitations"], json!([]));

        // The answer reaches every subscriber, Seoul's own listing's too.
        hub.ok(ACCEPT, json!({ "a": id }), Some(&seoul)).await;
        let answered = event(seoul_all.payload().await);
        assert_eq!(answered["type"], "UPDATED");
        assert_eq!(answered["actor"]["slug"], "seoul");
        assert_eq!(
            answered["activity"]["invitations"],
            json!([{ "city": { "slug": "seoul" }, "state": "ACCEPTED" }])
        );
        let mut own = event(seoul_own.payload().await);
        if own["type"] == "PUBLISHED" {
            // Judged with the activity as it is when delivered, the
            // publication may match Seoul's filter once Seoul accepted.
            own = event(seoul_own.payload().await);
        }
        assert_eq!(own["type"], "UPDATED");
        assert_eq!(slugs(&own["activity"]["hosts"]), ["lyon", "seoul"]);
        let seen = event(bologna_all.payload().await);
        assert_eq!(seen["type"], "UPDATED");
        assert_eq!(seen["actor"]["slug"], "seoul");
        assert_eq!(seen["activity"]["invitations"], json!([]));
        seoul_ws.close().await;
        bologna_ws.close().await;
        hub.stop().await;
    }
);

both_backends!(
    invitations_migration_goes_down_and_up_with_data_in_place,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let a = publish(
            &hub,
            &lyon,
            festival(
                "Before the rollback",
                json!({ "coHosts": ["seoul", "bologna"], "venueCity": "dakar" }),
            ),
        )
        .await;
        let id = a["id"].as_str().expect("id").to_owned();
        hub.ok(ACCEPT, json!({ "a": id }), Some(&seoul)).await;
        let test_db = hub.test_db.clone();
        let url = test_db.url.clone();
        hub.stop().await;

        // The invitations and every migration after them.
        let steps = crate::support::steps_to_undo("m20261208_000001_invitations");
        let out = run(&url, &["migrate", "down", "--steps", &steps.to_string()]).await;
        assert!(out.contains(&format!("rolled back {steps}")), "{out}");
        let out = run(&url, &["migrate", "status"]).await;
        assert!(
            out.contains("pending m20261208_000001_invitations"),
            "{out}"
        );
        let db = sea_orm::Database::connect(&url).await.expect("connect");
        assert!(
            sea_orm::ConnectionTrait::execute_unprepared(&db, "SELECT 1 FROM activity_invitations")
                .await
                .is_err(),
            "the table is gone"
        );
        db.close().await.expect("close");

        let out = run(&url, &["migrate", "up"]).await;
        assert!(out.contains("migrations applied"), "{out}");
        let hub = TestHub::start_on(backend, test_db, |_| {}).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        // Accepted cities were hosts and venue cities all along: recorded
        // as accepted again. Pending invitations are forgotten, so no city
        // hosts what it never accepted.
        let now = read(&hub, &id, Some(&lyon)).await;
        assert_eq!(slugs(&now["hosts"]), ["lyon", "seoul"]);
        assert_eq!(now["venueCity"], Value::Null);
        assert_eq!(
            invitations(&now),
            [invitation("seoul", "CO_HOST", "ACCEPTED")]
        );
        let seeded = hub
            .ok(
                &format!("{{ activity(slug: \"annual-meeting-2011-seoul\") {{ {ACTIVITY} }} }}"),
                json!({}),
                Some(&seoul),
            )
            .await["activity"]
            .clone();
        assert_eq!(
            invitations(&seeded),
            [
                invitation("seoul", "CO_HOST", "ACCEPTED"),
                invitation("seoul", "VENUE", "ACCEPTED")
            ]
        );
        // And new writes invite again.
        let b = publish(
            &hub,
            &lyon,
            festival("After the migration", json!({ "coHosts": ["seoul"] })),
        )
        .await;
        assert_eq!(invitations(&b), [invitation("seoul", "CO_HOST", "PENDING")]);
        hub.stop().await;
    }
);
