//! The `source_items` table: which activity an item of a source became.

use sea_orm::entity::prelude::*;

/// One row of `source_items`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "source_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub source_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub item_key: String,
    pub city_id: i64,
    pub activity_id: i64,
    pub content_hash: String,
    pub item_url: Option<String>,
    pub gone: bool,
    pub detached: bool,
}

/// No relations are declared: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
