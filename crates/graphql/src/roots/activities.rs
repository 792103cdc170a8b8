//! Reading activities: `activities`, `activity`, `stats`,
//! `markdownPreview` (the pages' renderer, for editors) and the `Activity`
//! entity resolver.

use async_graphql::{Context, ID, Object, Result};
use cityhub_domain::ActivityId;
use cityhub_storage::repo::activity::ActivityKey;
use cityhub_storage::{ActivityRepo, ActivityTexts, PageColumns, RelationRead};

use crate::access::{check_slug_arg, may_read};
use crate::enums::ActivityOrder;
use crate::error::{ResultExt, bad_input};
use crate::inputs::ActivityFilterInput;
use crate::loaders::ReadWithPage;
use crate::objects::activity::{ActivityObject, reads_description};
use crate::objects::connection::ActivityConnection;
use crate::objects::parse_activity_id;
use crate::objects::stats::{ActivityStats, activity_stats};
use crate::state::{hub, loaders};

/// Reads of activities.
#[derive(Default)]
pub struct ActivityQuery;

/// Reads of activities.
#[Object]
impl ActivityQuery {
    /// Activities matching the filter (published ones by default), a page at a time.
    #[graphql(
        complexity = "first.unwrap_or(cityhub_domain::page::ACTIVITIES).clamp(0, cityhub_domain::page::MOST_COUNTED) as usize * child_complexity + 2"
    )]
    async fn activities(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Which activities; `statuses` defaults to `[PUBLISHED]` (drafts only when asked for, and only those the token may see)."
        )]
        filter: Option<ActivityFilterInput>,
        #[graphql(
            desc = "Order of the listing; ties are broken by id, so pages never overlap.",
            default_with = "Some(ActivityOrder::StartDateDesc)"
        )]
        order_by: Option<ActivityOrder>,
        #[graphql(
            desc = "Page size, from 0 to `api.max_page_size` (100).",
            default_with = "Some(cityhub_domain::page::ACTIVITIES)"
        )]
        first: Option<i32>,
        #[graphql(desc = "`pageInfo.endCursor` of the previous page, with the same `orderBy`.")]
        after: Option<String>,
    ) -> Result<ActivityConnection> {
        ActivityConnection::list(
            ctx,
            filter,
            order_by.unwrap_or(ActivityOrder::StartDateDesc),
            first.unwrap_or(cityhub_domain::page::ACTIVITIES),
            after,
            None,
        )
        .await
    }

    /// One activity, by id or by slug (exactly one of them); null if it does not exist or is not visible.
    async fn activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The activity's `id` (give `id` or `slug`, not both).")] id: Option<ID>,
        #[graphql(desc = "The activity's slug (give `id` or `slug`, not both).")] slug: Option<
            String,
        >,
    ) -> Result<Option<ActivityObject>> {
        let scope = may_read(ctx)?;
        let db = hub(ctx).service.db();
        let id = id.map(|id| parse_activity_id(&id, "id")).transpose()?;
        let key = match (id, &slug) {
            (Some(id), None) => ActivityKey::Id(id),
            (None, Some(slug)) => {
                check_slug_arg(ctx, "slug", slug)?;
                ActivityKey::Slug(slug)
            }
            _ => return Err(bad_input("id", "give exactly one of `id` and `slug`")),
        };
        // The activity with what the query selects of it, in one statement.
        let look = ctx.look_ahead();
        let read = |name: &str| {
            if look.field(name).exists() {
                RelationRead::InPage
            } else {
                RelationRead::Apart
            }
        };
        let columns = PageColumns {
            texts: if reads_description(&look) {
                ActivityTexts::All
            } else {
                ActivityTexts::WithoutDescription
            },
            documents: read("documents"),
            participants: read("participants"),
        };
        let mut page = ActivityRepo::find_with(db, scope, key, columns)
            .await
            .api()?;
        let found = page.items.pop();
        if let Some(activity) = &found {
            loaders(ctx)
                .prefetch(
                    db,
                    ReadWithPage::take_from(&mut page),
                    std::slice::from_ref(activity),
                    |name| look.field(name).exists(),
                )
                .await
                .api()?;
        }
        Ok(found.map(ActivityObject::new))
    }

    /// Counts of the activities the filter selects (published ones by
    /// default), by field, kind, country, year and format, for dashboards.
    /// Honours visibility like `activities`. Constant-time in the number of
    /// activities when the filter names at most one of kinds, formats, one
    /// field, one country or one city; other filters count the selected rows.
    async fn stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which activities to count, as `activities` selects them.")]
        filter: Option<ActivityFilterInput>,
    ) -> Result<ActivityStats> {
        let scope = may_read(ctx)?;
        activity_stats(ctx, scope, filter).await
    }

    /// The HTML the hub renders this Markdown as, exactly as activity pages and feeds show a `description`: raw HTML shown as text, links only to `http`, `https`, `mailto` or relative targets, images as plain links. For editors' live previews (the publishing desk's); the text obeys the rules of `description` (`BAD_USER_INPUT` naming `markdown` otherwise).
    async fn markdown_preview(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Markdown, as `ActivityInput.description` takes it (at most `limits.description_bytes`)."
        )]
        markdown: String,
    ) -> Result<String> {
        let limit = hub(ctx).service.limits().description_bytes;
        if markdown.len() > limit {
            return Err(bad_input(
                "markdown",
                format!("must be at most {limit} bytes"),
            ));
        }
        cityhub_domain::chars::check_text(
            "markdown",
            &markdown,
            cityhub_domain::chars::TextKind::Prose,
        )
        .map_err(crate::error::domain)?;
        let html = cityhub_domain::markdown::to_safe_html(&markdown);
        Ok(cityhub_domain::chars::for_output(&html).into_owned())
    }

    /// Federation: resolves an `Activity` entity by id.
    #[graphql(entity)]
    async fn find_activity_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<ActivityObject>> {
        let scope = may_read(ctx)?;
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        Ok(
            ActivityRepo::find_by_id(hub(ctx).service.db(), scope, ActivityId(id))
                .await
                .api()?
                .map(ActivityObject::new),
        )
    }
}
