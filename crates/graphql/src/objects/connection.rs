//! Relay connections of activities and cities, with keyset cursors and a
//! `totalCount` computed only when asked for; the activity listing that
//! `Query.activities` and `City.activities` share.

use async_graphql::{Context, Object, Result, SimpleObject};
use cityhub_domain::ActivityOrder;
use cityhub_storage::cursor::KeyKind;
use cityhub_storage::repo::activity::cursor_of;
use cityhub_storage::{
    ActivityFilter, ActivityRepo, ActivityTexts, CityFilter, CityRepo, Cursor, Page, PageColumns,
    ReadScope, RelationRead,
};

use crate::access::{may_read, page_size};
use crate::error::{ResultExt, cursor};
use crate::inputs::ActivityFilterInput;
use crate::loaders::ReadWithPage;
use crate::objects::activity::{ActivityObject, reads_description};
use crate::objects::city::CityObject;
use crate::state::{hub, loaders};

/// Where a page stands in its listing.
#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    /// Whether rows follow this page.
    pub has_next_page: bool,
    /// Whether rows precede this page (true when the page started after a cursor).
    pub has_previous_page: bool,
    /// Cursor of the first row of the page.
    pub start_cursor: Option<String>,
    /// Cursor of the last row of the page; pass it as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// One activity of a page, with its cursor.
pub struct ActivityEdge {
    cursor: String,
    node: ActivityObject,
}

/// One activity of a page, with its cursor.
#[Object]
impl ActivityEdge {
    /// Opaque position of this row; pass it as `after` to continue after it.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The activity.
    async fn node(&self) -> &ActivityObject {
        &self.node
    }
}

/// A page of activities.
pub struct ActivityConnection {
    edges: Vec<ActivityEdge>,
    page_info: PageInfo,
    scope: ReadScope,
    filter: ActivityFilter,
}

impl ActivityConnection {
    /// Lists activities for a reader; `city` narrows to one city's (for
    /// `City.activities`). The relations the query selects on the page's
    /// activities are loaded up front, one query per kind.
    pub async fn list(
        ctx: &Context<'_>,
        filter: Option<ActivityFilterInput>,
        order: crate::enums::ActivityOrder,
        first: i32,
        after: Option<String>,
        city: Option<&str>,
    ) -> Result<Self> {
        let scope = may_read(ctx)?;
        let h = hub(ctx);
        let first = page_size(ctx, first)?;
        let mut filter = filter
            .unwrap_or_default()
            .into_filter("filter", h.service.limits())?;
        if let Some(slug) = city {
            filter.cities = vec![slug.to_owned()];
        }
        let order: ActivityOrder = order.into();
        let after_cursor = match &after {
            Some(text) => {
                let kind = match order {
                    ActivityOrder::TitleAsc => KeyKind::Text,
                    _ => KeyKind::Int,
                };
                Some(Cursor::decode(text, order.as_str(), kind).map_err(cursor)?)
            }
            None => None,
        };
        let look = ctx.look_ahead();
        let nodes = [look.field("nodes"), look.field("edges").field("node")];
        // The description is the longest column: read only when asked.
        let texts = if nodes.iter().any(reads_description) {
            ActivityTexts::All
        } else {
            ActivityTexts::WithoutDescription
        };
        // The documents in the page's own statement, where it can read them.
        let documents = if nodes.iter().any(|n| n.field("documents").exists()) {
            RelationRead::InPage
        } else {
            RelationRead::Apart
        };
        let mut page = ActivityRepo::page_of(
            h.service.db(),
            scope,
            &filter,
            order,
            first,
            after_cursor.as_ref(),
            PageColumns {
                texts,
                documents,
                ..PageColumns::default()
            },
        )
        .await
        .api()?;
        let read = ReadWithPage::take_from(&mut page);
        loaders(ctx)
            .prefetch(h.service.db(), read, &page.items, |name| {
                nodes.iter().any(|n| n.field(name).exists())
            })
            .await
            .api()?;
        Ok(Self::new(
            page,
            order,
            after_cursor.is_some(),
            scope,
            filter,
        ))
    }

    /// Builds the connection of a fetched page.
    pub fn new(
        page: Page<cityhub_domain::Activity>,
        order: ActivityOrder,
        after: bool,
        scope: ReadScope,
        filter: ActivityFilter,
    ) -> Self {
        let edges: Vec<ActivityEdge> = page
            .items
            .into_iter()
            .map(|a| ActivityEdge {
                cursor: cursor_of(&a, order).encode(),
                node: ActivityObject::new(a),
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: page.has_next,
            has_previous_page: after,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Self {
            edges,
            page_info,
            scope,
            filter,
        }
    }
}

/// A page of activities (a Relay connection).
#[Object]
impl ActivityConnection {
    /// The rows of the page, each with its cursor.
    async fn edges(&self) -> &[ActivityEdge] {
        &self.edges
    }

    /// The activities of the page.
    async fn nodes(&self) -> Vec<&ActivityObject> {
        self.edges.iter().map(|e| &e.node).collect()
    }

    /// Where the page stands.
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }

    /// How many activities match the filter in all (one extra query, made only when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let n = ActivityRepo::count(hub(ctx).service.db(), self.scope, &self.filter)
            .await
            .api()?;
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// One city of a page, with its cursor.
pub struct CityEdge {
    cursor: String,
    node: CityObject,
}

/// One city of a page, with its cursor.
#[Object]
impl CityEdge {
    /// Opaque position of this row; pass it as `after` to continue after it.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The city.
    async fn node(&self) -> &CityObject {
        &self.node
    }
}

/// A page of member cities, ordered by name.
pub struct CityConnection {
    edges: Vec<CityEdge>,
    page_info: PageInfo,
    filter: CityFilter,
    /// `totalCount` when the page was read with it (from memory).
    total: Option<u64>,
}

impl CityConnection {
    /// Builds the connection of a fetched page.
    pub fn new(
        page: Page<cityhub_domain::City>,
        after: Option<&Cursor>,
        filter: CityFilter,
    ) -> Self {
        let edges: Vec<CityEdge> = page
            .items
            .into_iter()
            .map(|c| CityEdge {
                cursor: CityRepo::cursor_of(&c).encode(),
                node: CityObject(c),
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: page.has_next,
            has_previous_page: after.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Self {
            edges,
            page_info,
            filter,
            total: None,
        }
    }

    /// The connection, with `totalCount` already known.
    pub fn with_total(self, total: u64) -> Self {
        Self {
            total: Some(total),
            ..self
        }
    }
}

/// A page of member cities, ordered by name (a Relay connection).
#[Object]
impl CityConnection {
    /// The rows of the page, each with its cursor.
    async fn edges(&self) -> &[CityEdge] {
        &self.edges
    }

    /// The cities of the page.
    async fn nodes(&self) -> Vec<&CityObject> {
        self.edges.iter().map(|e| &e.node).collect()
    }

    /// Where the page stands.
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }

    /// How many cities match the filter in all.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let n = match self.total {
            Some(n) => n,
            None => CityRepo::count(hub(ctx).service.db(), &self.filter)
                .await
                .api()?,
        };
        Ok(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
