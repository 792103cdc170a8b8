//! The `activities` table.

use sea_orm::entity::prelude::*;

/// One row of `activities`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "activities")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub slug: String,
    pub kind: String,
    pub format: String,
    pub status: String,
    pub title: String,
    pub title_key: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub start_date: Option<Date>,
    pub end_date: Option<Date>,
    pub date_precision: String,
    pub start_key: i32,
    pub end_key: i32,
    pub venue: Option<String>,
    pub venue_city_id: Option<i64>,
    pub organizations: String,
    pub fields: String,
    pub themes: String,
    pub objectives: String,
    pub published_by: Option<i64>,
    pub published_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i32,
    pub cancel_reason: Option<String>,
    pub deleted_at: Option<i64>,
    pub search_text: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub time_zone: Option<String>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
}

/// No relations are declared: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
