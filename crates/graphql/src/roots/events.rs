//! Events: the `activityEvents` subscription, the GraphQL face of the
//! event bus (crate `cityhub-events`). A stream with `after` first replays
//! the log page by page, then switches to the broadcast, dropping what it
//! already delivered: no gap, no duplicate. The WebSocket transport (`ws`)
//! runs one such stream per group of identical subscriptions and shares its
//! serialized results; [`StartAt`] and [`StreamTap`] (module `live`) are
//! how it tells a stream where to start and learns which event each result
//! belongs to.

use std::sync::Arc;

use async_graphql::{Context, Object, Result, Subscription};
use cityhub_domain::{Action, ActivityStatus};
use cityhub_events::{EventFilter, LiveEvent, decode_cursor, encode_cursor, load_live, visible};
use cityhub_storage::repo::events::EventLog;
use futures::Stream;
use tokio::sync::broadcast;

use crate::enums::ActivityEventType;
use crate::error::{Code, ResultExt, bad_input, coded, denied};
use crate::inputs::ActivityFilterInput;
use crate::live::{FELL_BEHIND, StartAt, StreamTap};
use crate::objects::activity::ActivityObject;
use crate::objects::city::CityObject;
use crate::scalars::DateTime;
use crate::state::{actor, hub};

/// Something that happened to an activity.
pub struct ActivityEvent(Arc<LiveEvent>);

/// Something that happened to an activity, from the durable event log.
#[Object]
impl ActivityEvent {
    /// Opaque position in the event log; pass it as `after` to resume right after this event.
    async fn cursor(&self) -> String {
        encode_cursor(self.0.record.seq)
    }

    /// What happened.
    #[graphql(name = "type")]
    async fn event_type(&self) -> ActivityEventType {
        self.0.record.event_type.into()
    }

    /// When it happened.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.0.record.occurred_at)
    }

    /// The activity, as it is now.
    async fn activity(&self) -> Result<ActivityObject> {
        match &self.0.activity {
            Some(a) => Ok(ActivityObject::live(a.clone(), self.0.related.clone())),
            None => Err(coded(Code::NotFound, "the activity of this event is gone")),
        }
    }

    /// The city that acted; null for the secretariat.
    async fn actor(&self) -> Option<CityObject> {
        self.0
            .record
            .actor_city_id
            .and_then(|id| self.0.related.cities.get(&id).cloned())
            .map(CityObject)
    }
}

/// Live activity events.
#[derive(Default)]
pub struct EventSubscription;

/// Live activity events.
#[Subscription]
impl EventSubscription {
    /// Activity events matching the filter, as they are committed. Durable: with `after` (an event's `cursor`), every matching event after it is replayed in order, then the stream goes on live, with no gap and no duplicate; an `after` older than the log keeps is `CURSOR_EXPIRED`. Without `after`: new events only. `filter.statuses` applies to the activity's status after the event and defaults to every status; drafts' events reach only their own city and the secretariat. Events of an activity deleted since are tombstones: `activity` keeps its id, slug, kind and status, and nothing of its content.
    async fn activity_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Which events: those whose activity, after the event, matches. Unlike `activities`, `statuses` defaults to every status (a cancellation is an event worth seeing)."
        )]
        filter: Option<ActivityFilterInput>,
        #[graphql(
            desc = "An event's `cursor`: replay every matching event after it, then go on live. Absent: new events only. Older than the log keeps (`events.retention_secs`): `CURSOR_EXPIRED`."
        )]
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<ActivityEvent>> + use<>> {
        let h = hub(ctx);
        let actor = actor(ctx).clone();
        h.service
            .policy()
            .authorize(&actor, Action::ReadNetwork, None)
            .map_err(denied)?;
        let bus = h.events.clone();
        let input = filter.unwrap_or_default();
        let statuses_given = input.statuses.is_some();
        let mut filter = input.into_filter("filter", h.service.limits())?;
        if !statuses_given {
            // Events of every status, unlike listings (published only).
            filter.statuses = Some(ActivityStatus::ALL.to_vec());
        }
        let filter = EventFilter::new(filter);
        let tap = ctx.data_opt::<Arc<StreamTap>>().cloned();
        let start = match &after {
            Some(text) => {
                let seq = decode_cursor(text)
                    .ok_or_else(|| bad_input("after", "is not an event cursor of this hub"))?;
                let db = h.service.db().conn();
                if seq < EventLog::pruned_through(db).await.api()? {
                    return Err(coded(
                        Code::CursorExpired,
                        "this cursor is older than the event log keeps; reload and subscribe without `after`",
                    ));
                }
                if seq > EventLog::head(db).await.api()? {
                    return Err(bad_input("after", "is ahead of the event log"));
                }
                Some(seq)
            }
            None => None,
        };
        let mut receiver = bus.subscribe();
        let db = h.service.db().clone();
        // Without `after`, only events committed from now on: the pump may
        // still be broadcasting older ones. The head is read after
        // subscribing (or given by the transport, read before the client
        // was told it is subscribed), so nothing committed later is missed.
        let floor = match (start, ctx.data_opt::<StartAt>()) {
            (Some(seq), _) => seq,
            (None, Some(StartAt(seq))) => *seq,
            (None, None) => EventLog::head(db.conn()).await.api()?,
        };
        StreamTap::consume(&tap, floor);
        let page = bus.settings().replay_page.clamp(1, 10_000);
        Ok(async_stream::stream! {
            let mut last = floor;
            if let Some(from) = start {
                // Page by page: never more than one page of the log in memory.
                let mut cursor = from;
                loop {
                    let batch = match EventLog::after(db.conn(), cursor, page).await {
                        Ok(b) => b,
                        Err(e) => {
                            StreamTap::yielding(&tap, i64::MAX);
                            yield Err(crate::error::storage(e));
                            return;
                        }
                    };
                    if batch.is_empty() { break; }
                    cursor = batch.last().map_or(cursor, |r| r.seq);
                    let events = match load_live(&db, batch).await {
                        Ok(e) => e,
                        Err(e) => {
                            StreamTap::yielding(&tap, i64::MAX);
                            yield Err(crate::error::storage(e));
                            return;
                        }
                    };
                    for event in events {
                        last = event.record.seq;
                        StreamTap::consume(&tap, last);
                        if visible(&actor, &event.record) && filter.matches(&event) {
                            StreamTap::yielding(&tap, last);
                            yield Ok(ActivityEvent(event));
                        }
                    }
                }
            }
            let mut lagged = false;
            loop {
                match receiver.recv().await {
                    Ok(event) => {
                        // Overwritten events this subscriber already had
                        // (replayed, or older than its start) are no loss:
                        // a burst of them must not close it.
                        if std::mem::take(&mut lagged) && event.record.seq > last + 1 {
                            match EventLog::after(db.conn(), last, 1).await {
                                Ok(next) if next.first().is_none_or(|r| r.seq >= event.record.seq) => {}
                                Ok(_) => {
                                    StreamTap::yielding(&tap, i64::MAX);
                                    yield Err(coded(Code::RateLimited, FELL_BEHIND));
                                    return;
                                }
                                Err(e) => {
                                    StreamTap::yielding(&tap, i64::MAX);
                                    yield Err(crate::error::storage(e));
                                    return;
                                }
                            }
                        }
                        if event.record.seq <= last { continue; }
                        last = event.record.seq;
                        StreamTap::consume(&tap, last);
                        if visible(&actor, &event.record) && filter.matches(&event) {
                            StreamTap::yielding(&tap, last);
                            yield Ok(ActivityEvent(event));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => lagged = true,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }
}
