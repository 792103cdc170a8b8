//! Global object identification and a schema clients take without
//! friction: `globalId` unique across types, `node(id:)` and `nodes(ids:)`
//! under the reader's visibility, the `Node` interface, and every argument
//! described with its default visible.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};

const NODE: &str = "query($id: ID!) { node(id: $id) { __typename globalId \
    ... on City { id slug } ... on Activity { id slug status } ... on Document { id title } } }";

async fn node(hub: &TestHub, id: &str, token: Option<&str>) -> Value {
    hub.ok(NODE, json!({ "id": id }), token).await["node"].clone()
}

both_backends!(
    global_ids_are_unique_across_types_and_read_back_through_node,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        // City "1" and Activity "1" share their own id, never their global id.
        let ones = hub
            .ok(
                "{ city(id: \"1\") { id globalId } activity(id: \"1\") { id globalId } }",
                json!({}),
                None,
            )
            .await;
        assert_eq!(ones["city"]["id"], "1", "{ones}");
        assert_eq!(ones["activity"]["id"], "1", "{ones}");
        assert_ne!(ones["city"]["globalId"], ones["activity"]["globalId"]);
        // Each kind of object comes back from node(id:) as itself.
        let city = node(&hub, ones["city"]["globalId"].as_str().expect("id"), None).await;
        assert_eq!(city["__typename"], "City");
        assert_eq!(city["id"], "1");
        assert_eq!(city["globalId"], ones["city"]["globalId"]);
        let activity = node(
            &hub,
            ones["activity"]["globalId"].as_str().expect("id"),
            None,
        )
        .await;
        assert_eq!(activity["__typename"], "Activity");
        assert_eq!(activity["id"], "1");
        let listed = hub
            .ok(
                "{ activities(first: 100) { nodes { globalId documents { id globalId title } } } }",
                json!({}),
                None,
            )
            .await;
        let with_document = listed["activities"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|a| a["documents"].as_array().is_some_and(|d| !d.is_empty()))
            .expect("a seeded activity with a document");
        let document = &with_document["documents"][0];
        let read = node(&hub, document["globalId"].as_str().expect("id"), None).await;
        assert_eq!(read["__typename"], "Document");
        assert_eq!(read["id"], document["id"]);
        assert_eq!(read["title"], document["title"]);
        // nodes(ids:) keeps the order given, null where nothing is visible.
        // A well-formed global id of a city that does not exist.
        let gone = base64_encode("City:999999");
        let many = hub
            .ok(
                "query($ids: [ID!]!) { nodes(ids: $ids) { __typename globalId } }",
                json!({ "ids": [document["globalId"], gone, ones["city"]["globalId"]] }),
                None,
            )
            .await;
        let many = many["nodes"].as_array().expect("list");
        assert_eq!(many.len(), 3);
        assert_eq!(many[0]["__typename"], "Document");
        assert!(many[1].is_null());
        assert_eq!(many[2]["__typename"], "City");
        // A type's own id is not a global id: refused, naming the argument.
        let refused = hub
            .fails(NODE, json!({ "id": "1" }), None, "BAD_USER_INPUT")
            .await;
        assert_eq!(refused["extensions"]["field"], "id");
        let refused = hub
            .fails(
                "query($ids: [ID!]!) { nodes(ids: $ids) { globalId } }",
                json!({ "ids": [ones["city"]["globalId"], "42"] }),
                None,
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(refused["extensions"]["field"], "ids[1]");
        // Visibility is the reader's: a draft is Lyon's, then deleted is gone.
        let lyon = hub.token(Some("lyon")).await;
        let draft = hub
            .ok(
                "mutation { publishActivity(input: { kind: WORKSHOP, title: \"Draft for nodes\" }, draft: true) { id globalId } }",
                json!({}),
                Some(&lyon),
            )
            .await;
        let draft_global = draft["publishActivity"]["globalId"]
            .as_str()
            .expect("id")
            .to_owned();
        assert!(
            node(&hub, &draft_global, None).await.is_null(),
            "a draft is not anonymous"
        );
        let seen = node(&hub, &draft_global, Some(&lyon)).await;
        assert_eq!(seen["status"], "DRAFT");
        hub.ok(
            "mutation($id: ID!) { deleteActivity(id: $id) }",
            json!({ "id": draft["publishActivity"]["id"] }),
            Some(&lyon),
        )
        .await;
        assert!(node(&hub, &draft_global, Some(&lyon)).await.is_null());
    }
);

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_has_a_node_interface_and_every_argument_is_described() {
    let hub = TestHub::start(Backend::Sqlite).await;
    let node = hub
        .ok(
            "{ __type(name: \"Node\") { kind fields { name } possibleTypes { name } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(node["__type"]["kind"], "INTERFACE");
    assert_eq!(node["__type"]["fields"], json!([{ "name": "globalId" }]));
    let mut possible: Vec<String> = node["__type"]["possibleTypes"]
        .as_array()
        .expect("types")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_owned())
        .collect();
    possible.sort();
    assert_eq!(possible, ["Activity", "City", "Document"]);
    let schema = hub
        .ok(
            "{ __schema { types { name kind fields { name args { name description defaultValue } } } } }",
            json!({}),
            None,
        )
        .await;
    let mut undescribed = Vec::new();
    let mut defaults = std::collections::BTreeMap::new();
    for ty in schema["__schema"]["types"].as_array().expect("types") {
        let type_name = ty["name"].as_str().unwrap_or_default();
        if type_name.starts_with("__") || ty["kind"] != "OBJECT" {
            continue;
        }
        for field in ty["fields"].as_array().into_iter().flatten() {
            let field_name = field["name"].as_str().unwrap_or_default();
            // Federation's own fields are described by its specification.
            if field_name.starts_with('_') {
                continue;
            }
            for arg in field["args"].as_array().into_iter().flatten() {
                let arg_name = arg["name"].as_str().unwrap_or_default();
                let path = format!("{type_name}.{field_name}({arg_name}:)");
                if arg["description"]
                    .as_str()
                    .is_none_or(|d| d.trim().is_empty())
                {
                    undescribed.push(path.clone());
                }
                defaults.insert(path, arg["defaultValue"].clone());
            }
        }
    }
    assert!(
        undescribed.is_empty(),
        "arguments without a description: {undescribed:?}"
    );
    // Defaults are in the schema, alike on both listings.
    for listing in ["Query.activities", "City.activities"] {
        assert_eq!(defaults[&format!("{listing}(first:)")], "20", "{listing}");
        assert_eq!(
            defaults[&format!("{listing}(orderBy:)")],
            "START_DATE_DESC",
            "{listing}"
        );
    }
    assert_eq!(defaults["Query.cities(first:)"], "50");
}
