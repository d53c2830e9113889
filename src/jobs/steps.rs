//! Build steps from the classic builder's output: `Step n/N : INSTRUCTION` starts a step,
//! and the line after it says whether the builder reused its cache (` ---> Using cache`)
//! or ran the step (anything else: ` ---> Running in …`, ` ---> <id>`). So a step is
//! decided, and its [`StepEvent`] made, when that next line arrives; a `FROM` step at
//! once (it is the base image, not a cache result: `cached` is `null`). A step still
//! open when the output ends (the build failed in it) is decided as run. Pure code.
//!
//! The engine appends one `LABEL` step per build label after the Dockerfile's own
//! steps. Berth's stamps among them (`berth.team`, `berth.owner`, `berth.job`) are not
//! the caller's steps, and `berth.job` differs on every build (so it never hits the
//! cache): they are left out, and the steps are numbered without them.

use crate::domain::job::StepEvent;

/// The longest instruction a step event carries (the log has the whole line).
const INSTRUCTION_MAX: usize = 2048;

#[derive(Debug, Default, Clone)]
pub struct StepTracker {
    open: Option<StepEvent>,
    steps: u32,
    cache_hits: u32,
    /// How many label steps the engine appends (every build label, stamps included).
    label_steps: u32,
    /// How many of those are Berth's stamps.
    stamps: u32,
    /// Stamp steps seen so far.
    hidden: u32,
    /// `(index, total)` of the step the last line started, if it started one.
    started: Option<(u32, u32)>,
}

/// `Step 2/5 : RUN make` -> (2, 5, "RUN make").
fn header(line: &str) -> Option<(u32, u32, &str)> {
    let rest = line.strip_prefix("Step ")?;
    let (counts, instruction) = rest.split_once(" : ").or_else(|| rest.split_once(" :"))?;
    let (n, total) = counts.split_once('/')?;
    let (n, total) = (n.parse().ok()?, total.parse().ok()?);
    (n >= 1 && n <= total).then_some((n, total, instruction.trim()))
}

fn bounded(s: &str) -> String {
    if s.len() <= INSTRUCTION_MAX {
        return s.to_string();
    }
    let mut end = INSTRUCTION_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn is_from(instruction: &str) -> bool {
    instruction.split_whitespace().next().is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
}

impl StepTracker {
    /// A tracker for a build with `labels` build labels, `stamps` of them Berth's.
    pub fn new(labels: usize, stamps: usize) -> Self {
        StepTracker { label_steps: labels as u32, stamps: stamps as u32, ..Default::default() }
    }

    /// A step of Berth's own stamp labels, appended by the engine at the end.
    fn is_stamp(&self, index: u32, total: u32, instruction: &str) -> bool {
        index + self.label_steps > total && instruction.starts_with(&format!("LABEL {}", crate::domain::scope::RESERVED_PREFIX))
    }

    /// Fold one line of build output (without its newline); the steps it decides, in
    /// order (at most two: the open one, and a `FROM` that starts here).
    pub fn line(&mut self, line: &str) -> Vec<StepEvent> {
        let mut decided = Vec::new();
        self.started = None;
        if let Some((index, total, instruction)) = header(line) {
            decided.extend(self.decide(false));
            if self.is_stamp(index, total, instruction) {
                self.hidden += 1;
                return decided;
            }
            let (index, total) = (index - self.hidden, total - self.stamps.min(total - 1));
            self.started = Some((index, total));
            let step = StepEvent { index, total, instruction: bounded(instruction), cached: None };
            if is_from(instruction) {
                decided.push(self.count(step));
            } else {
                self.open = Some(step);
            }
        } else if self.open.is_some() && !line.trim().is_empty() {
            decided.extend(self.decide(line.trim() == "---> Using cache"));
        }
        decided
    }

    /// The output ended: the open step, if any, ran (and maybe failed).
    pub fn finish(&mut self) -> Option<StepEvent> {
        self.decide(false)
    }

    /// `(index, total)` of the step the last line started, if it started one of the
    /// caller's steps.
    pub fn started(&self) -> Option<(u32, u32)> {
        self.started
    }

    pub fn steps(&self) -> u32 {
        self.steps
    }

    pub fn cache_hits(&self) -> u32 {
        self.cache_hits
    }

    fn decide(&mut self, cached: bool) -> Option<StepEvent> {
        let mut step = self.open.take()?;
        step.cached = Some(cached);
        Some(self.count(step))
    }

    fn count(&mut self, step: StepEvent) -> StepEvent {
        self.steps += 1;
        if step.cached == Some(true) {
            self.cache_hits += 1;
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut StepTracker, text: &str) -> Vec<StepEvent> {
        let mut out: Vec<StepEvent> = text.lines().flat_map(|l| t.line(l)).collect();
        out.extend(t.finish());
        out
    }

    fn summary(steps: &[StepEvent]) -> Vec<(u32, u32, &str, Option<bool>)> {
        steps.iter().map(|s| (s.index, s.total, s.instruction.as_str(), s.cached)).collect()
    }

    #[test]
    fn a_cold_build() {
        let mut t = StepTracker::default();
        let out = feed(
            &mut t,
            "Step 1/4 : FROM busybox\n ---> 1a2b3c4d5e6f\nStep 2/4 : ARG X=1\n ---> Running in 0123\nRemoving intermediate container 0123\n ---> 2b3c\n\
             Step 3/4 : COPY a /a\n ---> 3c4d\nStep 4/4 : RUN echo hi\n ---> Running in 4567\nhi\n ---> 4d5e\nSuccessfully built 4d5e\n",
        );
        assert_eq!(
            summary(&out),
            [(1, 4, "FROM busybox", None), (2, 4, "ARG X=1", Some(false)), (3, 4, "COPY a /a", Some(false)), (4, 4, "RUN echo hi", Some(false))]
        );
        assert_eq!((t.steps(), t.cache_hits()), (4, 0));
    }

    #[test]
    fn a_rebuild_with_a_change_in_the_middle() {
        let mut t = StepTracker::default();
        let out = feed(
            &mut t,
            "Step 1/4 : FROM busybox\n ---> 1a2b\nStep 2/4 : RUN a\n ---> Using cache\n ---> 2b3c\nStep 3/4 : RUN b2\n ---> Running in 9\n\
             Step 4/4 : LABEL x=y\n ---> Running in 8\n ---> 5e6f\n",
        );
        assert_eq!(out.iter().map(|s| s.cached).collect::<Vec<_>>(), [None, Some(true), Some(false), Some(false)]);
        assert_eq!((t.steps(), t.cache_hits()), (4, 1));
    }

    #[test]
    fn decided_only_when_the_next_line_comes() {
        let mut t = StepTracker::default();
        assert!(t.line("Step 2/3 : RUN x").is_empty(), "not known yet");
        assert!(t.line("   ").is_empty(), "blank lines decide nothing");
        assert_eq!(t.line(" ---> Using cache")[0].cached, Some(true));
        assert!(t.line(" ---> 1234").is_empty(), "already decided");
        // A step that fails before any output line: decided as run when the output ends.
        assert!(t.line("Step 3/3 : COPY missing /m").is_empty());
        assert_eq!(t.finish().unwrap().cached, Some(false));
        assert!(t.finish().is_none());
    }

    #[test]
    fn a_step_right_after_a_step_and_pull_output_after_from() {
        let mut t = StepTracker::default();
        t.line("Step 1/3 : FROM 127.0.0.1:5001/x/y:1");
        assert!(t.line("1: Pulling from x/y").is_empty(), "FROM was decided at once");
        t.line("Step 2/3 : ENV A=1");
        let out = t.line("Step 3/3 : CMD [\"sh\"]");
        assert_eq!(summary(&out), [(2, 3, "ENV A=1", Some(false))]);
        assert_eq!(t.started(), Some((3, 3)));
        for not in ["Step x/3 : RUN", "Step 4/3 : RUN", "Step 0/3 : RUN", "step 1/2 : RUN", "Step 1/2 RUN", " Step 1/2 : RUN"] {
            t.line(not);
            assert!(t.started().is_none(), "{not}");
        }
    }

    #[test]
    fn berths_stamps_are_not_steps() {
        // Two build labels of the caller's (`a`, `z`) and Berth's three, sorted by the engine.
        let mut t = StepTracker::new(5, 3);
        let out = feed(
            &mut t,
            "Step 1/7 : FROM b\n ---> 1\nStep 2/7 : LABEL berth.team=early\n ---> Using cache\nStep 3/7 : LABEL a=1\n ---> Using cache\n\
             Step 4/7 : LABEL berth.job=J\n ---> Running in 2\nStep 5/7 : LABEL berth.owner=o\n ---> Running in 3\n\
             Step 6/7 : LABEL berth.team=t\n ---> Running in 4\nStep 7/7 : LABEL z=2\n ---> Running in 5\n",
        );
        assert_eq!(
            summary(&out),
            [(1, 4, "FROM b", None), (2, 4, "LABEL berth.team=early", Some(true)), (3, 4, "LABEL a=1", Some(true)), (4, 4, "LABEL z=2", Some(false))]
        );
        assert_eq!((t.steps(), t.cache_hits()), (4, 2));
    }

    #[test]
    fn long_instructions_are_bounded() {
        let mut t = StepTracker::default();
        t.line(&format!("Step 1/2 : RUN echo {}", "é".repeat(3000)));
        let s = t.finish().unwrap();
        assert!(s.instruction.len() <= INSTRUCTION_MAX + '…'.len_utf8() && s.instruction.ends_with('…'));
    }
}
