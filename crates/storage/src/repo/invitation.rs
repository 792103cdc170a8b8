//! Invitations of member cities to activities (`activity_invitations`,
//! migration `m20261208_000001_invitations`): read in batches, written
//! with the activity's other relations by `ActivityRepo`. What they mean
//! (who hosts, who is the venue city, what an answer changes) is the
//! domain's rule (`cityhub_domain::invitation`); this is its storage.

use std::collections::HashMap;

use cityhub_domain::{ActivityId, CityId, Invitation, InvitationRole, InvitationState};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::find_all;
use crate::db::ReadConnection;
use crate::decode::Row;
use crate::entities::activity_invitation;
use crate::error::StorageError;

/// Repository of invitations.
pub struct InvitationRepo;

fn to_invitation(m: &activity_invitation::Model) -> Result<Invitation, StorageError> {
    let id = format!("{}/{}/{}", m.activity_id, m.role, m.city_id);
    let row = Row::new("activity_invitations", &id);
    Ok(Invitation {
        city: CityId(m.city_id),
        role: row.enumeration("role", &m.role, InvitationRole::parse)?,
        state: row.enumeration("state", &m.state, InvitationState::parse)?,
    })
}

impl InvitationRepo {
    /// The invitations of these activities, each activity's in order (one
    /// query); an activity without any is absent.
    pub async fn of_activities(
        db: &impl ReadConnection,
        ids: &[ActivityId],
    ) -> Result<HashMap<ActivityId, Vec<Invitation>>, StorageError> {
        let mut out: HashMap<ActivityId, Vec<Invitation>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let rows = find_all(
            db,
            activity_invitation::Entity::find()
                .filter(super::id_in(
                    db.get_database_backend(),
                    "activity_invitations.activity_id",
                    ids,
                ))
                .order_by_asc(activity_invitation::Column::ActivityId)
                .order_by_asc(activity_invitation::Column::Position),
        )
        .await?;
        for row in &rows {
            out.entry(ActivityId(row.activity_id))
                .or_default()
                .push(to_invitation(row)?);
        }
        Ok(out)
    }

    /// One activity's invitations, in order.
    pub async fn of_activity(
        db: &impl ReadConnection,
        id: ActivityId,
    ) -> Result<Vec<Invitation>, StorageError> {
        Ok(Self::of_activities(db, &[id])
            .await?
            .remove(&id)
            .unwrap_or_default())
    }

    /// Deletes an activity's invitations.
    pub(crate) async fn clear(
        db: &impl ConnectionTrait,
        id: ActivityId,
    ) -> Result<(), StorageError> {
        activity_invitation::Entity::delete_many()
            .filter(activity_invitation::Column::ActivityId.eq(id.get()))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Inserts an activity's invitations, in order (it has none).
    pub(crate) async fn insert(
        db: &impl ConnectionTrait,
        id: ActivityId,
        invitations: &[Invitation],
    ) -> Result<(), StorageError> {
        if invitations.is_empty() {
            return Ok(());
        }
        let rows =
            invitations
                .iter()
                .enumerate()
                .map(|(i, inv)| activity_invitation::ActiveModel {
                    activity_id: Set(id.get()),
                    role: Set(inv.role.as_str().to_owned()),
                    city_id: Set(inv.city.get()),
                    state: Set(inv.state.as_str().to_owned()),
                    position: Set(i32::try_from(i).unwrap_or(i32::MAX)),
                });
        activity_invitation::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
        Ok(())
    }
}
