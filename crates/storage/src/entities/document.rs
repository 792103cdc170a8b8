//! The `documents` table.

use sea_orm::entity::prelude::*;

/// One row of `documents`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "documents")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub activity_id: i64,
    pub position: i32,
    pub kind: String,
    pub title: String,
    pub url: Option<String>,
    pub issued_on: Option<Date>,
    pub issued_precision: String,
    pub editors: String,
}

/// No relations are declared: queries join explicitly.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
