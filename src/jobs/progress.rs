//! Folding the engine's per-layer pull/push messages into layer events and one
//! aggregated [`Progress`]. Pure code: tolerant of missing fields and `total: -1`.

use crate::domain::job::{LayerEvent, Progress};
use crate::docker::ProgressMessage;

#[derive(Debug, Clone)]
struct Layer {
    id: String,
    current: Option<i64>,
    total: Option<i64>,
    done: bool,
    /// Bytes moved: downloading/pushing counts, extracting does not.
    finished_transfer: bool,
}

#[derive(Debug, Clone)]
pub struct ProgressTracker {
    phase: String,
    layers: Vec<Layer>,
    message: Option<String>,
}

/// A layer id as the engine prints it: at least 12 hex digits.
fn is_layer_id(id: &str) -> bool {
    id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_done(status: &str) -> bool {
    matches!(status, "Pull complete" | "Already exists" | "Pushed" | "Layer already exists")
        || status.starts_with("Mounted from")
}

fn transfer_finished(status: &str) -> bool {
    is_done(status) || matches!(status, "Download complete" | "Extracting" | "Verifying Checksum")
}

impl ProgressTracker {
    pub fn new(phase: &str) -> Self {
        Self { phase: phase.to_string(), layers: Vec::new(), message: None }
    }

    pub fn set_phase(&mut self, phase: &str) {
        self.phase = phase.to_string();
    }

    /// Fold one message; returns the `layer` event it makes, if it is about a layer.
    pub fn apply(&mut self, msg: &ProgressMessage) -> Option<LayerEvent> {
        let status = msg.status.clone().unwrap_or_default();
        let id = msg.id.as_deref().filter(|id| is_layer_id(id));
        let Some(id) = id else {
            if !status.is_empty() {
                self.message = Some(match &msg.id {
                    Some(id) => format!("{id}: {status}"),
                    None => status,
                });
            }
            return None;
        };
        let idx = match self.layers.iter().position(|l| l.id == id) {
            Some(i) => i,
            None => {
                self.layers.push(Layer { id: id.to_string(), current: None, total: None, done: false, finished_transfer: false });
                self.layers.len() - 1
            }
        };
        let layer = &mut self.layers[idx];
        let total = msg.total.filter(|t| *t > 0);
        let current = msg.current.filter(|c| *c >= 0);
        if transfer_finished(&status) {
            layer.finished_transfer = true;
        }
        if !layer.finished_transfer {
            if total.is_some() {
                layer.total = total;
            }
            if current.is_some() {
                layer.current = current;
            }
        }
        if is_done(&status) {
            layer.done = true;
        }
        self.message = Some(format!("{id}: {status}"));
        Some(LayerEvent { id: id.to_string(), status, current, total })
    }

    pub fn progress(&self) -> Progress {
        let mut current = 0i64;
        let mut total = 0i64;
        for l in &self.layers {
            if let Some(t) = l.total {
                // A hostile registry may report any size: saturate, never overflow.
                total = total.saturating_add(t);
                current = current.saturating_add(if l.finished_transfer || l.done { t } else { l.current.unwrap_or(0).min(t) });
            }
        }
        let known = total > 0;
        Progress {
            phase: self.phase.clone(),
            current: known.then_some(current),
            total: known.then_some(total),
            percent: known.then(|| ((current as i128 * 100) / total as i128).clamp(0, 100) as u8),
            layers_done: self.layers.iter().filter(|l| l.done).count() as u32,
            layers_total: self.layers.len() as u32,
            message: self.message.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: Option<&str>, status: &str, current: Option<i64>, total: Option<i64>) -> ProgressMessage {
        ProgressMessage { id: id.map(String::from), status: Some(status.into()), current, total, digest: None }
    }

    const A: &str = "aaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbb";

    #[test]
    fn folds_a_pull() {
        let mut t = ProgressTracker::new("pulling");
        assert!(t.apply(&m(Some("1.0"), "Pulling from team/app", None, None)).is_none());
        assert_eq!(t.progress().message.as_deref(), Some("1.0: Pulling from team/app"));
        t.apply(&m(Some(A), "Pulling fs layer", None, None)).unwrap();
        t.apply(&m(Some(B), "Pulling fs layer", None, None)).unwrap();
        let ev = t.apply(&m(Some(A), "Downloading", Some(50), Some(100))).unwrap();
        assert_eq!(ev, LayerEvent { id: A.into(), status: "Downloading".into(), current: Some(50), total: Some(100) });
        t.apply(&m(Some(B), "Downloading", Some(100), Some(300))).unwrap();
        let p = t.progress();
        assert_eq!((p.current, p.total, p.percent), (Some(150), Some(400), Some(37)));
        assert_eq!((p.layers_done, p.layers_total), (0, 2));
        // Extraction does not move the byte count backwards.
        t.apply(&m(Some(A), "Download complete", None, None));
        t.apply(&m(Some(A), "Extracting", Some(10), Some(100)));
        assert_eq!(t.progress().current, Some(200));
        t.apply(&m(Some(A), "Pull complete", None, None));
        t.apply(&m(Some(B), "Pull complete", None, None));
        let p = t.progress();
        assert_eq!((p.current, p.total, p.percent, p.layers_done), (Some(400), Some(400), Some(100), 2));
        assert!(t.apply(&m(None, "Digest: sha256:abc", None, None)).is_none());
        assert_eq!(t.progress().message.as_deref(), Some("Digest: sha256:abc"));
    }

    #[test]
    fn tolerates_unknown_totals() {
        let mut t = ProgressTracker::new("pushing");
        t.apply(&m(Some(A), "Pushing", Some(10), Some(-1)));
        t.apply(&m(Some(B), "Preparing", None, None));
        let p = t.progress();
        assert_eq!((p.current, p.total, p.percent), (None, None, None));
        assert_eq!(p.layers_total, 2);
        t.apply(&m(Some(B), "Pushing", Some(5), Some(20)));
        t.apply(&m(Some(A), "Layer already exists", None, None));
        let p = t.progress();
        assert_eq!((p.current, p.total, p.percent, p.layers_done), (Some(5), Some(20), Some(25), 1));
        t.apply(&m(Some(B), "Pushed", None, None));
        assert_eq!(t.progress().percent, Some(100));
    }

    #[test]
    fn no_layers_no_numbers() {
        let mut t = ProgressTracker::new("pulling");
        t.apply(&ProgressMessage::default());
        let p = t.progress();
        assert_eq!((p.current, p.total, p.percent, p.layers_total), (None, None, None, 0));
        assert_eq!(p.phase, "pulling");
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    #[test]
    fn absurd_sizes_saturate() {
        let mut t = ProgressTracker::new("pulling");
        for id in ["aaaaaaaaaaaa", "bbbbbbbbbbbb"] {
            t.apply(&ProgressMessage {
                id: Some(id.into()),
                status: Some("Downloading".into()),
                current: Some(i64::MAX),
                total: Some(i64::MAX),
                digest: None,
            });
        }
        let p = t.progress();
        assert_eq!(p.total, Some(i64::MAX));
        assert_eq!(p.percent, Some(100));
    }
}
