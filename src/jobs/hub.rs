//! Live fan-out of job events. The store is the record; the hub only wakes followers.
//!
//! Each stored event is published once, by the code that stored it (the submitter for
//! `queued`, the worker for everything after). Two publishers can still race for one
//! job (the worker may store `running` before the submitter has published `queued`), so
//! a job's feed releases events in sequence order, holding an early one back until its
//! predecessor arrives. Broadcast channels never block the publisher: a follower that
//! falls behind gets `Lagged` and rereads the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::job::{EventName, JobEvent, JobKind};

/// A state change, for `/v1/events`.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub job_id: String,
    pub kind: JobKind,
    pub owner: String,
    /// The job's team: the state feed shows team members their team's jobs.
    pub team: String,
    /// The job's host.
    pub host: String,
    pub event: Arc<JobEvent>,
}

/// One job's live feed.
struct Feed {
    tx: broadcast::Sender<Arc<JobEvent>>,
    /// The next sequence number to release; `None` until the first publish tells it.
    next: Option<u64>,
    /// Events that came before their predecessor, by sequence number.
    held: BTreeMap<u64, Arc<JobEvent>>,
}

impl Feed {
    fn new(next: Option<u64>) -> Self {
        Self { tx: broadcast::channel(PER_JOB_BUFFER).0, next, held: BTreeMap::new() }
    }
}

pub struct EventHub {
    jobs: Mutex<HashMap<String, Feed>>,
    states: broadcast::Sender<StateChange>,
}

const PER_JOB_BUFFER: usize = 256;
/// Held-back events per job before the gap is given up on (a publisher that died
/// between storing and publishing): followers reread the store at a gap anyway.
const MAX_HELD: usize = 256;

impl Default for EventHub {
    fn default() -> Self {
        Self { jobs: Mutex::new(HashMap::new()), states: broadcast::channel(1024).0 }
    }
}

impl EventHub {
    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<String, Feed>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before a new job's first event is stored: its feed then releases from seq 1.
    pub fn open(&self, job_id: &str) {
        self.feeds().insert(job_id.to_string(), Feed::new(Some(1)));
    }

    /// The job `open` was called for was not made after all.
    pub fn discard(&self, job_id: &str) {
        self.feeds().remove(job_id);
    }

    pub fn subscribe(&self, job_id: &str) -> broadcast::Receiver<Arc<JobEvent>> {
        self.feeds().entry(job_id.to_string()).or_insert_with(|| Feed::new(None)).tx.subscribe()
    }

    pub fn subscribe_states(&self) -> broadcast::Receiver<StateChange> {
        self.states.subscribe()
    }

    /// Wake the followers of a stored event, in sequence order.
    pub fn publish(&self, kind: JobKind, owner: &str, team: &str, host: &str, event: JobEvent) {
        let mut feeds = self.feeds();
        let feed = feeds.entry(event.job_id.clone()).or_insert_with(|| Feed::new(None));
        let next = *feed.next.get_or_insert(event.seq);
        if event.seq < next {
            return;
        }
        feed.held.insert(event.seq, Arc::new(event));
        if feed.held.len() > MAX_HELD {
            feed.next = feed.held.keys().next().copied();
        }
        let mut ended = None;
        while let Some(ev) = feed.next.and_then(|n| feed.held.remove(&n)) {
            feed.next = Some(ev.seq + 1);
            let _ = feed.tx.send(ev.clone());
            if ev.event == EventName::State {
                self.send_state(kind, owner, team, host, ev.clone());
            }
            if ev.is_end() {
                ended = Some(ev.job_id.clone());
                break;
            }
        }
        if let Some(id) = ended {
            feeds.remove(&id);
        }
    }

    /// Does anyone on this replica follow job `job_id`?
    pub fn is_followed(&self, job_id: &str) -> bool {
        self.feeds().contains_key(job_id)
    }

    /// Wake the followers of an event another replica stored: through the job's feed when
    /// someone here follows it, else (a state change) to the state feed alone, without
    /// keeping a feed for a job nobody here follows.
    pub fn publish_remote(&self, kind: JobKind, owner: &str, team: &str, host: &str, event: JobEvent) {
        if self.is_followed(&event.job_id) {
            return self.publish(kind, owner, team, host, event);
        }
        if event.event == EventName::State {
            self.send_state(kind, owner, team, host, Arc::new(event));
        }
    }

    /// A state change to the `/v1/events` feed.
    fn send_state(&self, kind: JobKind, owner: &str, team: &str, host: &str, event: Arc<JobEvent>) {
        let change = StateChange {
            job_id: event.job_id.clone(),
            kind,
            owner: owner.to_string(),
            team: team.to_string(),
            host: host.to_string(),
            event,
        };
        let _ = self.states.send(change);
    }

    /// Drop a job's feed once nobody listens (a follower leaving) and nothing is held.
    pub fn release(&self, job_id: &str) {
        let mut feeds = self.feeds();
        if feeds.get(job_id).is_some_and(|f| f.tx.receiver_count() == 0 && f.held.is_empty() && f.next.is_none()) {
            feeds.remove(job_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, event: EventName) -> JobEvent {
        JobEvent { job_id: "j1".into(), seq, event, data: serde_json::json!({"state": "queued"}) }
    }

    #[test]
    fn events_are_released_in_order_and_the_feed_closes_at_end() {
        let hub = EventHub::default();
        hub.open("j1");
        let mut states = hub.subscribe_states();
        let mut job = hub.subscribe("j1");
        // The worker stored and published `running` before the submitter published `queued`.
        hub.publish(JobKind::Pull, "o", "default", "local", ev(2, EventName::State));
        assert!(job.try_recv().is_err(), "held until seq 1 arrives");
        hub.publish(JobKind::Pull, "o", "default", "local", ev(1, EventName::State));
        hub.publish(JobKind::Pull, "o", "default", "local", ev(3, EventName::End));
        let seqs: Vec<u64> = std::iter::from_fn(|| job.try_recv().ok()).map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let states: Vec<u64> = std::iter::from_fn(|| states.try_recv().ok()).map(|c| c.event.seq).collect();
        assert_eq!(states, [1, 2]);
        assert!(hub.feeds().is_empty(), "an ended job's feed is gone");
    }

    #[test]
    fn another_replicas_events_reach_followers_and_the_state_feed_without_keeping_feeds() {
        let hub = EventHub::default();
        let mut states = hub.subscribe_states();
        hub.publish_remote(JobKind::Pull, "o", "default", "local", ev(1, EventName::State));
        assert_eq!(states.try_recv().unwrap().event.seq, 1, "a state change reaches /v1/events");
        assert!(!hub.is_followed("j1"), "no feed kept for a job nobody here follows");
        let mut job = hub.subscribe("j1");
        hub.publish_remote(JobKind::Pull, "o", "default", "local", ev(2, EventName::Log));
        assert_eq!(job.try_recv().unwrap().seq, 2, "a follower here gets it");
    }

    #[test]
    fn a_job_not_opened_starts_at_its_first_publish() {
        let hub = EventHub::default();
        let mut job = hub.subscribe("j1");
        hub.publish(JobKind::Run, "o", "default", "local", ev(7, EventName::State));
        assert_eq!(job.try_recv().unwrap().seq, 7);
    }
}
