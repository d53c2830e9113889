//! Several replicas on one PostgreSQL store: what one replica learns from the others
//! (wake-ups, events, cancels, a lapsed lease), and taking over the jobs of a replica
//! that died. With the embedded store only [`Jobs::recover_orphans`] runs, once, at start.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;

use super::worker::StopReason;
use super::{JobError, JobState, Jobs};
use crate::error::ErrorCode;
use crate::store::{Notice, Orphan};

/// How often every dispatcher looks at its queue even without a wake-up (a notification
/// lost with a dropped connection is found by the resync anyway; this is the backstop).
const BACKSTOP: Duration = Duration::from_secs(10);

impl Jobs {
    /// End the jobs whose runner is gone (see [`crate::store::JobStore::orphans`]):
    /// `interrupted`, naming the replica, and an attached run's container stopped, as a
    /// graceful stop would have.
    pub(super) async fn recover_orphans(self: &Arc<Self>) -> Result<usize, crate::store::StoreError> {
        let orphans = self.store.orphans().await?;
        let n = orphans.len();
        for Orphan { job, replica } in orphans {
            let message = match (&replica, job.state) {
                (None, _) => "The service stopped while this job was running; it was not resumed.".to_string(),
                (Some(r), JobState::Queued) => format!(
                    "The build context was uploaded to replica `{r}`, which stopped renewing its lease (BERTH_LEASE_TTL) \
                     before the build ran; upload it again."
                ),
                (Some(r), _) => format!(
                    "Replica `{r}` stopped renewing its lease (BERTH_LEASE_TTL) while this job was running; it was not resumed."
                ),
            };
            if replica.is_some() {
                tracing::warn!(job_id = %job.id, from_replica = replica.as_deref().unwrap_or(""), "took over a dead replica's job");
                self.metrics.jobs_adopted.inc();
            }
            self.finish(&job, JobState::Interrupted, None, Some(JobError { code: ErrorCode::Interrupted, message })).await;
            // In the background: a stop may take its timeout.
            let me = self.clone();
            tokio::spawn(async move { me.stop_orphan(&job).await });
        }
        Ok(n)
    }

    /// Follow the other replicas: act on each notice, look for dead replicas' jobs every
    /// quarter of the lease, and wake every dispatcher now and then as a backstop.
    pub fn follow_replicas(self: &Arc<Self>, mut notices: UnboundedReceiver<Notice>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut backstop = tokio::time::interval(BACKSTOP);
            loop {
                tokio::select! {
                    n = notices.recv() => match n {
                        Some(n) => me.on_notice(n).await,
                        None => return,
                    },
                    _ = backstop.tick() => me.wake_all(),
                    _ = me.stopping.cancelled() => return,
                }
            }
        });
        let me = self.clone();
        let every = (self.lease_ttl / 4).max(Duration::from_millis(250));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = me.stopping.cancelled() => return,
                }
                if let Err(e) = me.recover_orphans().await {
                    tracing::warn!(error = %e, "looking for dead replicas' jobs failed");
                }
            }
        });
    }

    async fn on_notice(&self, notice: Notice) {
        match notice {
            Notice::Queue { host, kind } => {
                let host = if host.is_empty() { self.default_host().to_string() } else { host };
                if let Some(wake) = self.wake.get(&(host, kind)) {
                    wake.notify_one();
                }
            }
            Notice::Event { job_id, seq, event, lag } => {
                self.metrics.notification_lag.observe(lag.as_secs_f64());
                // A state change goes to `/v1/events`; anything else only matters to a
                // follower here.
                if event == super::EventName::State || event == super::EventName::End || self.hub.is_followed(&job_id) {
                    self.publish_stored(&job_id, seq).await;
                }
            }
            Notice::Cancel { job_id } => {
                if self.running.lock().unwrap().contains_key(&job_id) {
                    self.signal(&job_id);
                }
            }
            Notice::Resync => self.wake_all(),
            Notice::LeaseLost => {
                self.metrics.lease_losses.inc();
                // What ran under the lapsed lease is another replica's to end: stop it
                // here (its writes are fenced off already).
                let running = self.running.lock().unwrap();
                for r in running.values() {
                    r.stop(StopReason::Shutdown);
                }
                drop(running);
                self.wake_all();
            }
        }
    }

    /// Read event `seq` of a job another replica stored, and wake the followers here.
    async fn publish_stored(&self, job_id: &str, seq: u64) {
        let (job, events) = match (self.store.get(job_id).await, self.store.events_after(job_id, seq.saturating_sub(1), 1).await) {
            (Ok(Some(job)), Ok(events)) => (job, events),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(job_id, error = %e, "reading another replica's job event failed");
                return;
            }
            (Ok(None), _) => return,
        };
        for ev in events.into_iter().filter(|e| e.seq == seq) {
            self.hub.publish_remote(job.kind, &job.owner, &job.team, self.host_of(&job), ev);
        }
    }

    fn wake_all(&self) {
        for wake in self.wake.values() {
            wake.notify_one();
        }
    }
}
