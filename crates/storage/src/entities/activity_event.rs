//! The `activity_events` table.

use sea_orm::entity::prelude::*;

/// One row of `activity_events`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "activity_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub activity_id: i64,
    pub event_type: String,
    pub occurred_at: i64,
    pub actor_city_id: Option<i64>,
    pub status: String,
    pub published_by: Option<i64>,
}

/// No relations are declared: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
