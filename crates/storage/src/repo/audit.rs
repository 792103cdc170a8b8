//! The audit trail: who changed what, when, with the versions around it.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::decode::Row;
use crate::entities::audit_log;
use crate::error::StorageError;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who (`city:lyon`, `secretariat`, `cli`).
    pub actor: String,
    /// What (`publishActivity`, `updateActivity`, …).
    pub action: String,
    /// Kind of target (`activity`, `city`, `token`).
    pub target_type: String,
    /// Target id.
    pub target_id: String,
    /// Version before the change.
    pub version_before: Option<i32>,
    /// Version after the change.
    pub version_after: Option<i32>,
}

/// Repository of audit records.
pub struct AuditRepo;

impl AuditRepo {
    /// Appends a record (inside the change's transaction).
    pub async fn record(
        db: &impl ConnectionTrait,
        entry: &AuditRecord,
    ) -> Result<(), StorageError> {
        audit_log::ActiveModel {
            at: Set(entry.at.timestamp_micros()),
            actor: Set(entry.actor.clone()),
            action: Set(entry.action.clone()),
            target_type: Set(entry.target_type.clone()),
            target_id: Set(entry.target_id.clone()),
            version_before: Set(entry.version_before),
            version_after: Set(entry.version_after),
            detail: Set(None),
            ..Default::default()
        }
        .insert(db)
        .await?;
        Ok(())
    }

    /// Builds a record stamped now.
    pub fn entry(
        actor: &str,
        action: &str,
        target_type: &str,
        target_id: impl ToString,
        before: Option<i32>,
        after: Option<i32>,
    ) -> AuditRecord {
        AuditRecord {
            at: chrono::Utc::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id: target_id.to_string(),
            version_before: before,
            version_after: after,
        }
    }

    /// The records about one target, oldest first.
    pub async fn for_target(
        db: &impl ConnectionTrait,
        target_type: &str,
        target_id: &str,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        audit_log::Entity::find()
            .filter(audit_log::Column::TargetType.eq(target_type))
            .filter(audit_log::Column::TargetId.eq(target_id))
            .order_by_asc(audit_log::Column::Id)
            .all(db)
            .await?
            .into_iter()
            .map(|m| {
                Ok(AuditRecord {
                    at: Row::new("audit_log", &m.id).micros("at", m.at)?,
                    actor: m.actor,
                    action: m.action,
                    target_type: m.target_type,
                    target_id: m.target_id,
                    version_before: m.version_before,
                    version_after: m.version_after,
                })
            })
            .collect()
    }
}
