//! Container stats and processes: `docker stats` figures computed from the engine's raw
//! counters ([`compute`], a pure function), their stream, and `docker top`.

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters as qp;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{ContainerStats, ContainerTop, DockerEngine, EngineError, ObjectKind, Result};

/// The time the engine reports for a container that is not running (Go's zero time).
const ZERO_TIME_PREFIX: &str = "0001-01-01";

/// Berth's figures from one engine stats document. A document read while the container
/// was not running (its `read` is Go's zero time, `0001-01-01T00:00:00Z`) gives
/// [`ContainerStats::stopped`]. CPU needs the previous sample (`precpu_stats`): without it
/// (the first document of a stream, a one-shot read) `cpu_percent` is 0.
pub fn compute(s: &ContainerStatsResponse) -> ContainerStats {
    let id = s.id.clone().unwrap_or_default();
    let name = s.name.clone().unwrap_or_default();
    let read = s.read.as_deref().filter(|r| !r.is_empty() && !r.starts_with(ZERO_TIME_PREFIX));
    let Some(read) = read else { return ContainerStats::stopped(&id, &name) };

    let (cpu, precpu) = (s.cpu_stats.as_ref(), s.precpu_stats.as_ref());
    let total = |c: Option<&bollard::models::ContainerCpuStats>| {
        c.and_then(|c| c.cpu_usage.as_ref()).and_then(|u| u.total_usage).unwrap_or(0)
    };
    let system = |c: Option<&bollard::models::ContainerCpuStats>| c.and_then(|c| c.system_cpu_usage).unwrap_or(0);
    let online_cpus = cpu
        .and_then(|c| c.online_cpus.filter(|n| *n > 0).map(u64::from))
        .or_else(|| {
            cpu.and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|p| p.len() as u64)
                .filter(|n| *n > 0)
        })
        .unwrap_or(1);
    let cpu_percent = if system(precpu) == 0 {
        0.0
    } else {
        let cpu_delta = total(cpu).saturating_sub(total(precpu));
        let system_delta = system(cpu).saturating_sub(system(precpu));
        if cpu_delta > 0 && system_delta > 0 {
            cpu_delta as f64 / system_delta as f64 * online_cpus as f64 * 100.0
        } else {
            0.0
        }
    };

    let mem = s.memory_stats.as_ref();
    let usage = mem.and_then(|m| m.usage).unwrap_or(0);
    // What `docker stats` leaves out of usage: the page cache the kernel may drop.
    let cache = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            ["total_inactive_file", "inactive_file", "cache"].iter().find_map(|k| st.get(*k).copied().filter(|v| *v < usage))
        })
        .unwrap_or(0);

    let (mut rx, mut tx) = (0u64, 0u64);
    for n in s.networks.iter().flat_map(|n| n.values()) {
        rx = rx.saturating_add(n.rx_bytes.unwrap_or(0));
        tx = tx.saturating_add(n.tx_bytes.unwrap_or(0));
    }
    let (mut block_read, mut block_write) = (0u64, 0u64);
    let entries = s.blkio_stats.as_ref().and_then(|b| b.io_service_bytes_recursive.as_ref());
    for e in entries.into_iter().flatten() {
        let value = e.value.unwrap_or(0);
        match e.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => block_read = block_read.saturating_add(value),
            Some("write") => block_write = block_write.saturating_add(value),
            _ => {}
        }
    }

    ContainerStats {
        id,
        name: name.trim_start_matches('/').to_string(),
        running: true,
        read: Some(read.to_string()),
        cpu_percent: (cpu_percent * 100.0).round() / 100.0,
        memory_bytes: usage - cache,
        memory_limit_bytes: mem.and_then(|m| m.limit).unwrap_or(0),
        net_rx_bytes: rx,
        net_tx_bytes: tx,
        block_read_bytes: block_read,
        block_write_bytes: block_write,
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
    }
}

impl DockerEngine {
    /// One snapshot. `stream=false, one-shot=false`: the engine takes two samples (about
    /// a second apart) so that `precpu_stats` is filled and CPU is a real figure.
    pub(super) async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let d = self.docker().await?;
        let opts = qp::StatsOptions { stream: false, one_shot: false };
        let mut stream = d.stats(id, Some(opts));
        match stream.next().await {
            Some(Ok(s)) => Ok(compute(&s)),
            Some(Err(e)) => Err(self.fail(ObjectKind::Container, e)),
            // The engine ends the answer without a document when the container stopped or
            // went away during the read: it is not running.
            None => Ok(ContainerStats::stopped(id, "")),
        }
    }

    /// The engine's stats stream (one document about every second), computed.
    pub(super) async fn container_stats_stream(&self, id: &str) -> Result<BoxStream<'static, Result<ContainerStats>>> {
        let d = self.docker().await?;
        let opts = qp::StatsOptions { stream: true, one_shot: false };
        let stream = d.stats(id, Some(opts));
        Ok(stream
            .map(|item| item.map(|s| compute(&s)).map_err(|e| EngineError::from_bollard(ObjectKind::Container, e)))
            .boxed())
    }

    pub(super) async fn container_top(&self, id: &str) -> Result<ContainerTop> {
        let d = self.docker().await?;
        let top = d
            .top_processes(id, Some(qp::TopOptions { ps_args: "-ef".into() }))
            .await
            .map_err(|e| self.fail(ObjectKind::Container, e))?;
        Ok(ContainerTop { titles: top.titles.unwrap_or_default(), processes: top.processes.unwrap_or_default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: serde_json::Value) -> ContainerStatsResponse {
        serde_json::from_value(v).expect("a stats document")
    }

    /// A cgroup v1 document as Docker 20.10 sends it (trimmed).
    fn v1() -> serde_json::Value {
        serde_json::json!({
            "read": "2026-12-03T12:00:01.5Z", "preread": "2026-12-03T12:00:00.5Z",
            "id": "abc", "name": "/web",
            "pids_stats": {"current": 3},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 1000},
                {"major": 8, "minor": 0, "op": "Sync", "value": 7},
                {"major": 8, "minor": 0, "op": "Total", "value": 5096},
                {"major": 8, "minor": 16, "op": "Read", "value": 4}
            ]},
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000u64, "percpu_usage": [1, 2]},
                          "system_cpu_usage": 20_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000u64},
                             "system_cpu_usage": 18_000_000_000u64, "online_cpus": 2},
            "memory_stats": {"usage": 10_000_000, "limit": 2_000_000_000,
                             "stats": {"cache": 3_000_000, "total_inactive_file": 2_000_000}},
            "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 10}, "eth1": {"rx_bytes": 5, "tx_bytes": 1}}
        })
    }

    #[test]
    fn computes_the_figures_docker_stats_shows() {
        let s = compute(&doc(v1()));
        assert!(s.running);
        assert_eq!(s.id, "abc");
        assert_eq!(s.name, "web");
        assert_eq!(s.read.as_deref(), Some("2026-12-03T12:00:01.5Z"));
        // 0.5e9 / 2e9 * 2 CPUs * 100
        assert_eq!(s.cpu_percent, 50.0);
        assert_eq!(s.memory_bytes, 8_000_000, "usage minus total_inactive_file");
        assert_eq!(s.memory_limit_bytes, 2_000_000_000);
        assert_eq!((s.net_rx_bytes, s.net_tx_bytes), (105, 11));
        assert_eq!((s.block_read_bytes, s.block_write_bytes), (4100, 1000));
        assert_eq!(s.pids, 3);
    }

    #[test]
    fn cgroup_v2_memory_leaves_out_inactive_file_and_ops_are_lowercase() {
        let mut v = v1();
        v["memory_stats"]["stats"] = serde_json::json!({"inactive_file": 1_000_000, "file": 5});
        v["blkio_stats"]["io_service_bytes_recursive"] =
            serde_json::json!([{"major": 8, "minor": 0, "op": "read", "value": 9}, {"major": 8, "minor": 0, "op": "write", "value": 8}]);
        let s = compute(&doc(v));
        assert_eq!(s.memory_bytes, 9_000_000);
        assert_eq!((s.block_read_bytes, s.block_write_bytes), (9, 8));
    }

    #[test]
    fn without_online_cpus_the_per_cpu_list_counts_them() {
        let mut v = v1();
        v["cpu_stats"].as_object_mut().unwrap().remove("online_cpus");
        assert_eq!(compute(&doc(v)).cpu_percent, 50.0);
    }

    #[test]
    fn a_one_shot_read_without_a_previous_sample_is_zero_cpu_not_the_average_since_boot() {
        let mut v = v1();
        v["precpu_stats"] = serde_json::json!({"cpu_usage": {"total_usage": 0}});
        let s = compute(&doc(v));
        assert_eq!(s.cpu_percent, 0.0);
        assert!(s.running);
    }

    #[test]
    fn a_stopped_container_is_all_zero_with_no_read_time() {
        let s = compute(&doc(serde_json::json!({
            "read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z", "id": "abc", "name": "/web",
            "pids_stats": {}, "blkio_stats": {}, "cpu_stats": {"cpu_usage": {"total_usage": 0}},
            "precpu_stats": {"cpu_usage": {"total_usage": 0}}, "memory_stats": {}
        })));
        assert_eq!(s, ContainerStats::stopped("abc", "web"));
        assert!(!s.running);
        assert_eq!(s.read, None);
    }

    #[test]
    fn cache_larger_than_usage_is_ignored() {
        let mut v = v1();
        v["memory_stats"]["stats"] = serde_json::json!({"total_inactive_file": 20_000_000});
        assert_eq!(compute(&doc(v)).memory_bytes, 10_000_000);
    }
}
