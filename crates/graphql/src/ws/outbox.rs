//! A socket's queue of frames, shared with the groups and tasks that
//! produce them: bounded for results (a client too far behind loses the
//! subscription), unbounded for an operation's last frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::error::Code;
use crate::live::FELL_BEHIND;

use super::protocol::error_payload;

/// One operation of a socket, as the frames name it.
#[derive(Debug)]
pub(super) struct OpTag {
    /// The client's id.
    pub(super) id: String,
    /// The id as a JSON string (quoted, escaped), for envelopes.
    pub(super) id_json: String,
    /// Distinguishes a reused id from the operation it replaced.
    pub(super) serial: u64,
}

/// A frame queued for a socket.
pub(super) enum Out {
    /// One result of an operation (`next` / legacy `data`), serialized.
    Next(Arc<OpTag>, Arc<str>),
    /// The operation is over: `complete`, and it leaves the socket.
    Done(Arc<OpTag>),
}

/// The queue of frames of one socket, shared with the groups and tasks
/// that produce them.
pub(super) struct Outbox {
    pub(super) tx: mpsc::UnboundedSender<Out>,
    pub(super) queued: AtomicUsize,
    pub(super) limit: usize,
    /// Signalled when a full queue gets room again.
    pub(super) drained: tokio::sync::Notify,
    /// The id of the request that opened the socket, in every error sent.
    pub(super) request_id: Option<Arc<str>>,
}

impl Outbox {
    /// Queues a result; false when the client is too far behind (then the
    /// caller ends the operation with [`Outbox::lagged`]).
    pub(super) fn next(&self, tag: &Arc<OpTag>, payload: &Arc<str>) -> bool {
        if self.queued.load(Ordering::Relaxed) >= self.limit {
            return false;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Out::Next(tag.clone(), payload.clone()))
            .is_ok()
    }

    /// Queues a result, waiting while the queue is full (a stream of its
    /// own, e.g. a replay, slows down instead of failing); false once the
    /// socket is gone.
    pub(super) async fn next_wait(&self, tag: &Arc<OpTag>, payload: &Arc<str>) -> bool {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.next(tag, payload) {
                return true;
            }
            if self.tx.is_closed() {
                return false;
            }
            notified.await;
        }
    }

    /// Ends an operation after a last result (queued whatever the limit).
    pub(super) fn finish(&self, tag: &Arc<OpTag>, last: Option<Arc<str>>) {
        if let Some(payload) = last {
            self.queued.fetch_add(1, Ordering::Relaxed);
            let _ = self.tx.send(Out::Next(tag.clone(), payload));
        }
        let _ = self.tx.send(Out::Done(tag.clone()));
    }

    /// Ends an operation whose client fell behind.
    pub(super) fn lagged(&self, tag: &Arc<OpTag>) {
        self.finish(
            tag,
            Some(error_payload(
                Code::RateLimited,
                FELL_BEHIND,
                self.request_id.as_deref(),
            )),
        );
    }
}
