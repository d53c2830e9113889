//! Job records and events, as stored and as the API shows them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Build,
    Pull,
    Push,
    Run,
    PruneImages,
    PruneContainers,
}

impl JobKind {
    pub const ALL: [JobKind; 6] =
        [JobKind::Build, JobKind::Pull, JobKind::Push, JobKind::Run, JobKind::PruneImages, JobKind::PruneContainers];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Build => "build",
            JobKind::Pull => "pull",
            JobKind::Push => "push",
            JobKind::Run => "run",
            JobKind::PruneImages => "prune_images",
            JobKind::PruneContainers => "prune_containers",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Canceled,
    Interrupted,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Canceled,
        JobState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
            JobState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// Aggregated progress, folded from the engine's per-layer messages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// What the job is doing: `queued`, `pulling`, `pushing`, `building`, `creating`,
    /// `running`, `pruning`, `done`.
    pub phase: String,
    /// Bytes done over the layers whose size is known.
    pub current: Option<i64>,
    /// Bytes in all, over the layers whose size is known.
    pub total: Option<i64>,
    /// 0-100, when a total is known.
    pub percent: Option<u8>,
    pub layers_done: u32,
    pub layers_total: u32,
    /// The engine's latest status line.
    pub message: Option<String>,
}

/// Why a job failed or was interrupted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
}

/// A job: a build, pull, push, run or prune, queued and run by Berth.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Sortable by creation (a ULID).
    pub id: String,
    pub kind: JobKind,
    pub state: JobState,
    /// The token subject that made it.
    pub owner: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The parameters, secrets removed.
    #[schema(value_type = Object)]
    pub request: Value,
    pub progress: Progress,
    /// By kind: build `{image_id, tags}`, pull `{image_id, digest}`, push `{digest}`,
    /// run `{container_id, exit_code?}`, prune `{deleted, space_reclaimed}`.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<JobError>,
    /// The `Idempotency-Key` it was made with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// One stored event of a job: what SSE replays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub job_id: String,
    /// Per-job sequence number, from 1: the SSE `id:`.
    pub seq: u64,
    /// SSE event name: `state`, `progress`, `layer`, `log`, `result`, `error`, `end`.
    pub event: String,
    pub data: Value,
}

/// What a new job is made of.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub owner: String,
    pub request: Value,
    pub idempotency_key: Option<String>,
    /// A spooled build context to delete when the job is forgotten.
    pub spool: Option<String>,
}

/// List filters.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub owner: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    /// Exclusive: jobs older than this id.
    pub before: Option<String>,
    pub limit: usize,
}

// ---- SSE payload schemas (documented in OpenAPI) -----------------------------------------

/// `state` and `end` events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StateEvent {
    pub state: JobState,
    /// On `/v1/events` only: which job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `layer` events (pull, push).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LayerEvent {
    pub id: String,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

/// `progress` events: [`Progress`] aggregated over layers.
pub type ProgressEvent = Progress;
