//! How `berth watch` shows a job: progress bars on a terminal (an overall bar and one per
//! layer, log lines printed above them, as `docker pull` does), plain lines otherwise.

use std::collections::HashMap;
use std::time::Duration;

use berth::domain::job::{JobState, LayerEvent, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub trait Render {
    fn state(&mut self, state: JobState);
    fn progress(&mut self, p: &Progress);
    fn layer(&mut self, l: &LayerEvent);
    /// A line of output (a log line, a result, an error), kept above the bars.
    fn line(&mut self, text: &str);
    /// A remark about the connection, on stderr.
    fn note(&mut self, text: &str);
    /// The job is over: the last line.
    fn finish(&mut self, job_id: &str, state: JobState);
}

/// Statuses after which a layer has nothing left to do.
fn layer_done(status: &str) -> bool {
    ["Pull complete", "Already exists", "Pushed", "Layer already exists"].contains(&status)
        || status.starts_with("Mounted from")
}

fn percent(current: Option<i64>, total: Option<i64>) -> Option<u8> {
    match (current, total) {
        (Some(c), Some(t)) if t > 0 => Some((c.clamp(0, t) * 100 / t) as u8),
        _ => None,
    }
}

fn human(bytes: i64) -> String {
    indicatif::BinaryBytes(bytes.max(0) as u64).to_string()
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

/// One line per change, no escape codes: for pipes, files and scripts.
#[derive(Default)]
pub struct Plain {
    last_progress: Option<(String, Option<u8>, u32, u32)>,
    /// Per layer: the last status and quarter of the way printed.
    layers: HashMap<String, (String, Option<u8>)>,
}

impl Plain {
    pub fn progress_line(p: &Progress) -> String {
        let mut s = format!("progress: {}", p.phase);
        if let Some(pc) = p.percent {
            s.push_str(&format!(" {pc}%"));
        }
        if let (Some(c), Some(t)) = (p.current, p.total) {
            s.push_str(&format!(" {}/{}", human(c), human(t)));
        }
        if p.layers_total > 0 {
            s.push_str(&format!(" ({}/{} layers)", p.layers_done, p.layers_total));
        }
        s
    }

    pub fn layer_line(l: &LayerEvent) -> String {
        let mut s = format!("{}: {}", short(&l.id), l.status);
        if let (Some(pc), Some(c), Some(t)) = (percent(l.current, l.total), l.current, l.total) {
            // The engine's push counts may pass the layer's size (its buffer, not bytes
            // sent): never show more done than there is.
            s.push_str(&format!(" {pc}% {}/{}", human(c.min(t)), human(t)));
        }
        s
    }
}

impl Render for Plain {
    fn state(&mut self, state: JobState) {
        println!("state: {state}");
    }

    fn progress(&mut self, p: &Progress) {
        let key = (p.phase.clone(), p.percent, p.layers_done, p.layers_total);
        if self.last_progress.as_ref() != Some(&key) {
            println!("{}", Self::progress_line(p));
            self.last_progress = Some(key);
        }
    }

    fn layer(&mut self, l: &LayerEvent) {
        // A line when the status changes, and as the bytes pass each quarter.
        let quarter = percent(l.current, l.total).map(|p| if p == 100 { 4 } else { p / 25 });
        let key = (l.status.clone(), quarter);
        if self.layers.get(&l.id) != Some(&key) {
            println!("{}", Self::layer_line(l));
            self.layers.insert(l.id.clone(), key);
        }
    }

    fn line(&mut self, text: &str) {
        println!("{text}");
    }

    fn note(&mut self, text: &str) {
        eprintln!("berth watch: {text}");
    }

    fn finish(&mut self, job_id: &str, state: JobState) {
        println!("job {job_id}: {state}");
    }
}

/// Bars on a terminal (stdout).
pub struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    layers: HashMap<String, ProgressBar>,
    sized: bool,
}

const OVERALL_BAR: &str = "{prefix:>9.bold} [{bar:40.cyan/blue}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {wide_msg}";
const OVERALL_SPIN: &str = "{prefix:>9.bold} {spinner} {elapsed} {wide_msg}";
const LAYER: &str = "{prefix} {msg:<18} [{bar:30}] {binary_bytes}/{binary_total_bytes}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ")
}

impl Bars {
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let overall = multi.add(ProgressBar::new(0).with_style(style(OVERALL_SPIN)).with_prefix("queued"));
        overall.enable_steady_tick(Duration::from_millis(120));
        Bars { multi, overall, layers: HashMap::new(), sized: false }
    }
}

impl Render for Bars {
    fn state(&mut self, state: JobState) {
        self.overall.set_prefix(state.to_string());
    }

    fn progress(&mut self, p: &Progress) {
        if let (Some(c), Some(t)) = (p.current, p.total)
            && t > 0
        {
            if !self.sized {
                self.overall.set_style(style(OVERALL_BAR));
                self.sized = true;
            }
            self.overall.set_length(t as u64);
            self.overall.set_position(c.clamp(0, t) as u64);
        }
        let mut msg = p.phase.clone();
        if p.layers_total > 0 {
            msg.push_str(&format!(" {}/{} layers", p.layers_done, p.layers_total));
        }
        self.overall.set_message(msg);
    }

    fn layer(&mut self, l: &LayerEvent) {
        let (multi, overall) = (&self.multi, &self.overall);
        let bar = self.layers.entry(l.id.clone()).or_insert_with(|| {
            multi.insert_before(overall, ProgressBar::new(0).with_style(style(LAYER)).with_prefix(short(&l.id).to_string()))
        });
        if let (Some(c), Some(t)) = (l.current, l.total)
            && t > 0
        {
            bar.set_length(t as u64);
            bar.set_position(c.clamp(0, t) as u64);
        }
        if layer_done(&l.status) || l.status == "Download complete" {
            bar.set_length(bar.length().filter(|n| *n > 0).unwrap_or(1));
            bar.set_position(bar.length().unwrap_or(1));
        }
        bar.set_message(l.status.clone());
        if layer_done(&l.status) {
            bar.finish();
        }
    }

    fn line(&mut self, text: &str) {
        let _ = self.multi.println(text);
    }

    fn note(&mut self, text: &str) {
        self.multi.suspend(|| eprintln!("berth watch: {text}"));
    }

    fn finish(&mut self, job_id: &str, state: JobState) {
        for bar in self.layers.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
        self.overall.set_prefix(state.to_string());
        self.overall.finish();
        // Every bar is done: the line goes below them.
        println!("job {job_id}: {state}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_carry_percent_and_sizes() {
        let l = LayerEvent { id: "sha256:0123456789abcdef".into(), status: "Downloading".into(), current: Some(512), total: Some(1024) };
        assert_eq!(Plain::layer_line(&l), "0123456789ab: Downloading 50% 512 B/1.00 KiB");
        let p = Progress { phase: "pulling".into(), current: Some(2048), total: Some(2048), percent: Some(100), layers_done: 1, layers_total: 1, message: None, ..Default::default() };
        assert_eq!(Plain::progress_line(&p), "progress: pulling 100% 2.00 KiB/2.00 KiB (1/1 layers)");
        let l = LayerEvent { id: "abc".into(), status: "Pull complete".into(), current: None, total: Some(-1) };
        assert_eq!(Plain::layer_line(&l), "abc: Pull complete");
        let l = LayerEvent { id: "abc".into(), status: "Pushing".into(), current: Some(512), total: Some(6) };
        assert_eq!(Plain::layer_line(&l), "abc: Pushing 100% 6 B/6 B", "never more done than there is");
    }
}
