//! The cityhub domain: validated types, validation rules and the permission
//! policy. This crate does no I/O and knows nothing of databases, HTTP or
//! GraphQL; every other crate builds on the types defined here.

pub mod activity;
pub mod chars;
pub mod city;
pub mod enums;
pub mod error;
pub mod filter;
pub mod invitation;
pub mod jsonld;
pub mod limits;
pub mod markdown;
pub mod policy;
pub mod records;
pub mod slug;
pub mod source;
pub mod sync;
pub mod text;
pub mod timing;
pub mod visibility;

pub use activity::{ActivityInput, ActivityPatch, DocumentInput, Participation, PublishAs};
pub use city::{CityInput, CityPatch};
pub use enums::{
    ActivityEventType, ActivityFormat, ActivityKind, ActivityOrder, ActivityStatus, CreativeField,
    DatePrecision, DocumentKind, InvitationRole, InvitationState, Role, SourceKind, SourceStatus,
};
pub use error::{DomainError, FieldError};
pub use filter::{ActivityFilter, PreparedFilter, Surroundings};
pub use invitation::{Answer, AnswerRefused, Cities, Invitation, Named, Naming, standing};
pub use limits::{Limits, page};
pub use policy::{Action, ActivityFacts, Actor, Denied, Policy};
pub use records::{Activity, City, Document};
pub use slug::Slug;
pub use source::{SkippedItem, Source, SourceDefaults, may_manage_sources};
pub use timing::Timing;
pub use visibility::ReadScope;

pub mod ids;

pub use ids::{ActivityId, CityId, SourceId};
