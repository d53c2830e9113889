//! Following jobs: a job's events (replay from the store, then live, then `end`), and
//! the feed of state changes behind `/v1/events`. The hub only wakes followers; what
//! they send always comes from the store or, in order, from the hub.

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{EventData, Job, JobEvent, JobKind, JobState, Jobs};
use crate::domain::identity::Principal;

/// How often a follower looks at the stored record while the live feed is quiet.
const RECHECK: Duration = Duration::from_secs(5);
/// Events read from the store at once: with log lines of up to 64 KiB, at most 4 MiB
/// held per follower.
const PAGE: usize = 64;

/// An item of the `/v1/events` feed.
#[derive(Debug, Clone)]
pub enum StateFeedItem {
    /// A job the caller may see changed state; `seq` is that job's event sequence number.
    Changed { job_id: String, kind: JobKind, owner: String, host: String, state: JobState, seq: u64 },
    /// The reader fell behind and missed this many changes.
    Lagged(u64),
}

impl Jobs {
    /// A job's events after `after`: the stored ones, then live ones as they are
    /// stored, ending with `end`. A job already over replays its record and ends.
    pub fn follow(self: &Arc<Self>, job: &Job, after: u64) -> impl Stream<Item = JobEvent> + Send + use<> {
        let (tx, rx) = mpsc::channel(64);
        let (me, id) = (self.clone(), job.id.clone());
        tokio::spawn(async move {
            me.follow_into(&id, after, &tx).await;
            me.hub.release(&id);
        });
        ReceiverStream::new(rx)
    }

    /// Replay from the store, then follow live; back to the store whenever the live feed
    /// skips (a lagging follower): the worker never waits for a follower.
    async fn follow_into(&self, id: &str, mut last: u64, tx: &mpsc::Sender<JobEvent>) {
        let mut live = self.hub.subscribe(id);
        loop {
            let page = match self.store.events_after(id, last, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(job_id = id, error = %e, "replaying job events failed");
                    return;
                }
            };
            for ev in page.iter().cloned() {
                let end = ev.is_end();
                last = ev.seq;
                if tx.send(ev).await.is_err() || end {
                    return;
                }
            }
            if page.len() == PAGE {
                continue;
            }
            // Nothing stored after `last`: a job that is over (its `end` is stored with
            // its final state) has been read to the end already.
            match self.store.get(id).await {
                Ok(Some(job)) if job.state.is_terminal() => {
                    self.end_without_stored_end(&job, last, tx).await;
                    return;
                }
                Ok(Some(_)) => {}
                _ => return,
            }
            match self.follow_live(id, &mut last, &mut live, tx).await {
                Live::Done => return,
                Live::Reread => {}
                Live::Resubscribe => live = self.hub.subscribe(id),
            }
        }
    }

    /// Rows from before the end was one transaction may lack their `end`: say it.
    async fn end_without_stored_end(&self, job: &Job, last: u64, tx: &mpsc::Sender<JobEvent>) {
        let last_stored = self.store.last_event(&job.id).await.ok().flatten();
        if last_stored.is_some_and(|ev| ev.is_end()) {
            return;
        }
        let data = EventData::End(job.state);
        let end = JobEvent { job_id: job.id.clone(), seq: last + 1, event: data.name(), data: data.to_json() };
        let _ = tx.send(end).await;
    }

    async fn follow_live(
        &self,
        id: &str,
        last: &mut u64,
        live: &mut tokio::sync::broadcast::Receiver<Arc<JobEvent>>,
        tx: &mpsc::Sender<JobEvent>,
    ) -> Live {
        let mut check = tokio::time::interval(RECHECK);
        check.tick().await;
        loop {
            let received = tokio::select! {
                r = live.recv() => r,
                _ = tx.closed() => return Live::Done,
                _ = check.tick() => {
                    // The live feed is only a wake-up: now and then look at the record,
                    // so a job deleted, or ended while this follower lagged, still ends.
                    match self.store.get(id).await {
                        Ok(Some(job)) if job.state.is_terminal() => return Live::Reread,
                        Ok(Some(_)) => continue,
                        _ => return Live::Done,
                    }
                }
            };
            match received {
                Ok(ev) if ev.seq <= *last => {}
                Ok(ev) if ev.seq == *last + 1 => {
                    *last = ev.seq;
                    let end = ev.is_end();
                    if tx.send((*ev).clone()).await.is_err() || end {
                        return Live::Done;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => return Live::Reread,
                // The feed closed (the job ended, or was deleted): the store says which.
                Err(RecvError::Closed) => return Live::Resubscribe,
            }
        }
    }

    /// State changes of every job `who` may see ([`super::sees`]: their team's, or without a
    /// team claim their own; admins all), live.
    pub fn state_feed(&self, who: Principal) -> impl Stream<Item = StateFeedItem> + Send + use<> {
        let mut rx = self.hub.subscribe_states();
        let (tx, out) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    r = rx.recv() => r,
                    _ = tx.closed() => return,
                };
                let item = match change {
                    Ok(c) if super::sees(&who, &c.owner, &c.team) => {
                        let state = c.event.data.get("state").and_then(|s| serde_json::from_value(s.clone()).ok());
                        let Some(state) = state else { continue };
                        StateFeedItem::Changed { job_id: c.job_id, kind: c.kind, owner: c.owner, host: c.host, state, seq: c.event.seq }
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => StateFeedItem::Lagged(missed),
                    Err(RecvError::Closed) => return,
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        ReceiverStream::new(out)
    }
}

/// How a stretch of live following ended.
enum Live {
    Done,
    Reread,
    Resubscribe,
}
