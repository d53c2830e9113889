//! Live fan-out of job events. Persisting comes first (the store is the record); the hub
//! only wakes subscribers. Broadcast channels never block the sender: a subscriber that
//! falls behind gets `Lagged` and resyncs from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::job::{JobEvent, JobKind};

/// A state change, for `/v1/events`.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub job_id: String,
    pub kind: JobKind,
    pub owner: String,
    pub event: Arc<JobEvent>,
}

pub struct EventHub {
    jobs: Mutex<HashMap<String, broadcast::Sender<Arc<JobEvent>>>>,
    states: broadcast::Sender<StateChange>,
    /// The last sequence number published per live job: an event is published once, and
    /// never after a later one (the submitter and the worker may race to publish `queued`).
    published: Mutex<Published>,
}

/// Per live job, the last sequence published; and the jobs that ended lately, so a late
/// publisher (a submitter slower than a job that failed at once) replays nothing.
#[derive(Default)]
struct Published {
    last: HashMap<String, u64>,
    ended: std::collections::HashSet<String>,
    ended_order: std::collections::VecDeque<String>,
}

/// How many ended jobs are remembered against late publishes.
const ENDED_REMEMBERED: usize = 10_000;

const PER_JOB_BUFFER: usize = 256;

impl Default for EventHub {
    fn default() -> Self {
        Self { jobs: Mutex::new(HashMap::new()), states: broadcast::channel(1024).0, published: Mutex::default() }
    }
}

impl EventHub {
    pub fn subscribe(&self, job_id: &str) -> broadcast::Receiver<Arc<JobEvent>> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        jobs.entry(job_id.to_string()).or_insert_with(|| broadcast::channel(PER_JOB_BUFFER).0).subscribe()
    }

    pub fn subscribe_states(&self) -> broadcast::Receiver<StateChange> {
        self.states.subscribe()
    }

    pub fn publish(&self, kind: JobKind, owner: &str, event: JobEvent) {
        {
            let mut p = self.published.lock().unwrap_or_else(|p| p.into_inner());
            if p.ended.contains(&event.job_id) {
                return;
            }
            let last = p.last.entry(event.job_id.clone()).or_insert(0);
            if event.seq <= *last {
                return;
            }
            *last = event.seq;
            if event.event == "end" {
                p.last.remove(&event.job_id);
                p.ended.insert(event.job_id.clone());
                p.ended_order.push_back(event.job_id.clone());
                if p.ended_order.len() > ENDED_REMEMBERED {
                    if let Some(old) = p.ended_order.pop_front() {
                        p.ended.remove(&old);
                    }
                }
            }
        }
        let event = Arc::new(event);
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = jobs.get(&event.job_id) {
            let _ = tx.send(event.clone());
        }
        if event.event == "end" {
            jobs.remove(&event.job_id);
        }
        drop(jobs);
        if event.event == "state" {
            let _ = self.states.send(StateChange {
                job_id: event.job_id.clone(),
                kind,
                owner: owner.to_string(),
                event,
            });
        }
    }

    /// Drop a job's channel once nobody listens (a subscriber leaving).
    pub fn release(&self, job_id: &str) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.get(job_id).is_some_and(|tx| tx.receiver_count() == 0) {
            jobs.remove(job_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, event: &str) -> JobEvent {
        JobEvent { job_id: "j1".into(), seq, event: event.into(), data: serde_json::json!({"state": "queued"}) }
    }

    #[test]
    fn each_event_once_in_order_and_nothing_after_end() {
        let hub = EventHub::default();
        let mut states = hub.subscribe_states();
        let mut job = hub.subscribe("j1");
        hub.publish(JobKind::Pull, "o", ev(1, "state"));
        hub.publish(JobKind::Pull, "o", ev(2, "state"));
        hub.publish(JobKind::Pull, "o", ev(1, "state")); // a slow submitter, late
        hub.publish(JobKind::Pull, "o", ev(3, "end"));
        hub.publish(JobKind::Pull, "o", ev(1, "state")); // later still: the job has ended
        let seqs: Vec<u64> = std::iter::from_fn(|| job.try_recv().ok()).map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        let states: Vec<u64> = std::iter::from_fn(|| states.try_recv().ok()).map(|c| c.event.seq).collect();
        assert_eq!(states, [1, 2]);
    }
}
