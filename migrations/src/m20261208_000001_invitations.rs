//! Invitations (issue 19): naming another member city as co-host or venue
//! city of an activity invites it, and the activity becomes that city's
//! only once it accepts.
//!
//! `activity_invitations` holds one row per (activity, role, city): role
//! `CO_HOST` or `VENUE`, state `PENDING`, `ACCEPTED` or `DECLINED`, and the
//! row's place among the activity's invitations (`position`: the co-hosts
//! in the order named, then the venue city). An accepted co-host also has
//! its `HOST` row in `activity_cities`, and an accepted venue city is
//! `activities.venue_city_id`, as before: every reader of an activity's
//! cities (the city listing index `city_activities`, the kept counts, the
//! filters) keeps reading those, unchanged, and a pending or declined city
//! is simply not there. So no trigger changes.
//!
//! Backfill: every co-host and venue city named before this migration was
//! one at once; each is recorded as `ACCEPTED` (the publisher itself, a
//! host and maybe its own venue, is not invited). Expand only: nothing is
//! dropped. Down drops the table: accepted cities stay what they are
//! (hosts, venue cities); pending and declined invitations are forgotten,
//! so no city becomes a host it never agreed to be.

use sea_orm_migration::prelude::*;

use crate::run_sql;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE activity_invitations (
    activity_id BIGINT NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    city_id BIGINT NOT NULL REFERENCES cities (id),
    state TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (activity_id, role, city_id)
);
CREATE INDEX activity_invitations_city ON activity_invitations (city_id, state, activity_id);
INSERT INTO activity_invitations (activity_id, role, city_id, state, position)
SELECT ac.activity_id, 'CO_HOST', ac.city_id, 'ACCEPTED', ac.position
  FROM activity_cities ac JOIN activities a ON a.id = ac.activity_id
 WHERE ac.role = 'HOST' AND (a.published_by IS NULL OR ac.city_id <> a.published_by);
INSERT INTO activity_invitations (activity_id, role, city_id, state, position)
SELECT a.id, 'VENUE', a.venue_city_id, 'ACCEPTED',
       (SELECT COUNT(*) FROM activity_cities h WHERE h.activity_id = a.id AND h.role = 'HOST')
  FROM activities a
 WHERE a.venue_city_id IS NOT NULL AND (a.published_by IS NULL OR a.venue_city_id <> a.published_by);
"#;

const DOWN: &str = r#"
DROP INDEX IF EXISTS activity_invitations_city;
DROP TABLE IF EXISTS activity_invitations;
"#;

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The same SQL on both backends.
        run_sql(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_sql(manager, DOWN).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
