//! The audit trail: who changed what, when, with the versions around it.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use cityhub_domain::ActivityId;

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

impl AuditRecord {
    /// The record with the target's version before and after the change
    /// (`None` before a creation).
    #[must_use]
    pub fn versions(self, before: Option<i32>, after: i32) -> Self {
        Self {
            version_before: before,
            version_after: Some(after),
            ..self
        }
    }
}

/// What an audit record is about: the kind of target and its id, named
/// together so that neither can be passed in the other's place.
#[derive(Debug, Clone, Copy)]
pub enum AuditTarget<'a> {
    /// An activity, by id.
    Activity(ActivityId),
    /// A member city, by slug.
    City(&'a str),
    /// A token, by its record id.
    Token(&'a str),
    /// A signing key, by `kid`.
    SigningKey(&'a str),
    /// A city's connected calendar.
    Source(cityhub_domain::SourceId),
}

impl AuditTarget<'_> {
    /// The stored `target_type` and `target_id`.
    fn parts(self) -> (&'static str, String) {
        match self {
            AuditTarget::Activity(id) => ("activity", id.to_string()),
            AuditTarget::City(slug) => ("city", slug.to_owned()),
            AuditTarget::Token(id) => ("token", id.to_owned()),
            AuditTarget::SigningKey(kid) => ("signingKey", kid.to_owned()),
            AuditTarget::Source(id) => ("source", id.to_string()),
        }
    }
}

/// Repository of audit records.
pub struct AuditRepo;

impl AuditRepo {
    /// Appends a record (inside the change's transaction).
    pub async fn record(
        db: &impl ConnectionTrait,
        entry: &AuditRecord,
    ) -> Result<(), StorageError> {
        Self::record_many(db, std::slice::from_ref(entry)).await
    }

    /// Appends several records in one statement (a batch of imports).
    pub async fn record_many(
        db: &impl ConnectionTrait,
        entries: &[AuditRecord],
    ) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        audit_log::Entity::insert_many(entries.iter().map(|entry| audit_log::ActiveModel {
            at: Set(entry.at.timestamp_micros()),
            actor: Set(entry.actor.clone()),
            action: Set(entry.action.clone()),
            target_type: Set(entry.target_type.clone()),
            target_id: Set(entry.target_id.clone()),
            version_before: Set(entry.version_before),
            version_after: Set(entry.version_after),
            detail: Set(None),
            ..Default::default()
        }))
        .exec_without_returning(db)
        .await?;
        Ok(())
    }

    /// Builds a record stamped now, without versions (see
    /// [`AuditRecord::versions`]).
    pub fn entry(actor: &str, action: &str, target: AuditTarget<'_>) -> AuditRecord {
        let (target_type, target_id) = target.parts();
        AuditRecord {
            at: chrono::Utc::now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id,
            version_before: None,
            version_after: None,
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
