//! Live fan-out of job events. Persisting comes first (the store is the record); the hub
//! only wakes subscribers. Broadcast channels never block the sender: a subscriber that
//! falls behind gets `Lagged` and resyncs from the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::model::{JobEvent, JobKind};

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
    published: Mutex<HashMap<String, u64>>,
}

const PER_JOB_BUFFER: usize = 256;

impl Default for EventHub {
    fn default() -> Self {
        Self { jobs: Mutex::new(HashMap::new()), states: broadcast::channel(1024).0, published: Mutex::new(HashMap::new()) }
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
            let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
            let last = published.entry(event.job_id.clone()).or_insert(0);
            if event.seq <= *last {
                return;
            }
            *last = event.seq;
            if event.event == "end" {
                published.remove(&event.job_id);
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
