//! Execute once, send many: subscriptions with the same document,
//! variables and read scope share one running stream ([`Group`]) whose
//! results are serialized once; each member gets the shared payload.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::Response;
use cityhub_domain::ReadScope;
use futures::StreamExt;

use crate::live::StreamTap;

use super::outbox::{OpTag, Outbox};
use super::protocol::stamped;

/// Frames recently sent by a group, kept for subscribers that join while
/// it runs (they read the log head before joining).
const RING: usize = 64;

/// What makes two subscriptions the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct GroupKey {
    pub(super) query: String,
    pub(super) operation: Option<String>,
    pub(super) variables: String,
    /// Who reads: subscribers of one scope see the same drafts.
    pub(super) scope: ReadScope,
}

/// A subscriber of a group.
pub(super) struct Member {
    pub(super) key: u64,
    pub(super) out: Arc<Outbox>,
    pub(super) tag: Arc<OpTag>,
    /// Results of events up to this sequence are not for it.
    pub(super) floor: i64,
}

#[derive(Default)]
pub(super) struct GroupInner {
    pub(super) members: Vec<Member>,
    /// Recent results with their event's sequence.
    pub(super) ring: VecDeque<(i64, Arc<str>)>,
    /// Every result of an event after this sequence is in `ring` or not
    /// yet distributed.
    pub(super) covers_from: i64,
    pub(super) closed: bool,
}

/// Identical subscriptions sharing one stream.
pub(super) struct Group {
    pub(super) key: GroupKey,
    pub(super) tap: Arc<StreamTap>,
    pub(super) inner: Mutex<GroupInner>,
    pub(super) task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// The groups of one instance (held by its [`GraphqlService`](crate::GraphqlService)).
#[derive(Default)]
pub struct Groups {
    pub(super) map: Mutex<HashMap<GroupKey, Arc<Group>>>,
    pub(super) next_member: AtomicU64,
}

pub(super) use cityhub_domain::sync::lock;

impl Group {
    /// Hands one result to every member past its floor.
    pub(super) fn distribute(&self, seq: i64, payload: Arc<str>, has_errors: bool) {
        let mut inner = lock(&self.inner);
        let mut behind = Vec::new();
        for (i, m) in inner.members.iter().enumerate() {
            if seq <= m.floor {
                continue;
            }
            // Errors name each member's own request (rare: results are
            // shared as they are otherwise).
            let delivered = match (has_errors, m.out.request_id.as_deref()) {
                (true, Some(id)) => m.out.next(&m.tag, &stamped(&payload, id)),
                _ => m.out.next(&m.tag, &payload),
            };
            if !delivered {
                behind.push(i);
            }
        }
        for i in behind.into_iter().rev() {
            let m = inner.members.swap_remove(i);
            m.out.lagged(&m.tag);
        }
        if seq != i64::MAX {
            if inner.ring.len() == RING
                && let Some((old, _)) = inner.ring.pop_front()
            {
                inner.covers_from = old;
            }
            inner.ring.push_back((seq, payload));
        }
    }
}

impl Groups {
    /// Adds a subscriber whose client saw the log at `head`; `false` when
    /// the group is too far ahead (the caller runs a stream of its own).
    pub(super) fn join(&self, group: &Group, member: Member, head: i64) -> Result<(), Member> {
        let mut inner = lock(&group.inner);
        if inner.closed || head < inner.covers_from {
            return Err(member);
        }
        for (seq, payload) in &inner.ring {
            if *seq > head && !member.out.next(&member.tag, payload) {
                member.out.lagged(&member.tag);
                return Ok(());
            }
        }
        inner.members.push(Member {
            floor: head,
            ..member
        });
        Ok(())
    }

    /// Removes a subscriber; the last one stops the group.
    pub(super) fn leave(&self, key: &GroupKey, member: u64) {
        let mut map = lock(&self.map);
        let Some(group) = map.get(key).cloned() else {
            return;
        };
        let mut inner = lock(&group.inner);
        inner.members.retain(|m| m.key != member);
        if inner.members.is_empty() && !inner.closed {
            inner.closed = true;
            map.remove(key);
            if let Some(task) = lock(&group.task).take() {
                task.abort();
            }
        }
    }

    /// Ends a group whose stream ended: every member gets `last` (if any)
    /// and completes.
    pub(super) fn end(&self, group: &Arc<Group>) {
        let mut map = lock(&self.map);
        if map.get(&group.key).is_some_and(|g| Arc::ptr_eq(g, group)) {
            map.remove(&group.key);
        }
        let mut inner = lock(&group.inner);
        inner.closed = true;
        for m in inner.members.drain(..) {
            m.out.finish(&m.tag, None);
        }
    }
}

/// Runs a group's stream, sharing each serialized result.
pub(super) async fn run_group(
    groups: Arc<Groups>,
    group: Arc<Group>,
    mut stream: futures::stream::BoxStream<'static, Response>,
) {
    while let Some(response) = stream.next().await {
        let seq = group.tap.yielded.load(Ordering::SeqCst);
        let payload: Arc<str> = match serde_json::to_string(&response) {
            Ok(s) => s.into(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a subscription result");
                continue;
            }
        };
        let fatal = seq == i64::MAX;
        group.distribute(seq, payload, !response.errors.is_empty());
        if fatal {
            break;
        }
    }
    groups.end(&group);
}
