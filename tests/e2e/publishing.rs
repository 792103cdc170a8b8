//! City tokens and publishing: the permission table end to end, every
//! mutation's effect and input errors, concurrency, and the audit trail.

use std::collections::BTreeSet;
use std::sync::Arc;

use cityhub_storage::repo::audit::AuditRepo;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};

/// The activity fields the tests look at.
const ACTIVITY: &str = "id slug status title summary venue version startDate endDate \
    publishedAt cancelReason publishedBy { slug } hosts { slug } participants { slug } \
    venueCity { slug } documents { url }";

fn publish_query() -> String {
    format!(
        "mutation($input: ActivityInput!, $draft: Boolean, $key: String) {{ \
         publishActivity(input: $input, draft: $draft, idempotencyKey: $key) {{ {ACTIVITY} }} }}"
    )
}

fn update_query() -> String {
    format!(
        "mutation($id: ID!, $patch: ActivityPatch!, $expected: Int) {{ \
         updateActivity(id: $id, patch: $patch, expectedVersion: $expected) {{ {ACTIVITY} }} }}"
    )
}

fn read_query() -> String {
    format!("query($id: ID!) {{ activity(id: $id) {{ {ACTIVITY} }} }}")
}

const COUNT_ALL: &str =
    "{ activities(filter: { statuses: [DRAFT, PUBLISHED, CANCELLED] }) { totalCount } }";

/// A valid activity input titled `title`.
fn input(title: &str) -> Value {
    json!({
        "kind": "WORKSHOP",
        "title": title,
        "startDate": "2026-05-01",
        "endDate": "2026-05-03",
        "fields": ["DESIGN"],
        "themes": ["urban design"],
    })
}

/// `input(title)` with extra fields merged in.
fn input_with(title: &str, extra: Value) -> Value {
    let mut base = input(title);
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

/// Publishes (or drafts) as `token`, expecting success; returns the activity.
async fn publish(hub: &TestHub, token: Option<&str>, input: Value, draft: bool) -> Value {
    hub.ok(
        &publish_query(),
        json!({ "input": input, "draft": draft }),
        token,
    )
    .await["publishActivity"]
        .clone()
}

/// Reads an activity by id as `token`; `Value::Null` when invisible.
async fn read(hub: &TestHub, id: &str, token: Option<&str>) -> Value {
    hub.ok(&read_query(), json!({ "id": id }), token).await["activity"].clone()
}

/// Every activity in any status, as the secretariat sees them.
async fn count_all(hub: &TestHub, secretariat: &str) -> i64 {
    hub.ok(COUNT_ALL, json!({}), Some(secretariat)).await["activities"]["totalCount"]
        .as_i64()
        .expect("totalCount")
}

fn slugs_of(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["slug"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn id_of(activity: &Value) -> String {
    activity["id"].as_str().expect("id").to_owned()
}

/// POSTs a GraphQL request with a shared client (for spawned tasks).
async fn post_with(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (u16, Value) {
    let mut request = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The code of a response's first error, or `"ok"` when it has none.
fn outcome(body: &Value) -> String {
    match body["errors"].as_array().and_then(|e| e.first()) {
        Some(e) => e["extensions"]["code"]
            .as_str()
            .unwrap_or("<no code>")
            .to_owned(),
        None => "ok".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// The permission table.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// City A: publishes the fixtures.
    Lyon,
    /// City B: neither publisher nor host.
    Seoul,
    /// A co-host of the fixtures (it accepted its invitation).
    Bologna,
    /// Invited to co-host the fixtures; has not answered.
    Kobe,
    Secretariat,
}

/// What the row acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Nothing,
    /// Lyon's published activity, co-hosted by Bologna, Kobe invited.
    Published,
    /// Lyon's draft, naming Bologna and Kobe co-hosts (invited: neither
    /// can see the draft to answer).
    Draft,
    /// Lyon's cancelled activity.
    Cancelled,
    /// Lyon's deleted activity.
    Deleted,
    /// An id no activity has.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The mutation or query succeeds.
    Ok,
    /// It fails with this `extensions.code`, changing nothing.
    Code(&'static str),
    /// The read returns the activity.
    Visible,
    /// The read does not return it (null, or absent from the listing).
    Hidden,
}

struct Actors {
    lyon: String,
    seoul: String,
    bologna: String,
    kobe: String,
    secretariat: String,
}

impl Actors {
    async fn new(hub: &TestHub) -> Self {
        Self {
            lyon: hub.token(Some("lyon")).await,
            seoul: hub.token(Some("seoul")).await,
            bologna: hub.token(Some("bologna")).await,
            kobe: hub.token(Some("kobe")).await,
            secretariat: hub.token(None).await,
        }
    }

    fn of(&self, who: Who) -> Option<&str> {
        match who {
            Who::Anonymous => None,
            Who::Lyon => Some(&self.lyon),
            Who::Seoul => Some(&self.seoul),
            Who::Bologna => Some(&self.bologna),
            Who::Kobe => Some(&self.kobe),
            Who::Secretariat => Some(&self.secretariat),
        }
    }
}

/// The row's target: an activity (id and slug) and a token to revoke.
struct Target {
    id: String,
    slug: String,
    token_id: String,
}

async fn fixture(hub: &TestHub, actors: &Actors, on: On, op: &str, n: usize) -> Target {
    let lyon = Some(actors.lyon.as_str());
    let title = format!("Permission row {n}");
    let co_hosted = input_with(&title, json!({ "coHosts": ["bologna", "kobe"] }));
    // Published, and Bologna accepts its invitation; Kobe does not answer.
    let published = || async {
        let a = publish(hub, lyon, co_hosted.clone(), false).await;
        hub.ok(
            "mutation($id: ID!) { acceptInvitation(activity: $id) { id } }",
            json!({ "id": a["id"] }),
            Some(&actors.bologna),
        )
        .await;
        a
    };
    let activity = match on {
        On::Nothing => Value::Null,
        On::Missing => json!({ "id": "987654321", "slug": "no-such-activity" }),
        On::Published => published().await,
        On::Draft => publish(hub, lyon, co_hosted, true).await,
        On::Cancelled => {
            let a = published().await;
            hub.ok(
                "mutation($id: ID!) { cancelActivity(id: $id) { id } }",
                json!({ "id": a["id"] }),
                lyon,
            )
            .await;
            a
        }
        On::Deleted => {
            let a = published().await;
            hub.ok(
                "mutation($id: ID!) { deleteActivity(id: $id) }",
                json!({ "id": a["id"] }),
                lyon,
            )
            .await;
            a
        }
    };
    if op == "leaveActivity" && on == On::Published {
        // Seoul participates, so its leaving is a real change.
        hub.ok(
            "mutation($id: ID!) { joinActivity(id: $id) { id } }",
            json!({ "id": activity["id"] }),
            Some(&actors.seoul),
        )
        .await;
    }
    let (_, record) = cityhub::ops::issue_token(
        &hub.db,
        &hub.config,
        Some("seoul"),
        Some(600),
        Some(format!("row {n}")),
    )
    .await
    .expect("issue token");
    Target {
        // An id no activity has, when the row acts on none.
        id: activity["id"].as_str().unwrap_or("987654320").to_owned(),
        slug: activity["slug"].as_str().unwrap_or("").to_owned(),
        token_id: record.id,
    }
}

/// The request a row makes, and the path of its result in `data`.
fn request(op: &str, t: &Target, n: usize) -> (String, Value) {
    let id = json!({ "id": t.id });
    match op {
        "publishActivity" => (
            "mutation($input: ActivityInput!) { publishActivity(input: $input) { id } }".into(),
            json!({ "input": input(&format!("Published by row {n}")) }),
        ),
        "publishDraft" => (
            "mutation($id: ID!) { publishDraft(id: $id) { id status } }".into(),
            id,
        ),
        "updateActivity" => (
            "mutation($id: ID!, $patch: ActivityPatch!) { updateActivity(id: $id, patch: $patch) { id } }".into(),
            json!({ "id": t.id, "patch": { "title": format!("Changed by row {n}") } }),
        ),
        "cancelActivity" => (
            "mutation($id: ID!) { cancelActivity(id: $id, reason: \"postponed\") { id } }".into(),
            id,
        ),
        "deleteActivity" => ("mutation($id: ID!) { deleteActivity(id: $id) }".into(), id),
        "joinActivity" => (
            "mutation($id: ID!) { joinActivity(id: $id) { id } }".into(),
            id,
        ),
        "leaveActivity" => (
            "mutation($id: ID!) { leaveActivity(id: $id) { id } }".into(),
            id,
        ),
        "acceptInvitation" | "declineInvitation" => (
            format!("mutation($id: ID!) {{ {op}(activity: $id) {{ id }} }}"),
            id,
        ),
        "createCity" | "createCity(taken slug)" => (
            "mutation($input: CityInput!) { createCity(input: $input) { slug } }".into(),
            json!({ "input": {
                "slug": if op == "createCity" { format!("new-city-{n}") } else { "lyon".into() },
                "name": format!("New City {n}"),
                "country": "PT",
                "fields": ["FILM"],
                "memberSince": 2019,
            } }),
        ),
        "updateCity" | "updateCity(unknown slug)" => (
            "mutation($slug: String!) { updateCity(slug: $slug, patch: { name: \"Lyon (updated)\" }) { slug } }".into(),
            json!({ "slug": if op == "updateCity" { "lyon" } else { "atlantis" } }),
        ),
        "issueToken" => (
            "mutation { issueToken(city: \"lyon\", role: CITY, ttlSeconds: 60, label: \"row\") { id token } }".into(),
            json!({}),
        ),
        "revokeToken" | "revokeToken(unknown id)" => (
            "mutation($id: ID!) { revokeToken(id: $id) }".into(),
            json!({ "id": if op == "revokeToken" { t.token_id.clone() } else { "no-such-token".into() } }),
        ),
        "tokens" => ("{ tokens { id } }".into(), json!({})),
        "activity(id)" => ("query($id: ID!) { activity(id: $id) { id } }".into(), id),
        "activity(slug)" => (
            "query($slug: String!) { activity(slug: $slug) { id } }".into(),
            json!({ "slug": t.slug }),
        ),
        "activities(DRAFT)" => (
            "{ activities(first: 100, filter: { statuses: [DRAFT] }) { nodes { id } } }".into(),
            json!({}),
        ),
        other => panic!("no such operation {other}"),
    }
}

/// Whether a successful read returned the target.
fn saw(op: &str, data: &Value, t: &Target) -> bool {
    match op {
        "activities(DRAFT)" => data["activities"]["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|a| a["id"] == t.id.as_str())),
        _ => data["activity"]["id"] == t.id.as_str(),
    }
}

/// Everything a refused request could have changed.
async fn snapshot(hub: &TestHub, actors: &Actors, t: &Target) -> Value {
    let data = hub
        .ok(
            &format!(
                "query($id: ID!) {{ network {{ cityCount activityCount }} \
                 city(slug: \"lyon\") {{ name website }} \
                 activities(filter: {{ statuses: [DRAFT, PUBLISHED, CANCELLED] }}) {{ totalCount }} \
                 activity(id: $id) {{ {ACTIVITY} updatedAt }} }}"
            ),
            json!({ "id": t.id }),
            Some(&actors.secretariat),
        )
        .await;
    let tokens = cityhub::ops::list_tokens(&hub.db).await.expect("tokens");
    let revoked = tokens.iter().filter(|r| r.revoked_at.is_some()).count();
    json!({ "data": data, "tokens": tokens.len(), "revoked": revoked })
}

fn table() -> Vec<(Who, &'static str, On, Expect)> {
    use Expect::{Code, Hidden, Ok, Visible};
    use On::*;
    use Who::*;
    const UNAUTH: Expect = Code("UNAUTHENTICATED");
    const FORBIDDEN: Expect = Code("FORBIDDEN");
    const NOT_FOUND: Expect = Code("NOT_FOUND");
    const CONFLICT: Expect = Code("CONFLICT");
    vec![
        (Anonymous, "publishActivity", Nothing, UNAUTH),
        (Lyon, "publishActivity", Nothing, Ok),
        (Seoul, "publishActivity", Nothing, Ok),
        (Bologna, "publishActivity", Nothing, Ok),
        (Secretariat, "publishActivity", Nothing, Ok),
        (Anonymous, "publishDraft", Draft, UNAUTH),
        (Lyon, "publishDraft", Draft, Ok),
        (Seoul, "publishDraft", Draft, NOT_FOUND),
        (Bologna, "publishDraft", Draft, NOT_FOUND),
        (Secretariat, "publishDraft", Draft, Ok),
        (Lyon, "publishDraft", Published, CONFLICT),
        (Anonymous, "updateActivity", Published, UNAUTH),
        (Lyon, "updateActivity", Published, Ok),
        (Seoul, "updateActivity", Published, FORBIDDEN),
        (Bologna, "updateActivity", Published, Ok),
        (Secretariat, "updateActivity", Published, Ok),
        (Lyon, "updateActivity", Draft, Ok),
        (Seoul, "updateActivity", Draft, NOT_FOUND),
        (Bologna, "updateActivity", Draft, NOT_FOUND),
        (Secretariat, "updateActivity", Draft, Ok),
        (Lyon, "updateActivity", Deleted, NOT_FOUND),
        (Lyon, "updateActivity", Missing, NOT_FOUND),
        (Anonymous, "cancelActivity", Published, UNAUTH),
        (Lyon, "cancelActivity", Published, Ok),
        (Seoul, "cancelActivity", Published, FORBIDDEN),
        (Bologna, "cancelActivity", Published, Ok),
        (Secretariat, "cancelActivity", Published, Ok),
        (Lyon, "cancelActivity", Draft, CONFLICT),
        (Seoul, "cancelActivity", Draft, NOT_FOUND),
        (Lyon, "cancelActivity", Cancelled, CONFLICT),
        (Anonymous, "deleteActivity", Published, UNAUTH),
        (Lyon, "deleteActivity", Published, Ok),
        (Seoul, "deleteActivity", Published, FORBIDDEN),
        (Bologna, "deleteActivity", Published, FORBIDDEN),
        (Secretariat, "deleteActivity", Published, Ok),
        (Lyon, "deleteActivity", Draft, Ok),
        (Seoul, "deleteActivity", Draft, NOT_FOUND),
        (Bologna, "deleteActivity", Draft, NOT_FOUND),
        (Lyon, "deleteActivity", Cancelled, Ok),
        (Lyon, "deleteActivity", Deleted, NOT_FOUND),
        (Secretariat, "deleteActivity", Missing, NOT_FOUND),
        (Anonymous, "joinActivity", Published, UNAUTH),
        (Lyon, "joinActivity", Published, Ok),
        (Seoul, "joinActivity", Published, Ok),
        (Bologna, "joinActivity", Published, Ok),
        (Secretariat, "joinActivity", Published, FORBIDDEN),
        (Lyon, "joinActivity", Draft, FORBIDDEN),
        (Seoul, "joinActivity", Draft, NOT_FOUND),
        (Seoul, "joinActivity", Cancelled, CONFLICT),
        (Seoul, "joinActivity", Deleted, NOT_FOUND),
        (Anonymous, "leaveActivity", Published, UNAUTH),
        (Lyon, "leaveActivity", Published, Ok),
        (Seoul, "leaveActivity", Published, Ok),
        (Secretariat, "leaveActivity", Published, FORBIDDEN),
        (Seoul, "leaveActivity", Draft, NOT_FOUND),
        (Anonymous, "createCity", Nothing, UNAUTH),
        (Lyon, "createCity", Nothing, FORBIDDEN),
        (Seoul, "createCity", Nothing, FORBIDDEN),
        (Secretariat, "createCity", Nothing, Ok),
        (Secretariat, "createCity(taken slug)", Nothing, CONFLICT),
        (Anonymous, "updateCity", Nothing, UNAUTH),
        (Lyon, "updateCity", Nothing, FORBIDDEN),
        (Seoul, "updateCity", Nothing, FORBIDDEN),
        (Secretariat, "updateCity", Nothing, Ok),
        (Secretariat, "updateCity(unknown slug)", Nothing, NOT_FOUND),
        (Anonymous, "issueToken", Nothing, UNAUTH),
        (Lyon, "issueToken", Nothing, FORBIDDEN),
        (Seoul, "issueToken", Nothing, FORBIDDEN),
        (Secretariat, "issueToken", Nothing, Ok),
        (Anonymous, "revokeToken", Nothing, UNAUTH),
        (Lyon, "revokeToken", Nothing, FORBIDDEN),
        // Even a token of its own city: revoking is the secretariat's.
        (Seoul, "revokeToken", Nothing, FORBIDDEN),
        (Secretariat, "revokeToken", Nothing, Ok),
        (Secretariat, "revokeToken(unknown id)", Nothing, NOT_FOUND),
        (Anonymous, "tokens", Nothing, UNAUTH),
        (Lyon, "tokens", Nothing, FORBIDDEN),
        (Secretariat, "tokens", Nothing, Ok),
        // Invitations: only the invited city answers, once; until it
        // accepts, it may not change the activity.
        (Kobe, "updateActivity", Published, FORBIDDEN),
        (Kobe, "cancelActivity", Published, FORBIDDEN),
        (Kobe, "deleteActivity", Published, FORBIDDEN),
        (Kobe, "acceptInvitation", Published, Ok),
        (Kobe, "declineInvitation", Published, Ok),
        (Kobe, "acceptInvitation", Cancelled, Ok),
        (Kobe, "acceptInvitation", Draft, NOT_FOUND),
        (Kobe, "acceptInvitation", Deleted, NOT_FOUND),
        (Kobe, "acceptInvitation", Missing, NOT_FOUND),
        (Bologna, "acceptInvitation", Published, CONFLICT),
        (Bologna, "declineInvitation", Published, Ok),
        (Seoul, "acceptInvitation", Published, FORBIDDEN),
        (Seoul, "declineInvitation", Published, FORBIDDEN),
        (Lyon, "acceptInvitation", Published, FORBIDDEN),
        (Anonymous, "acceptInvitation", Published, UNAUTH),
        (Anonymous, "declineInvitation", Published, UNAUTH),
        (Secretariat, "acceptInvitation", Published, FORBIDDEN),
        // Draft reads: the publisher and the secretariat only.
        (Anonymous, "activity(id)", Draft, Hidden),
        (Lyon, "activity(id)", Draft, Visible),
        (Seoul, "activity(id)", Draft, Hidden),
        (Bologna, "activity(id)", Draft, Hidden),
        (Secretariat, "activity(id)", Draft, Visible),
        (Anonymous, "activity(slug)", Draft, Hidden),
        (Lyon, "activity(slug)", Draft, Visible),
        (Seoul, "activity(slug)", Draft, Hidden),
        (Bologna, "activity(slug)", Draft, Hidden),
        (Secretariat, "activity(slug)", Draft, Visible),
        (Anonymous, "activities(DRAFT)", Draft, Hidden),
        (Lyon, "activities(DRAFT)", Draft, Visible),
        (Seoul, "activities(DRAFT)", Draft, Hidden),
        (Bologna, "activities(DRAFT)", Draft, Hidden),
        (Secretariat, "activities(DRAFT)", Draft, Visible),
        // Controls: published and deleted activities.
        (Anonymous, "activity(id)", Published, Visible),
        (Anonymous, "activity(slug)", Published, Visible),
        (Secretariat, "activity(id)", Deleted, Hidden),
        (Secretariat, "activity(slug)", Deleted, Hidden),
    ]
}

both_backends!(permission_table_end_to_end, |backend: Backend| async move {
    let hub = TestHub::start(backend).await;
    let actors = Actors::new(&hub).await;
    let mut failures = Vec::new();
    for (n, (who, op, on, expect)) in table().into_iter().enumerate() {
        let target = fixture(&hub, &actors, on, op, n).await;
        let before = snapshot(&hub, &actors, &target).await;
        let (query, variables) = request(op, &target, n);
        let (status, body) = hub.post(&query, variables, actors.of(who)).await;
        let got = outcome(&body);
        let row = format!("row {n}: {who:?} {op} on {on:?}");
        match expect {
            Expect::Ok => {
                if got != "ok" || status != 200 || body["data"].is_null() {
                    failures.push(format!("{row}: expected success, got {status} {body}"));
                }
            }
            Expect::Code(code) => {
                if got != code {
                    failures.push(format!("{row}: expected {code}, got {status} {body}"));
                } else if !body["data"].is_null()
                    && body["data"]
                        .as_object()
                        .is_some_and(|d| d.values().any(|v| !v.is_null()))
                {
                    failures.push(format!("{row}: a refused request returned data: {body}"));
                }
                let after = snapshot(&hub, &actors, &target).await;
                if before != after {
                    failures.push(format!(
                        "{row}: a refused request changed something:\n before {before}\n after  {after}"
                    ));
                }
            }
            Expect::Visible | Expect::Hidden => {
                if got != "ok" {
                    failures.push(format!("{row}: the read failed: {body}"));
                } else if saw(op, &body["data"], &target) != (expect == Expect::Visible) {
                    failures.push(format!("{row}: expected {expect:?}, got {body}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
});

both_backends!(
    closed_reading_needs_a_token,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| c.auth.public_read = false).await;
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let draft = publish(&hub, Some(&lyon), input("Closed network draft"), true).await;
        let published = publish(&hub, Some(&lyon), input("Closed network event"), false).await;
        let reads = [
            "{ network { name activityCount } }",
            "{ activities { totalCount } }",
            "{ cities { totalCount } }",
            "{ city(slug: \"lyon\") { name } }",
        ];
        for query in reads {
            hub.fails(query, json!({}), None, "UNAUTHENTICATED").await;
            hub.ok(query, json!({}), Some(&lyon)).await;
            hub.ok(query, json!({}), Some(&secretariat)).await;
        }
        for activity in [&draft, &published] {
            hub.fails(
                "query($slug: String!) { activity(slug: $slug) { id } }",
                json!({ "slug": activity["slug"] }),
                None,
                "UNAUTHENTICATED",
            )
            .await;
            hub.fails(
                &read_query(),
                json!({ "id": activity["id"] }),
                None,
                "UNAUTHENTICATED",
            )
            .await;
            assert_eq!(
                read(&hub, &id_of(activity), Some(&lyon)).await["id"],
                activity["id"]
            );
        }
        // An anonymous viewer is simply nobody; a city reads its own draft.
        assert!(hub.ok("{ viewer { role } }", json!({}), None).await["viewer"].is_null());
        let drafts = hub
            .ok(
                "{ activities(filter: { statuses: [DRAFT] }) { nodes { id } } }",
                json!({}),
                Some(&lyon),
            )
            .await;
        assert_eq!(
            drafts["activities"]["nodes"],
            json!([{ "id": draft["id"] }])
        );
    }
);

// ---------------------------------------------------------------------------
// Mutations and their effects.
// ---------------------------------------------------------------------------

// One story per test, each on its own hub: a failure never hides the rest.
both_backends!(
    publishing_sets_publisher_and_hosts,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        publishing_sets_publisher_and_hosts(&hub).await;
        hub.stop().await;
    }
);

both_backends!(
    drafts_stay_private_until_published,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        drafts_stay_private_until_published(&hub).await;
        hub.stop().await;
    }
);

both_backends!(
    idempotency_keys_replay_and_conflict,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        idempotency_keys_replay_and_conflict(&hub).await;
        hub.stop().await;
    }
);

both_backends!(
    updates_version_and_clear_fields,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        updates_version_and_clear_fields(&hub).await;
        hub.stop().await;
    }
);

both_backends!(
    cancel_delete_join_and_leave,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        cancel_delete_join_and_leave(&hub).await;
        hub.stop().await;
    }
);

both_backends!(cities_created_and_updated, |backend: Backend| async move {
    let hub = TestHub::start(backend).await;
    cities_created_and_updated(&hub).await;
    hub.stop().await;
});

both_backends!(
    input_errors_name_their_field_and_change_nothing,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        input_errors_name_their_field_and_change_nothing(&hub).await;
        hub.stop().await;
    }
);

both_backends!(
    audit_trail_follows_the_mutations,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        audit_trail_follows_the_mutations(&hub).await;
        hub.stop().await;
    }
);

/// The token's city publishes and hosts first; the secretariat publishes for the network.
async fn publishing_sets_publisher_and_hosts(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let secretariat = hub.token(None).await;
    let before = count_all(hub, &secretariat).await;
    let a = publish(
        hub,
        Some(&lyon),
        input_with(
            "Lyon Festival of Lights Workshop",
            json!({ "coHosts": ["seoul", "bologna"], "venueCity": "lyon", "venue": "Place Bellecour", "summary": "Light design." }),
        ),
        false,
    )
    .await;
    assert_eq!(a["status"], "PUBLISHED");
    assert_eq!(a["version"], 1);
    assert_eq!(a["publishedBy"]["slug"], "lyon");
    // The co-hosts are invited: only the publisher hosts until they accept.
    assert_eq!(slugs_of(&a["hosts"]), ["lyon"]);
    assert_eq!(
        a["venueCity"]["slug"], "lyon",
        "the publisher is its own venue"
    );
    assert_eq!(a["slug"], "lyon-festival-of-lights-workshop");
    assert!(a["publishedAt"].is_string(), "{a}");
    assert_eq!(a["participants"], json!([]));
    // Anonymous readers see exactly what was published.
    let seen = read(hub, &id_of(&a), None).await;
    assert_eq!(seen, a);
    // They accept, in any order; the hosts keep the order named.
    for city in ["bologna", "seoul"] {
        let token = hub.token(Some(city)).await;
        hub.ok(
            "mutation($id: ID!) { acceptInvitation(activity: $id) { id } }",
            json!({ "id": id_of(&a) }),
            Some(&token),
        )
        .await;
    }
    assert_eq!(
        slugs_of(&read(hub, &id_of(&a), None).await["hosts"]),
        ["lyon", "seoul", "bologna"]
    );
    // The secretariat publishes network activities with no city publisher,
    // its co-hosts accepted at once.
    let n = publish(
        hub,
        Some(&secretariat),
        input_with("Network meeting", json!({ "coHosts": ["kanazawa"] })),
        false,
    )
    .await;
    assert!(n["publishedBy"].is_null(), "{n}");
    assert_eq!(slugs_of(&n["hosts"]), ["kanazawa"]);
    // The same title again gets a distinct slug.
    let again = publish(
        hub,
        Some(&lyon),
        input("Lyon Festival of Lights Workshop"),
        false,
    )
    .await;
    assert_ne!(again["slug"], a["slug"]);
    assert_eq!(count_all(hub, &secretariat).await, before + 3);
}

/// A draft is its city's (and the secretariat's) alone until `publishDraft`.
async fn drafts_stay_private_until_published(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let seoul = hub.token(Some("seoul")).await;
    let secretariat = hub.token(None).await;
    let draft = publish(hub, Some(&lyon), input("A quiet draft"), true).await;
    let id = id_of(&draft);
    assert_eq!(draft["status"], "DRAFT");
    assert!(draft["publishedAt"].is_null(), "{draft}");
    assert!(read(hub, &id, None).await.is_null());
    assert!(read(hub, &id, Some(&seoul)).await.is_null());
    assert_eq!(read(hub, &id, Some(&lyon)).await["status"], "DRAFT");
    assert_eq!(read(hub, &id, Some(&secretariat)).await["status"], "DRAFT");
    // The default listing is published activities only, even for its city.
    let listed = |data: &Value| {
        data["activities"]["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|a| a["id"] == id.as_str()))
    };
    let default = "{ activities(first: 100, orderBy: UPDATED_AT_DESC) { nodes { id } } }";
    assert!(!listed(&hub.ok(default, json!({}), Some(&lyon)).await));
    // Seoul cannot publish it for Lyon, nor learn that it exists.
    hub.fails(
        "mutation($id: ID!) { publishDraft(id: $id) { id } }",
        json!({ "id": id }),
        Some(&seoul),
        "NOT_FOUND",
    )
    .await;
    let published = hub
        .ok(
            &format!("mutation($id: ID!) {{ publishDraft(id: $id) {{ {ACTIVITY} }} }}"),
            json!({ "id": id }),
            Some(&lyon),
        )
        .await["publishDraft"]
        .clone();
    assert_eq!(published["status"], "PUBLISHED");
    assert_eq!(published["version"], 2);
    assert!(published["publishedAt"].is_string(), "{published}");
    assert_eq!(read(hub, &id, None).await["status"], "PUBLISHED");
    assert!(listed(&hub.ok(default, json!({}), None).await));
    hub.fails(
        "mutation($id: ID!) { publishDraft(id: $id) { id } }",
        json!({ "id": id }),
        Some(&lyon),
        "CONFLICT",
    )
    .await;
}

/// The same key and input replay; the same key with another input conflicts.
async fn idempotency_keys_replay_and_conflict(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let seoul = hub.token(Some("seoul")).await;
    let secretariat = hub.token(None).await;
    let before = count_all(hub, &secretariat).await;
    let vars = json!({ "input": input("Retried workshop"), "key": "req-1" });
    let first =
        hub.ok(&publish_query(), vars.clone(), Some(&lyon)).await["publishActivity"].clone();
    let replay =
        hub.ok(&publish_query(), vars.clone(), Some(&lyon)).await["publishActivity"].clone();
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(replay["slug"], first["slug"]);
    assert_eq!(count_all(hub, &secretariat).await, before + 1);
    // The same key with another input is a conflict, and creates nothing.
    let err = hub
        .fails(
            &publish_query(),
            json!({ "input": input("Another workshop"), "key": "req-1" }),
            Some(&lyon),
            "CONFLICT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "idempotencyKey");
    hub.fails(
        &publish_query(),
        json!({ "input": input("Retried workshop"), "key": "req-1", "draft": true }),
        Some(&lyon),
        "CONFLICT",
    )
    .await;
    assert_eq!(count_all(hub, &secretariat).await, before + 1);
    // Keys belong to the city that used them.
    let other = hub.ok(&publish_query(), vars, Some(&seoul)).await["publishActivity"].clone();
    assert_ne!(other["id"], first["id"]);
    assert_eq!(other["publishedBy"]["slug"], "seoul");
    assert_eq!(count_all(hub, &secretariat).await, before + 2);
    // A blank key is an input error.
    let err = hub
        .fails(
            &publish_query(),
            json!({ "input": input("Keyless"), "key": "" }),
            Some(&lyon),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "idempotencyKey");
}

/// Every change makes a version; `expectedVersion` guards; `null` clears.
async fn updates_version_and_clear_fields(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let a = publish(
        hub,
        Some(&lyon),
        input_with(
            "Versioned",
            json!({ "summary": "First summary", "venue": "Old hall" }),
        ),
        false,
    )
    .await;
    let id = id_of(&a);
    let update = |patch: Value, expected: Option<i64>| {
        let vars = json!({ "id": id, "patch": patch, "expected": expected });
        let lyon = &lyon;
        async move { hub.ok(&update_query(), vars, Some(lyon)).await["updateActivity"].clone() }
    };
    let v2 = update(json!({ "title": "Versioned, renamed" }), Some(1)).await;
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["title"], "Versioned, renamed");
    assert_eq!(v2["slug"], a["slug"], "a new title keeps the slug");
    assert_eq!(v2["summary"], "First summary", "absent fields stay");
    let v3 = update(json!({ "summary": "Second summary" }), None).await;
    assert_eq!(v3["version"], 3);
    // `null` clears optional fields.
    let v4 = update(json!({ "summary": null, "venue": null }), Some(3)).await;
    assert_eq!(v4["version"], 4);
    assert!(v4["summary"].is_null() && v4["venue"].is_null(), "{v4}");
    assert_eq!(v4["title"], "Versioned, renamed");
    // A patch that changes nothing makes no version.
    let same = update(json!({ "title": "Versioned, renamed" }), None).await;
    assert_eq!(same["version"], 4);
    // A stale expectedVersion is a conflict and changes nothing.
    let err = hub
        .fails(
            &update_query(),
            json!({ "id": id, "patch": { "title": "Lost update" }, "expected": 2 }),
            Some(&lyon),
            "CONFLICT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "expectedVersion");
    assert_eq!(read(hub, &id, None).await["title"], "Versioned, renamed");
    // Co-hosts: invited; once Seoul accepts, the publisher stays first.
    let v5 = update(
        json!({ "coHosts": ["seoul"], "startDate": "2026-06-01", "endDate": null }),
        Some(4),
    )
    .await;
    assert_eq!(v5["version"], 5);
    assert_eq!(slugs_of(&v5["hosts"]), ["lyon"]);
    assert_eq!(v5["startDate"], "2026-06-01");
    assert!(v5["endDate"].is_null());
    let seoul = hub.token(Some("seoul")).await;
    hub.ok(
        "mutation($id: ID!) { acceptInvitation(activity: $id) { id } }",
        json!({ "id": id }),
        Some(&seoul),
    )
    .await;
    let v6 = read(hub, &id, None).await;
    assert_eq!(v6["version"], 6);
    assert_eq!(slugs_of(&v6["hosts"]), ["lyon", "seoul"]);
    // Patch errors name the patch's path.
    let err = hub
        .fails(
            &update_query(),
            json!({ "id": id, "patch": { "endDate": "2026-05-01" } }),
            Some(&lyon),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "patch.endDate");
    let err = hub
        .fails(
            &update_query(),
            json!({ "id": id, "patch": { "coHosts": ["seoul", "atlantis"] } }),
            Some(&lyon),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "patch.coHosts[1]");
    assert_eq!(read(hub, &id, None).await, v6);
}

/// Participation, cancellation and (soft) deletion.
async fn cancel_delete_join_and_leave(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let seoul = hub.token(Some("seoul")).await;
    let bologna = hub.token(Some("bologna")).await;
    let secretariat = hub.token(None).await;
    let a = publish(hub, Some(&lyon), input("Joinable"), false).await;
    let id = id_of(&a);
    let join = format!("mutation($id: ID!) {{ joinActivity(id: $id) {{ {ACTIVITY} }} }}");
    let leave = format!("mutation($id: ID!) {{ leaveActivity(id: $id) {{ {ACTIVITY} }} }}");
    let j = hub.ok(&join, json!({ "id": id }), Some(&seoul)).await["joinActivity"].clone();
    assert_eq!(slugs_of(&j["participants"]), ["seoul"]);
    assert_eq!(j["version"], 2);
    let again = hub.ok(&join, json!({ "id": id }), Some(&seoul)).await["joinActivity"].clone();
    assert_eq!(again["version"], 2, "joining twice changes nothing");
    let j = hub.ok(&join, json!({ "id": id }), Some(&bologna)).await["joinActivity"].clone();
    assert_eq!(slugs_of(&j["participants"]), ["seoul", "bologna"]);
    let l = hub.ok(&leave, json!({ "id": id }), Some(&seoul)).await["leaveActivity"].clone();
    assert_eq!(slugs_of(&l["participants"]), ["bologna"]);
    assert_eq!(l["version"], 4);
    let filtered = hub
        .ok(
            "{ activities(filter: { cities: [\"bologna\"] }, first: 100) { nodes { id } } }",
            json!({}),
            None,
        )
        .await;
    assert!(
        filtered["activities"]["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x["id"] == id.as_str())),
        "a participant city's listing includes it"
    );
    // Cancelling keeps it visible as cancelled, with the reason.
    let c = hub
        .ok(
            &format!("mutation($id: ID!) {{ cancelActivity(id: $id, reason: \"Postponed to 2027\") {{ {ACTIVITY} }} }}"),
            json!({ "id": id }),
            Some(&lyon),
        )
        .await["cancelActivity"]
        .clone();
    assert_eq!(c["status"], "CANCELLED");
    assert_eq!(c["cancelReason"], "Postponed to 2027");
    assert_eq!(c["version"], 5);
    assert_eq!(read(hub, &id, None).await["status"], "CANCELLED");
    let cancelled = hub
        .ok(
            "{ activities(filter: { statuses: [CANCELLED] }, first: 100) { nodes { id } } }",
            json!({}),
            None,
        )
        .await;
    assert!(
        cancelled["activities"]["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x["id"] == id.as_str()))
    );
    // Deleting is soft: the id comes back, the activity leaves every read.
    let before = count_all(hub, &secretariat).await;
    let deleted = hub
        .ok(
            "mutation($id: ID!) { deleteActivity(id: $id) }",
            json!({ "id": id }),
            Some(&lyon),
        )
        .await;
    assert_eq!(deleted["deleteActivity"], id.as_str());
    assert_eq!(count_all(hub, &secretariat).await, before - 1);
    for token in [None, Some(lyon.as_str()), Some(secretariat.as_str())] {
        assert!(read(hub, &id, token).await.is_null());
        let by_slug = hub
            .ok(
                "query($slug: String!) { activity(slug: $slug) { id } }",
                json!({ "slug": a["slug"] }),
                token,
            )
            .await;
        assert!(by_slug["activity"].is_null());
    }
    hub.fails(&join, json!({ "id": id }), Some(&seoul), "NOT_FOUND")
        .await;
    hub.fails(
        &update_query(),
        json!({ "id": id, "patch": { "title": "Ghost" } }),
        Some(&lyon),
        "NOT_FOUND",
    )
    .await;
    hub.fails(
        "mutation($id: ID!) { deleteActivity(id: $id) }",
        json!({ "id": id }),
        Some(&lyon),
        "NOT_FOUND",
    )
    .await;
    // An id that is not one of this hub's.
    let err = hub
        .fails(
            "mutation { deleteActivity(id: \"not-a-number\") }",
            json!({}),
            Some(&lyon),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "id");
}

/// The secretariat registers and changes member cities.
async fn cities_created_and_updated(hub: &TestHub) {
    let secretariat = hub.token(None).await;
    let count = "{ network { cityCount } }";
    let before = hub.ok(count, json!({}), None).await["network"]["cityCount"].clone();
    let created = hub
        .ok(
            "mutation($input: CityInput!) { createCity(input: $input) { id slug name country fields memberSince website latitude longitude } }",
            json!({ "input": {
                "slug": "porto", "name": "Porto", "country": "PT", "fields": ["FILM"],
                "memberSince": 2019, "website": "https://www.porto.pt/", "latitude": 41.15, "longitude": -8.61,
            } }),
            Some(&secretariat),
        )
        .await["createCity"]
        .clone();
    assert_eq!(created["slug"], "porto");
    assert_eq!(created["fields"], json!(["FILM"]));
    assert_eq!(
        hub.ok(count, json!({}), None).await["network"]["cityCount"],
        before.as_i64().expect("count") + 1
    );
    let read_city = "{ city(slug: \"porto\") { id name country memberSince website latitude } }";
    let seen = hub.ok(read_city, json!({}), None).await["city"].clone();
    assert_eq!(seen["id"], created["id"]);
    assert_eq!(seen["website"], "https://www.porto.pt/");
    // Taken slugs and bad values name their field.
    let err = hub
        .fails(
            "mutation { createCity(input: { slug: \"porto\", name: \"Porto again\", country: \"PT\", fields: [FILM], memberSince: 2019 }) { slug } }",
            json!({}),
            Some(&secretariat),
            "CONFLICT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "input.slug");
    let err = hub
        .fails(
            "mutation { createCity(input: { slug: \"nowhere\", name: \"Nowhere\", country: \"XX\", fields: [FILM], memberSince: 2019 }) { slug } }",
            json!({}),
            Some(&secretariat),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "input.country");
    assert!(
        hub.ok("{ city(slug: \"nowhere\") { id } }", json!({}), None)
            .await["city"]
            .is_null()
    );
    // Updating: absent fields stay, null clears.
    let updated = hub
        .ok(
            "mutation { updateCity(slug: \"porto\", patch: { name: \"Porto (PT)\", website: null, latitude: null }) { slug name website latitude longitude memberSince } }",
            json!({}),
            Some(&secretariat),
        )
        .await["updateCity"]
        .clone();
    assert_eq!(
        updated,
        json!({ "slug": "porto", "name": "Porto (PT)", "website": null, "latitude": null, "longitude": -8.61, "memberSince": 2019 })
    );
    let err = hub
        .fails(
            "mutation { updateCity(slug: \"porto\", patch: { memberSince: 1999 }) { slug } }",
            json!({}),
            Some(&secretariat),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "patch.memberSince");
    // The new city gets a token and publishes as itself.
    let issued = hub
        .ok(
            "mutation { issueToken(city: \"porto\", role: CITY, ttlSeconds: 600, label: \"porto web\") { id token expiresAt } }",
            json!({}),
            Some(&secretariat),
        )
        .await["issueToken"]
        .clone();
    let porto = issued["token"].as_str().expect("token");
    let a = publish(
        hub,
        Some(porto),
        input_with("Porto film night", json!({ "coHosts": ["lyon"] })),
        false,
    )
    .await;
    assert_eq!(a["publishedBy"]["slug"], "porto");
    assert_eq!(
        slugs_of(&a["hosts"]),
        ["porto"],
        "Lyon is invited, not yet a host"
    );
}

/// Input errors are `BAD_USER_INPUT` with the input path, and store nothing.
async fn input_errors_name_their_field_and_change_nothing(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let secretariat = hub.token(None).await;
    let before = count_all(hub, &secretariat).await;
    let doc = |url: &str| json!({ "kind": "REPORT", "title": "Report", "url": url });
    let cases = [
        (
            json!({ "startDate": "2026-05-03", "endDate": "2026-05-01" }),
            "input.endDate",
        ),
        (
            json!({ "documents": [doc("https://example.org/a.pdf"), doc("https://example.org/b.pdf"), doc("not a url")] }),
            "input.documents[2].url",
        ),
        (
            json!({ "documents": [doc("https://example.org/a.pdf"), doc("https://example.org/b.pdf"), doc("ftp://example.org/c")] }),
            "input.documents[2].url",
        ),
        (json!({ "coHosts": ["atlantis"] }), "input.coHosts[0]"),
        (
            json!({ "coHosts": ["seoul", "el-dorado"] }),
            "input.coHosts[1]",
        ),
        (json!({ "venueCity": "atlantis" }), "input.venueCity"),
        (json!({ "title": "t".repeat(201) }), "input.title"),
        (json!({ "title": "   " }), "input.title"),
        (
            json!({ "themes": (0..21).map(|i| format!("theme {i}")).collect::<Vec<_>>() }),
            "input.themes",
        ),
        (json!({ "slug": "Not A Slug!" }), "input.slug"),
        (
            json!({ "startDate": "2026-05-02", "endDate": null, "datePrecision": "MONTH" }),
            "input.startDate",
        ),
    ];
    for (extra, field) in cases {
        let err = hub
            .fails(
                &publish_query(),
                json!({ "input": input_with("Invalid", extra.clone()) }),
                Some(&lyon),
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(err["extensions"]["field"], field, "for {extra}: {err}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{err}"
        );
    }
    assert_eq!(
        count_all(hub, &secretariat).await,
        before,
        "a refused publish leaves no activity"
    );
    // The title limit is the title's, not a neighbour's: 200 characters pass.
    let long = publish(hub, Some(&lyon), input(&"t".repeat(200)), false).await;
    assert_eq!(long["title"].as_str().map(|t| t.chars().count()), Some(200));
    // A taken slug is a conflict on that field.
    let err = hub
        .fails(
            &publish_query(),
            json!({ "input": input_with("Another", json!({ "slug": long["slug"] })) }),
            Some(&lyon),
            "CONFLICT",
        )
        .await;
    assert_eq!(err["extensions"]["field"], "input.slug");
    assert_eq!(count_all(hub, &secretariat).await, before + 1);
}

// ---------------------------------------------------------------------------
// Concurrency.
// ---------------------------------------------------------------------------

both_backends!(concurrent_writers, |backend: Backend| async move {
    let hub = TestHub::start(backend).await;
    concurrent_updates_with_one_version(&hub).await;
    concurrent_idempotent_replays(&hub).await;
    many_cities_publish_at_once(&hub).await;
});

/// Twenty writers with one expected version: one wins, the rest conflict.
async fn concurrent_updates_with_one_version(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let a = publish(hub, Some(&lyon), input("Contended"), false).await;
    let id = id_of(&a);
    let start = a["version"].as_i64().expect("version");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, url, token, id) = (hub.client.clone(), hub.url(), lyon.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let vars =
                json!({ "id": id, "patch": { "title": format!("Writer {i}") }, "expected": start });
            let (_, body) = post_with(&client, &url, Some(&token), &update_query(), vars).await;
            (outcome(&body), body)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (code, body) = task.await.expect("task");
        match code.as_str() {
            "ok" => winners.push(body["data"]["updateActivity"].clone()),
            "CONFLICT" => {}
            other => panic!("unexpected outcome {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    let now = read(hub, &id, None).await;
    assert_eq!(now["version"], start + 1);
    assert_eq!(now["title"], winners[0]["title"]);
    let audit = AuditRepo::for_target(hub.db.conn(), "activity", &id)
        .await
        .expect("audit");
    assert_eq!(
        audit
            .iter()
            .filter(|r| r.action == "updateActivity")
            .count(),
        1,
        "one audit record for the one change"
    );
}

/// 500 publications from ten cities at once, many with one title.
async fn many_cities_publish_at_once(hub: &TestHub) {
    let secretariat = hub.token(None).await;
    let cities = [
        "lyon", "seoul", "bologna", "montreal", "berlin", "kobe", "ghent", "glasgow", "quito",
        "dakar",
    ];
    let mut tokens = Vec::new();
    for city in cities {
        tokens.push(hub.token(Some(city)).await);
    }
    let before = count_all(hub, &secretariat).await;
    let permits = Arc::new(tokio::sync::Semaphore::new(50));
    let mut tasks = Vec::new();
    for i in 0..500usize {
        let (client, url) = (hub.client.clone(), hub.url());
        let token = tokens[i % tokens.len()].clone();
        let permits = permits.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("permit");
            // 25 titles for 500 activities: each title's slugs (`-2`, `-3`…)
            // must be found while others publish it at the same time.
            let vars = json!({ "input": input(&format!("Shared Title {}", i % 25)) });
            let (status, body) =
                post_with(&client, &url, Some(&token), &publish_query(), vars).await;
            (status, body)
        }));
    }
    let mut slugs = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut failures = Vec::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        if status != 200 || body.get("errors").is_some() {
            failures.push(format!("{status} {body}"));
            continue;
        }
        let a = &body["data"]["publishActivity"];
        slugs.insert(a["slug"].as_str().expect("slug").to_owned());
        ids.insert(id_of(a));
    }
    assert!(
        failures.is_empty(),
        "{} of 500 publishes failed, e.g. {}",
        failures.len(),
        failures[0]
    );
    assert_eq!(ids.len(), 500);
    assert_eq!(slugs.len(), 500, "every slug is distinct");
    assert_eq!(count_all(hub, &secretariat).await, before + 500);
    let all_slugs = hub
        .ok(
            "{ activities(first: 100, filter: { text: \"Shared Title\" }) { totalCount } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(all_slugs["activities"]["totalCount"], 500);
}

/// Twenty simultaneous replays of one idempotent request make one activity.
async fn concurrent_idempotent_replays(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let secretariat = hub.token(None).await;
    let before = count_all(hub, &secretariat).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url, token) = (hub.client.clone(), hub.url(), lyon.clone());
        tasks.push(tokio::spawn(async move {
            let vars = json!({ "input": input("Retried at once"), "key": "burst-1" });
            post_with(&client, &url, Some(&token), &publish_query(), vars).await
        }));
    }
    let mut ids = BTreeSet::new();
    for task in tasks {
        let (status, body) = task.await.expect("task");
        assert_eq!(outcome(&body), "ok", "{status} {body}");
        ids.insert(id_of(&body["data"]["publishActivity"]));
    }
    assert_eq!(
        ids.len(),
        1,
        "every replay returns the one activity: {ids:?}"
    );
    assert_eq!(count_all(hub, &secretariat).await, before + 1);
    let id = ids.into_iter().next().expect("id");
    let audit = AuditRepo::for_target(hub.db.conn(), "activity", &id)
        .await
        .expect("audit");
    assert_eq!(audit.len(), 1, "one publication recorded: {audit:?}");
}

// ---------------------------------------------------------------------------
// The audit trail.
// ---------------------------------------------------------------------------

/// The audit trail lists each change, in order, with the versions around it.
async fn audit_trail_follows_the_mutations(hub: &TestHub) {
    let lyon = hub.token(Some("lyon")).await;
    let seoul = hub.token(Some("seoul")).await;
    let bologna = hub.token(Some("bologna")).await;
    let secretariat = hub.token(None).await;
    let a = publish(
        hub,
        Some(&lyon),
        input_with("Audited", json!({ "coHosts": ["bologna"] })),
        true,
    )
    .await;
    let id = id_of(&a);
    let vars = json!({ "id": id });
    hub.ok(
        "mutation($id: ID!) { publishDraft(id: $id) { id } }",
        vars.clone(),
        Some(&lyon),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { acceptInvitation(activity: $id) { id } }",
        vars.clone(),
        Some(&bologna),
    )
    .await;
    hub.ok(
        &update_query(),
        json!({ "id": id, "patch": { "title": "Audited, renamed" } }),
        Some(&bologna),
    )
    .await;
    // Neither a refused change nor one that changes nothing is recorded.
    hub.fails(
        &update_query(),
        json!({ "id": id, "patch": { "title": "No" } }),
        Some(&seoul),
        "FORBIDDEN",
    )
    .await;
    hub.fails(
        &update_query(),
        json!({ "id": id, "patch": { "title": "No" }, "expected": 1 }),
        Some(&lyon),
        "CONFLICT",
    )
    .await;
    hub.fails(
        "mutation($id: ID!) { acceptInvitation(activity: $id) { id } }",
        vars.clone(),
        Some(&bologna),
        "CONFLICT",
    )
    .await;
    hub.ok(
        &update_query(),
        json!({ "id": id, "patch": { "title": "Audited, renamed" } }),
        Some(&lyon),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { joinActivity(id: $id) { id } }",
        vars.clone(),
        Some(&seoul),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { leaveActivity(id: $id) { id } }",
        vars.clone(),
        Some(&seoul),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { cancelActivity(id: $id) { id } }",
        vars.clone(),
        Some(&secretariat),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { deleteActivity(id: $id) }",
        vars.clone(),
        Some(&lyon),
    )
    .await;
    let audit = AuditRepo::for_target(hub.db.conn(), "activity", &id)
        .await
        .expect("audit");
    let got: Vec<(&str, &str, Option<i32>, Option<i32>)> = audit
        .iter()
        .map(|r| {
            (
                r.action.as_str(),
                r.actor.as_str(),
                r.version_before,
                r.version_after,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("publishActivity", "city:lyon", None, Some(1)),
            ("publishDraft", "city:lyon", Some(1), Some(2)),
            ("acceptInvitation", "city:bologna", Some(2), Some(3)),
            ("updateActivity", "city:bologna", Some(3), Some(4)),
            ("joinActivity", "city:seoul", Some(4), Some(5)),
            ("leaveActivity", "city:seoul", Some(5), Some(6)),
            ("cancelActivity", "secretariat", Some(6), Some(7)),
            ("deleteActivity", "city:lyon", Some(7), Some(8)),
        ]
    );
    assert!(
        audit
            .iter()
            .all(|r| r.target_type == "activity" && r.target_id == id)
    );
    assert!(
        audit.windows(2).all(|w| w[0].at <= w[1].at),
        "records are in time order"
    );
    // City changes are audited under the city's slug.
    hub.ok(
        "mutation { createCity(input: { slug: \"dundee\", name: \"Dundee\", country: \"GB\", fields: [DESIGN], memberSince: 2019 }) { slug } }",
        json!({}),
        Some(&secretariat),
    )
    .await;
    hub.ok(
            "mutation { updateCity(slug: \"dundee\", patch: { name: \"Dundee (Scotland)\" }) { slug } }",
            json!({}),
            Some(&secretariat),
        )
        .await;
    hub.fails(
        "mutation { updateCity(slug: \"dundee\", patch: { name: \"Nope\" }) { slug } }",
        json!({}),
        Some(&lyon),
        "FORBIDDEN",
    )
    .await;
    let city_audit = AuditRepo::for_target(hub.db.conn(), "city", "dundee")
        .await
        .expect("audit");
    assert_eq!(
        city_audit
            .iter()
            .map(|r| (r.action.as_str(), r.actor.as_str()))
            .collect::<Vec<_>>(),
        [("createCity", "secretariat"), ("updateCity", "secretariat")]
    );
}
