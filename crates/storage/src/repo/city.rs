//! Member cities: lookups, listings and the network's counts.

use std::collections::HashMap;

use cityhub_domain::{City, CityId, CityInput, CreativeField, text};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::{Page, count_all, find_all, find_one, in_list, mark, to_json};
use crate::cursor::{Cursor, CursorKey};
use crate::db::ReadConnection;
use crate::decode::Row;
use crate::entities::{city, city_field};
use crate::error::StorageError;
use crate::time::now_micros;

/// Which cities a listing returns.
#[derive(Debug, Clone, Default)]
pub struct CityFilter {
    /// Any of these fields.
    pub fields: Vec<CreativeField>,
    /// Any of these countries.
    pub countries: Vec<String>,
    /// Name contains this text (case and accents folded).
    pub text: Option<String>,
}

impl CityFilter {
    /// Whether every member city matches (no field, country or name text;
    /// a blank text selects every city, as in SQL).
    pub fn selects_every_city(&self) -> bool {
        self.fields.is_empty()
            && self.countries.is_empty()
            && self
                .text
                .as_deref()
                .is_none_or(|t| text::fold(t).trim().is_empty())
    }
}

/// Counts for one creative field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldCount {
    /// The field.
    pub field: CreativeField,
    /// Member cities designated in it.
    pub cities: i64,
    /// Published activities concerning it.
    pub activities: i64,
}

/// The network's overall counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkCounts {
    /// Member cities.
    pub cities: i64,
    /// Distinct countries of member cities.
    pub countries: i64,
    /// Published activities.
    pub activities: i64,
    /// Per field.
    pub fields: Vec<FieldCount>,
}

/// The cursor order name of city listings.
pub const CITY_ORDER: &str = "CITY_NAME";

/// Repository of member cities.
pub struct CityRepo;

pub(crate) fn to_city(m: city::Model) -> Result<City, StorageError> {
    Ok(City {
        fields: Row::new("cities", &m.id).json_list("fields", &m.fields)?,
        id: CityId(m.id),
        slug: m.slug,
        name: m.name,
        country: m.country,
        member_since: m.member_since,
        website: m.website,
        latitude: m.latitude,
        longitude: m.longitude,
    })
}

impl CityRepo {
    /// The city with this slug.
    pub async fn find_by_slug(
        db: &impl ReadConnection,
        slug: &str,
    ) -> Result<Option<City>, StorageError> {
        find_one(db, city::Entity::find().filter(city::Column::Slug.eq(slug)))
            .await?
            .map(to_city)
            .transpose()
    }

    /// The city with this id.
    pub async fn find_by_id(
        db: &impl ReadConnection,
        id: CityId,
    ) -> Result<Option<City>, StorageError> {
        find_one(db, city::Entity::find_by_id(id.get()))
            .await?
            .map(to_city)
            .transpose()
    }

    /// The cities with these ids, by id (one query).
    pub async fn find_by_ids(
        db: &impl ReadConnection,
        ids: &[CityId],
    ) -> Result<HashMap<CityId, City>, StorageError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        find_all(
            db,
            city::Entity::find().filter(super::id_in(db.get_database_backend(), "cities.id", ids)),
        )
        .await?
        .into_iter()
        .map(|m| Ok((CityId(m.id), to_city(m)?)))
        .collect()
    }

    /// Ids of the cities with these slugs; slugs not found are absent.
    pub async fn ids_by_slugs(
        db: &impl ConnectionTrait,
        slugs: &[String],
    ) -> Result<HashMap<String, CityId>, StorageError> {
        if slugs.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(city::Entity::find()
            .filter(city::Column::Slug.is_in(slugs.iter().cloned()))
            .all(db)
            .await?
            .into_iter()
            .map(|m| (m.slug, CityId(m.id)))
            .collect())
    }

    fn condition(filter: &CityFilter, backend: sea_orm::DatabaseBackend) -> Condition {
        let mut cond = Condition::all();
        if !filter.fields.is_empty() {
            let (marks, values) = in_list(backend, 1, filter.fields.iter().map(|f| f.as_str()));
            cond = cond.add(Expr::cust_with_values(
                format!("cities.id IN (SELECT city_id FROM city_fields WHERE field IN {marks})"),
                values,
            ));
        }
        if !filter.countries.is_empty() {
            cond = cond.add(
                city::Column::Country
                    .is_in(filter.countries.iter().map(|c| c.to_ascii_uppercase())),
            );
        }
        if let Some(text) = filter
            .text
            .as_deref()
            .map(text::fold)
            .filter(|t| !t.trim().is_empty())
        {
            let escaped = text
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            cond = cond.add(Expr::cust_with_values(
                format!("cities.name_key LIKE {} ESCAPE '\\'", mark(backend, 1)),
                [format!("%{escaped}%")],
            ));
        }
        cond
    }

    /// One page of cities ordered by folded name.
    pub async fn page(
        db: &impl ReadConnection,
        filter: &CityFilter,
        first: u64,
        after: Option<&Cursor>,
    ) -> Result<Page<City>, StorageError> {
        let mut query =
            city::Entity::find().filter(Self::condition(filter, db.get_database_backend()));
        if let Some(Cursor {
            key: CursorKey::Text(key),
            id,
            ..
        }) = after
        {
            query = query.filter(
                Condition::any()
                    .add(city::Column::NameKey.gt(key.clone()))
                    .add(
                        Condition::all()
                            .add(city::Column::NameKey.eq(key.clone()))
                            .add(city::Column::Id.gt(*id)),
                    ),
            );
        }
        let mut rows = find_all(
            db,
            query
                .order_by_asc(city::Column::NameKey)
                .order_by_asc(city::Column::Id)
                .limit(first + 1),
        )
        .await?;
        let has_next = rows.len() as u64 > first;
        rows.truncate(first as usize);
        Ok(Page {
            items: rows.into_iter().map(to_city).collect::<Result<_, _>>()?,
            has_next,
            cities_version: None,
            documents: None,
            participants: None,
        })
    }

    /// The cursor of a city in the name order.
    pub fn cursor_of(city: &City) -> Cursor {
        Cursor {
            order: CITY_ORDER.into(),
            key: CursorKey::Text(text::fold(&city.name)),
            id: city.id.get(),
        }
    }

    /// How many cities match.
    pub async fn count(db: &impl ReadConnection, filter: &CityFilter) -> Result<u64, StorageError> {
        count_all(
            db,
            city::Entity::find().filter(Self::condition(filter, db.get_database_backend())),
        )
        .await
    }

    /// Inserts a validated city; a taken slug is a conflict.
    pub async fn insert(
        db: &impl ConnectionTrait,
        input: &CityInput,
    ) -> Result<City, StorageError> {
        let now = now_micros();
        let model = city::ActiveModel {
            slug: Set(input.slug.clone()),
            name: Set(input.name.clone()),
            name_key: Set(text::fold(&input.name)),
            country: Set(input.country.clone()),
            fields: Set(to_json(&input.fields)),
            member_since: Set(input.member_since),
            website: Set(input.website.clone()),
            latitude: Set(input.latitude),
            longitude: Set(input.longitude),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        let inserted = model
            .insert(db)
            .await
            .map_err(StorageError::from)
            .map_err(|e| {
                if e.is_unique_violation() {
                    StorageError::Conflict(format!("city '{}' exists", input.slug))
                } else {
                    e
                }
            })?;
        Self::write_fields(db, CityId(inserted.id), &input.fields).await?;
        to_city(inserted)
    }

    /// Replaces a city's values (the slug stays).
    pub async fn update(
        db: &impl ConnectionTrait,
        id: CityId,
        input: &CityInput,
    ) -> Result<City, StorageError> {
        let model = city::ActiveModel {
            id: Set(id.get()),
            name: Set(input.name.clone()),
            name_key: Set(text::fold(&input.name)),
            country: Set(input.country.clone()),
            fields: Set(to_json(&input.fields)),
            member_since: Set(input.member_since),
            website: Set(input.website.clone()),
            latitude: Set(input.latitude),
            longitude: Set(input.longitude),
            updated_at: Set(now_micros()),
            ..Default::default()
        };
        let updated = model.update(db).await?;
        city_field::Entity::delete_many()
            .filter(city_field::Column::CityId.eq(id.get()))
            .exec(db)
            .await?;
        Self::write_fields(db, id, &input.fields).await?;
        to_city(updated)
    }

    async fn write_fields(
        db: &impl ConnectionTrait,
        id: CityId,
        fields: &[CreativeField],
    ) -> Result<(), StorageError> {
        if fields.is_empty() {
            return Ok(());
        }
        let rows = fields.iter().map(|f| city_field::ActiveModel {
            city_id: Set(id.get()),
            field: Set(f.as_str().to_owned()),
        });
        city_field::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
        Ok(())
    }
}
