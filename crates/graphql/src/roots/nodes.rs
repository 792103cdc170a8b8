//! Global object identification: `node(id:)` and `nodes(ids:)`, reading
//! any `City`, `Activity` or `Document` by its `globalId` (see
//! `objects::node` for why `id` stays each type's own).

use async_graphql::{Context, ID, Object, Result};
use cityhub_storage::{ActivityRepo, CityRepo};

use crate::access::may_read;
use crate::error::{ResultExt, bad_input};
use crate::objects::activity::{ActivityObject, DocumentObject};
use crate::objects::city::CityObject;
use crate::objects::node::{GlobalId, Node};
use crate::state::{hub, loaders};

/// Reads by global id.
#[derive(Default)]
pub struct NodeQuery;

/// Reads by global id.
#[Object]
impl NodeQuery {
    /// The object with this `globalId` (a `City`, an `Activity` or a `Document`); null if it does not exist or is not visible to the request (a draft of another city, a deleted activity). A value that is not a global id of this hub is `BAD_USER_INPUT`; a type's own `id` is not a global id.
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A `globalId`, as the hub gave it.")] id: ID,
    ) -> Result<Option<Node>> {
        may_read(ctx)?;
        let global = GlobalId::parse_arg(&id, "id")?;
        resolve(ctx, global).await
    }

    /// The objects with these `globalId`s, in the order given; null where `node(id:)` would be null. At most `api.max_page_size` ids.
    #[graphql(complexity = "ids.len() * child_complexity + 2")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`globalId`s, as the hub gave them.")] ids: Vec<ID>,
    ) -> Result<Vec<Option<Node>>> {
        may_read(ctx)?;
        let most = hub(ctx).settings.max_page_size;
        if ids.len() > most as usize {
            return Err(bad_input(
                "ids",
                format!("at most {most} ids in one request"),
            ));
        }
        let globals = ids
            .iter()
            .enumerate()
            .map(|(i, id)| GlobalId::parse_arg(id, &format!("ids[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let mut found = Vec::with_capacity(globals.len());
        for global in globals {
            found.push(resolve(ctx, global).await?);
        }
        Ok(found)
    }
}

/// The object `global` names, as the request may see it.
async fn resolve(ctx: &Context<'_>, global: GlobalId) -> Result<Option<Node>> {
    let scope = may_read(ctx)?;
    let db = hub(ctx).service.db();
    Ok(match global {
        GlobalId::City(id) => CityRepo::find_by_id(db, id)
            .await
            .api()?
            .map(|c| Node::City(CityObject(c))),
        GlobalId::Activity(id) => ActivityRepo::find_by_id(db, scope, id)
            .await
            .api()?
            .map(|a| Node::Activity(ActivityObject::new(a))),
        GlobalId::Document { activity, document } => {
            // A document is as visible as its activity.
            if ActivityRepo::find_by_id(db, scope, activity)
                .await
                .api()?
                .is_none()
            {
                return Ok(None);
            }
            loaders(ctx)
                .documents
                .load_one(activity)
                .await
                .api()?
                .unwrap_or_default()
                .into_iter()
                .find(|d| d.id == document)
                .map(|d| Node::Document(DocumentObject(d)))
        }
    })
}
