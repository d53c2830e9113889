//! Exec instances (`docker exec`): create, inspect, start attached, resize.

use bollard::models::ExecConfig;
use bollard::query_parameters as qp;

use super::stdio::{MAX_CHUNK, stdio_from_bollard, stdio_from_io};
use super::{DockerEngine, EngineError, ObjectKind, Result, Stdio};
use crate::domain::exec::ExecSpec;

/// An exec instance, as the engine reports it.
#[derive(Debug, Clone)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub running: bool,
    /// Set once the process ended.
    pub exit_code: Option<i64>,
    pub tty: bool,
    pub open_stdin: bool,
    /// Whether it was ever started: an exec instance starts once.
    pub started: bool,
}

impl DockerEngine {
    pub(super) async fn create_exec(&self, container: &str, spec: &ExecSpec) -> Result<String> {
        let d = self.docker().await?;
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            cmd: Some(spec.cmd.clone()),
            privileged: Some(spec.privileged),
            user: spec.user.clone(),
            working_dir: spec.workdir.clone(),
            ..Default::default()
        };
        let res = d.create_exec(container, config).await.map_err(|e| self.fail(ObjectKind::Container, e))?;
        Ok(res.id)
    }

    pub(super) async fn inspect_exec(&self, id: &str) -> Result<ExecInfo> {
        let d = self.docker().await?;
        let e = d.inspect_exec(id).await.map_err(|e| self.fail(ObjectKind::Other, e))?;
        let running = e.running.unwrap_or(false);
        Ok(ExecInfo {
            id: e.id.unwrap_or_else(|| id.to_string()),
            container_id: e.container_id.unwrap_or_default(),
            running,
            exit_code: e.exit_code,
            tty: e.process_config.and_then(|p| p.tty).unwrap_or(false),
            open_stdin: e.open_stdin.unwrap_or(false),
            // A started exec has a pid (while it runs) or an exit code (once it ended).
            started: running || e.exit_code.is_some() || e.pid.is_some_and(|p| p > 0),
        })
    }

    pub(super) async fn start_exec_stdio(&self, id: &str, tty: bool) -> Result<Stdio> {
        let d = self.docker().await?;
        if self.speaks_raw() {
            let path = Self::versioned(&d, &format!("/exec/{id}/start"));
            let body = serde_json::json!({"Detach": false, "Tty": tty}).to_string();
            let io = super::raw::hijack(self.host(), &path, body, ObjectKind::Other)
                .await
                .map_err(|e| self.forget_if_unavailable(e))?;
            return Ok(stdio_from_io(io, tty));
        }
        let opts = bollard::exec::StartExecOptions { detach: false, tty, output_capacity: Some(MAX_CHUNK) };
        match d.start_exec(id, Some(opts)).await.map_err(|e| self.fail(ObjectKind::Other, e))? {
            bollard::exec::StartExecResults::Attached { output, input } => Ok(stdio_from_bollard(output, input, tty)),
            bollard::exec::StartExecResults::Detached => {
                Err(EngineError::Docker("the engine started the exec detached".into()))
            }
        }
    }

    pub(super) async fn resize_exec(&self, id: &str, cols: u16, rows: u16) -> Result<()> {
        let d = self.docker().await?;
        let opts = qp::ResizeExecOptions { w: cols.into(), h: rows.into() };
        d.resize_exec(id, opts).await.map_err(|e| self.fail(ObjectKind::Other, e))
    }
}
