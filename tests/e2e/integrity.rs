//! Corrupt rows are not hidden: a value no version of cityhub writes,
//! planted with raw SQL, makes the read fail as an internal error (the
//! client sees an error id, never SQL or the value), and the storage error
//! names the table, column and row.

use cityhub_domain::ActivityId;
use cityhub_storage::{ActivityRepo, ReadScope, StorageError};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::both_backends;
use crate::support::TestHub;

const BY_SLUG: &str = "query($slug: String!) { activity(slug: $slug) { id title status themes } }";
/// Another document for the check before the corruption (so no response
/// cached from it can answer the check after).
const BEFORE: &str =
    "query($slug: String!) { activity(slug: $slug) { id status themes updatedAt } }";

/// The ids and slugs of the first `n` activities.
async fn activities(hub: &TestHub, n: usize) -> Vec<(i64, String)> {
    let conn = hub.db.conn();
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            format!("SELECT id, slug FROM activities ORDER BY id LIMIT {n}"),
        ))
        .await
        .expect("select");
    rows.iter()
        .map(|r| {
            (
                r.try_get::<i64>("", "id").expect("id"),
                r.try_get::<String>("", "slug").expect("slug"),
            )
        })
        .collect()
}

async fn corrupt(hub: &TestHub, id: i64, assignment: &str) {
    hub.db
        .conn()
        .execute_unprepared(&format!(
            "UPDATE activities SET {assignment} WHERE id = {id}"
        ))
        .await
        .expect("corrupt a row");
}

both_backends!(
    corrupt_rows_are_internal_errors_naming_the_row,
    |backend| async move {
        let hub = TestHub::start(backend).await;
        let secretariat = hub.token(None).await;
        let rows = activities(&hub, 3).await;
        assert_eq!(rows.len(), 3, "the seed has activities");
        let cases = [
            (rows[0].clone(), "status = 'PUBLISHD'", "status"),
            (rows[1].clone(), "themes = '[\"light\",'", "themes"),
            (
                rows[2].clone(),
                "updated_at = 9223372036854775807",
                "updated_at",
            ),
        ];
        for ((id, slug), assignment, column) in cases {
            // Readable before: the failure below is the corruption's doing.
            let before = hub
                .ok(BEFORE, json!({ "slug": slug }), Some(&secretariat))
                .await;
            assert!(before["activity"]["id"].is_string(), "{before}");
            corrupt(&hub, id, assignment).await;
            match ActivityRepo::find_by_id(hub.db.conn(), ReadScope::All, ActivityId(id)).await {
                Err(StorageError::Corrupt {
                    table,
                    column: c,
                    id: row,
                    ..
                }) => {
                    assert_eq!(table, "activities");
                    assert_eq!(c, column);
                    assert_eq!(row, id.to_string());
                }
                other => panic!("{column}: expected a corrupt-row error, got {other:?}"),
            }
            let error = hub
                .fails(
                    BY_SLUG,
                    json!({ "slug": slug }),
                    Some(&secretariat),
                    "INTERNAL_SERVER_ERROR",
                )
                .await;
            let message = error["message"].as_str().unwrap_or_default();
            assert!(message.starts_with("internal error (id "), "{message}");
            assert!(error["extensions"]["errorId"].is_string(), "{error}");
            assert!(
                !message.contains(column) && !message.contains("UPDATE"),
                "{message}"
            );
        }
        hub.stop().await;
    }
);
