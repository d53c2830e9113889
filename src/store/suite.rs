//! The store test suite: what every [`JobStore`] and [`AuditLog`] must do, run against
//! the SQLite store and the PostgreSQL store alike.

use std::sync::Arc;

use super::{AuditFilter, AuditLog, AuditRecord, Inserted, JobEnd, JobStore, new_id};
use crate::domain::identity::{DEFAULT_TEAM, Role};
use crate::domain::job::{EventName, JobFilter, JobKind, JobState, NewJob};

pub(crate) fn new_job(owner: &str, key: Option<&str>) -> NewJob {
    NewJob {
        kind: JobKind::Pull,
        owner: owner.into(),
        request: serde_json::json!({"image": "x"}),
        authority: Role::Operator,
        seal: String::new(),
        team: DEFAULT_TEAM.into(),
        host: "a".into(),
        idempotency_key: key.map(String::from),
        spool: None,
    }
}

/// Every test of the suite, one after the other, on one (empty) store.
pub(crate) async fn run(store: Arc<dyn JobStore>, audit: Arc<dyn AuditLog>) {
    queue_lifecycle_and_races(&*store).await;
    the_end_of_a_job_is_one_transaction(&*store).await;
    hosts_have_their_own_queues(&*store).await;
    concurrent_claims_take_each_job_once(store.clone()).await;
    concurrent_writers_of_one_job_get_distinct_sequence_numbers(store.clone()).await;
    the_queue_bound_and_keys_hold_under_concurrent_inserts(store.clone()).await;
    claims_hold_the_concurrency_limit(store.clone()).await;
    the_audit_log_records_filters_and_forgets(&*audit).await;
}

/// Finish every job the store holds, so the next test starts with an empty queue.
async fn drain(store: &dyn JobStore) {
    for kind in JobKind::ALL {
        for host in ["a", "b"] {
            while let Some(j) = store.claim_next(*kind, host, true, usize::MAX).await.unwrap() {
                store.transition(&j.id, JobState::Running, JobState::Canceled, None, None).await.unwrap();
            }
        }
    }
    let (running, _) = store.list(JobFilter { limit: 1000, state: Some(JobState::Running), ..Default::default() }).await.unwrap();
    for j in running {
        store.transition(&j.id, JobState::Running, JobState::Canceled, None, None).await.unwrap();
    }
    store.delete_finished_before("9999-12-31T00:00:00Z").await.unwrap();
    assert_eq!(store.count_queued().await.unwrap(), 0);
}

pub(crate) async fn queue_lifecycle_and_races(store: &dyn JobStore) {
    let Inserted::New(a) = store.insert(&new_id(), new_job("alice", Some("k1")), 10).await.unwrap() else { panic!() };
    let Inserted::Existing(a2) = store.insert(&new_id(), new_job("alice", Some("k1")), 10).await.unwrap() else { panic!() };
    assert_eq!(a.id, a2.id);
    // The same key for another owner is another job.
    let Inserted::New(b) = store.insert(&new_id(), new_job("bob", Some("k1")), 10).await.unwrap() else { panic!() };
    assert_ne!(a.id, b.id);
    assert!(matches!(store.insert(&new_id(), new_job("carol", None), 2).await.unwrap(), Inserted::QueueFull));

    // FIFO within a kind; a claimed job cannot be claimed twice.
    let c = store.claim_next(JobKind::Pull, "a", true, usize::MAX).await.unwrap().unwrap();
    assert_eq!(c.id, a.id);
    assert_eq!(c.state, JobState::Running);
    assert!(!store.transition(&a.id, JobState::Queued, JobState::Canceled, None, None).await.unwrap());
    assert!(store.transition(&a.id, JobState::Running, JobState::Succeeded, Some(serde_json::json!({"ok": 1})), None).await.unwrap());
    assert!(!store.transition(&a.id, JobState::Running, JobState::Failed, None, None).await.unwrap());
    let a = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!(a.state, JobState::Succeeded);
    assert!(a.finished_at.is_some());

    // Events count from 1 (the queued state event) per job.
    let e = store.append_event(&a.id, EventName::Log, serde_json::json!({"text": "hi"})).await.unwrap();
    assert_eq!(e.seq, 2);
    let evs = store.events_after(&a.id, 1, 100).await.unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].event, EventName::Log);

    // Newest first, with a cursor.
    let (all, _) = store.list(JobFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![b.id.clone(), a.id.clone()]);
    let (page, _) = store.list(JobFilter { limit: 10, before: Some(b.id.clone()), ..Default::default() }).await.unwrap();
    let (cut, more) = store.list(JobFilter { limit: 10, max_bytes: 1, ..Default::default() }).await.unwrap();
    assert_eq!((cut.len(), more), (1, true), "a byte budget ends the page early and says so");
    assert_eq!(page.len(), 1);

    // Retention forgets finished jobs only.
    let far_future = "9999-12-31T00:00:00Z";
    assert_eq!(store.delete_finished_before("2000-01-01T00:00:00Z").await.unwrap(), 0);

    // Only finished jobs can be deleted.
    assert!(store.delete_finished(&b.id).await.unwrap().is_none());
    assert!(store.delete_finished(&a.id).await.unwrap().is_some());
    assert!(store.get(&a.id).await.unwrap().is_none());
    assert!(store.events_after(&a.id, 0, 10).await.unwrap().is_empty());
    assert_eq!(store.delete_finished_before(far_future).await.unwrap(), 0, "b is still queued");
    assert!(store.get(&b.id).await.unwrap().is_some());
    // A finished job past the cutoff goes, with its events.
    let c = store.claim_next(JobKind::Pull, "a", true, usize::MAX).await.unwrap().unwrap();
    assert_eq!(c.id, b.id);
    assert!(store.transition(&c.id, JobState::Running, JobState::Failed, None, None).await.unwrap());
    store.append_event(&c.id, EventName::End, serde_json::json!({"state": "failed"})).await.unwrap();
    assert_eq!(store.delete_finished_before(far_future).await.unwrap(), 1);
    assert!(store.get(&c.id).await.unwrap().is_none());
    assert!(store.last_event(&c.id).await.unwrap().is_none());
}

pub(crate) async fn the_end_of_a_job_is_one_transaction(store: &dyn JobStore) {
    let Inserted::New(a) = store.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
    let job = store.claim_next(JobKind::Pull, "a", true, usize::MAX).await.unwrap().unwrap();
    assert_eq!(job.authority, Some(Role::Operator), "the submitter's role is recorded");
    let events = vec![(EventName::State, serde_json::json!({"state": "succeeded"})), (EventName::End, serde_json::json!({"state": "succeeded"}))];
    let end = |to, events| JobEnd { from: JobState::Running, to, result: Some(serde_json::json!({"ok": 1})), error: None, events };
    let done = store.finish(&a.id, end(JobState::Succeeded, events.clone())).await.unwrap().unwrap();
    assert_eq!(done.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    let j = store.get(&a.id).await.unwrap().unwrap();
    assert_eq!((j.state, j.progress.phase.as_str()), (JobState::Succeeded, "done"));
    assert!(store.last_event(&a.id).await.unwrap().unwrap().is_end());
    // A second end (a cancel racing the worker) changes nothing and stores nothing.
    assert!(store.finish(&a.id, end(JobState::Canceled, events)).await.unwrap().is_none());
    assert_eq!(store.events_after(&a.id, 0, 10).await.unwrap().len(), 3);
}

async fn hosts_have_their_own_queues(store: &dyn JobStore) {
    drain(store).await;
    let Inserted::New(on_a) = store.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
    let Inserted::New(on_b) = store.insert(&new_id(), NewJob { host: "b".into(), ..new_job("alice", None) }, 10).await.unwrap() else { panic!() };
    assert_eq!((on_a.host.as_str(), on_b.host.as_str()), ("a", "b"));
    assert_eq!(store.claim_next(JobKind::Pull, "b", false, usize::MAX).await.unwrap().unwrap().id, on_b.id, "B's own, though A's is older");
    assert!(store.claim_next(JobKind::Pull, "b", false, usize::MAX).await.unwrap().is_none());
    assert!(store.claim_next(JobKind::Push, "a", true, usize::MAX).await.unwrap().is_none(), "another kind's queue");
    let list = |host: &str| store.list(JobFilter { limit: 10, host: Some(host.into()), ..Default::default() });
    let ids = |jobs: Vec<crate::domain::job::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(list("b").await.unwrap().0), [on_b.id]);
    assert_eq!(ids(list("a").await.unwrap().0), [on_a.id]);
    let counts = store.count_by_kind_state().await.unwrap();
    assert!(counts.contains(&("pull".into(), "running".into(), "b".into(), 1)), "{counts:?}");
    assert!(counts.contains(&("pull".into(), "queued".into(), "a".into(), 1)), "{counts:?}");
    drain(store).await;
}

/// Eight claimers at once over 40 queued jobs: each job claimed exactly once.
async fn concurrent_claims_take_each_job_once(store: Arc<dyn JobStore>) {
    drain(&*store).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        let Inserted::New(j) = store.insert(&new_id(), new_job("alice", None), 1000).await.unwrap() else { panic!() };
        ids.push(j.id);
    }
    let claimers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = store.claim_next(JobKind::Pull, "a", true, usize::MAX).await.unwrap() {
                got.push(j.id);
            }
            got
        })
    });
    let mut claimed: Vec<String> = Vec::new();
    for c in claimers.collect::<Vec<_>>() {
        claimed.extend(c.await.unwrap());
    }
    claimed.sort();
    ids.sort();
    assert_eq!(claimed, ids, "every job once, none twice");
    drain(&*store).await;
}

/// A worker's events and a cancel's end racing on one job: sequence numbers stay 1, 2, 3...
async fn concurrent_writers_of_one_job_get_distinct_sequence_numbers(store: Arc<dyn JobStore>) {
    drain(&*store).await;
    let Inserted::New(j) = store.insert(&new_id(), new_job("alice", None), 10).await.unwrap() else { panic!() };
    let writers = (0..4).map(|w| {
        let (store, id) = (store.clone(), j.id.clone());
        tokio::spawn(async move {
            for i in 0..10 {
                store.append_event(&id, EventName::Log, serde_json::json!({"text": format!("{w}-{i}")})).await.unwrap();
            }
        })
    });
    for w in writers.collect::<Vec<_>>() {
        w.await.unwrap();
    }
    let seqs: Vec<u64> = store.events_after(&j.id, 0, 100).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=41).collect::<Vec<u64>>());
    drain(&*store).await;
}

/// Sixteen submitters at once into a queue bounded at 10, half of them repeating one key.
async fn the_queue_bound_and_keys_hold_under_concurrent_inserts(store: Arc<dyn JobStore>) {
    drain(&*store).await;
    let inserts = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let key = (i % 2 == 0).then_some("same-key");
            store.insert(&new_id(), new_job("alice", key), 10).await.unwrap()
        })
    });
    let (mut new, mut existing, mut full) = (0, 0, 0);
    for r in inserts.collect::<Vec<_>>() {
        match r.await.unwrap() {
            Inserted::New(_) => new += 1,
            Inserted::Existing(_) => existing += 1,
            Inserted::QueueFull => full += 1,
        }
    }
    assert_eq!(store.count_queued().await.unwrap(), new, "what was accepted is queued");
    assert!(new <= 10, "the bound holds: {new} accepted");
    assert_eq!(new + existing + full, 16);
    assert!(existing >= 1 && new >= 2, "one key made one job; the rest got it back ({new} new, {existing} existing, {full} full)");
    let (keyed, _) = store.list(JobFilter { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(keyed.iter().filter(|j| j.idempotency_key.as_deref() == Some("same-key")).count(), 1);
    drain(&*store).await;
}

/// Claims stop at the limit of running jobs of a host and kind (counted in the store, so
/// across every replica that shares it), and go on once one ends; claimers racing for the
/// last slot never overshoot it.
async fn claims_hold_the_concurrency_limit(store: Arc<dyn JobStore>) {
    drain(&*store).await;
    for _ in 0..12 {
        let Inserted::New(_) = store.insert(&new_id(), new_job("alice", None), 1000).await.unwrap() else { panic!() };
    }
    let first = store.claim_next(JobKind::Pull, "a", true, 2).await.unwrap().unwrap();
    assert!(store.claim_next(JobKind::Pull, "a", true, 2).await.unwrap().is_some());
    assert!(store.claim_next(JobKind::Pull, "a", true, 2).await.unwrap().is_none(), "two run: the limit");
    assert!(store.claim_next(JobKind::Pull, "a", true, 3).await.unwrap().is_some(), "a higher limit has room");
    assert!(store.transition(&first.id, JobState::Running, JobState::Succeeded, None, None).await.unwrap());
    assert!(store.claim_next(JobKind::Pull, "a", true, 3).await.unwrap().is_some(), "one ended: a slot is free");
    // Eight claimers racing with a limit of 5 (3 run): 2 more claims in all.
    let claimers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_next(JobKind::Pull, "a", true, 5).await.unwrap().is_some() })
    });
    let mut won = 0;
    for c in claimers.collect::<Vec<_>>() {
        won += c.await.unwrap() as usize;
    }
    assert_eq!(won, 2, "the limit holds under concurrent claims");
    drain(&*store).await;
}

async fn the_audit_log_records_filters_and_forgets(audit: &dyn AuditLog) {
    let rec = |subject: &str, outcome: &str, at: &str| AuditRecord {
        id: new_id(),
        at: at.into(),
        subject: Some(subject.into()),
        role: Some("operator".into()),
        team: Some("default".into()),
        host: Some("b".into()),
        action: "POST /v1/containers".into(),
        target: Some("image=x".into()),
        outcome: outcome.into(),
        status: if outcome == "success" { 202 } else { 403 },
        code: None,
        job_id: Some("01J".into()),
        client: Some("127.0.0.1".into()),
        request_id: Some("r".into()),
    };
    audit.record(rec("alice", "success", "2000-01-01T00:00:00.000Z")).await.unwrap();
    audit.record(rec("bob", "denied", "2999-01-01T00:00:00.000Z")).await.unwrap();
    let all = audit.query(AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|r| r.subject.clone().unwrap()).collect::<Vec<_>>(), ["bob", "alice"], "newest first");
    assert_eq!((all[0].host.as_deref(), all[0].status), (Some("b"), 403));
    let bob = audit.query(AuditFilter { subject: Some("bob".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(bob.len(), 1);
    let before = audit.query(AuditFilter { before: Some(all[0].id.clone()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(audit.prune_before("2500-01-01T00:00:00.000Z").await.unwrap(), 1);
    assert_eq!(audit.query(AuditFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 1);
}
