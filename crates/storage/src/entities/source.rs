//! The `sources` table.

use sea_orm::entity::prelude::*;

/// One row of `sources`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "sources")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub city_id: i64,
    pub kind: String,
    pub url: String,
    pub defaults: String,
    pub paused: bool,
    pub created_at: i64,
    pub last_run_at: Option<i64>,
    pub last_change_at: Option<i64>,
    pub last_status: String,
    pub last_error: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub body_hash: Option<String>,
    pub next_run_at: i64,
    pub failures: i32,
    pub lease_until: Option<i64>,
    pub lease_owner: Option<String>,
}

/// No relations are declared: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
