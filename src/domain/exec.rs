//! The `exec` request: what `POST /v1/containers/{id}/exec` takes, validated into an
//! [`ExecSpec`], and the control messages of an interactive session.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::policy::reserved_to_admins;
use super::run::check_text;
use super::Rejection;
use crate::error::ErrorCode;

/// Create an exec instance in a running container (`docker exec`). Start it with
/// `GET /v1/exec/{id}/ws`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments (no shell unless you run one).
    #[schema(example = json!(["sh"]))]
    pub cmd: Vec<String>,
    /// Allocate a TTY (`-t`): output is then one raw byte stream, and the session takes
    /// `resize` messages.
    pub tty: Option<bool>,
    /// Extra `KEY=VALUE` environment entries.
    pub env: Option<Vec<String>>,
    /// Working directory (`-w`), absolute.
    pub workdir: Option<String>,
    /// User (`-u`), `name|uid[:group|gid]`; the container's user when absent.
    pub user: Option<String>,
    /// Extended privileges (`--privileged`): reserved to admins.
    pub privileged: Option<bool>,
}

/// A validated exec request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub tty: bool,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub privileged: bool,
}

impl ExecRequest {
    /// Validate, and apply the policy: `privileged` needs admin (403 `policy_violation`).
    pub fn validate(&self, is_admin: bool) -> Result<ExecSpec, Rejection> {
        if self.cmd.is_empty() || self.cmd[0].is_empty() {
            return Err(Rejection::invalid("`cmd` must name a command: a non-empty array such as [\"sh\"]"));
        }
        if self.cmd.len() > 4096 {
            return Err(Rejection::invalid("`cmd` takes at most 4096 arguments"));
        }
        for a in &self.cmd {
            check_text("cmd", a, 64 * 1024)?;
        }
        let env = self.env.clone().unwrap_or_default();
        for e in &env {
            let key = e.split('=').next().unwrap_or("");
            if !e.contains('=')
                || key.is_empty()
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
            {
                return Err(Rejection::invalid(format!(
                    "`env` entries must be KEY=VALUE with KEY of [A-Za-z0-9_.-]; got key `{}`",
                    key.escape_debug()
                )));
            }
            check_text("env", e, 64 * 1024)?;
        }
        for (field, v) in [("workdir", &self.workdir), ("user", &self.user)] {
            if let Some(v) = v {
                check_text(field, v, 4096)?;
                if v.is_empty() || v.chars().any(char::is_control) {
                    return Err(Rejection::invalid(format!("`{field}` must be non-empty, without control characters")));
                }
            }
        }
        if self.workdir.as_ref().is_some_and(|w| !w.starts_with('/')) {
            return Err(Rejection::invalid("`workdir` must be an absolute path"));
        }
        let privileged = self.privileged.unwrap_or(false);
        if privileged && !is_admin {
            return Err(reserved_to_admins("privileged", "a privileged exec gets every capability and the host's devices"));
        }
        Ok(ExecSpec {
            cmd: self.cmd.clone(),
            tty: self.tty.unwrap_or(false),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            privileged,
        })
    }
}

/// A control message from the client: a text frame holding one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientControl {
    /// Resize the TTY (`docker exec`/`attach` do this on SIGWINCH). Only with a TTY.
    Resize {
        /// Columns, 1–10000.
        cols: u16,
        /// Rows, 1–10000.
        rows: u16,
    },
    /// Close the process's stdin (EOF), as `docker exec -i … < file` does at the end of
    /// the file; output keeps flowing until the process ends.
    CloseStdin,
}

/// A control message from the server: a text frame holding one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerControl {
    /// The process ended (the exec's command, or the attached container's main process);
    /// the server then closes with 1000.
    Exit { exit_code: i64 },
    /// The engine ended the attachment while the process goes on (the engine's detach
    /// keys, Ctrl-P Ctrl-Q, were typed); the server then closes with 1000.
    Detached,
    /// Something went wrong. `code` is from the problem catalogue. When the engine
    /// failed (it went away), the server then closes with 1011; otherwise (a bad control
    /// message, input without an open stdin, a refused resize) the session goes on.
    Error { code: ErrorCode, message: String },
}

impl ClientControl {
    /// Parse a text frame; the error says what is accepted.
    pub fn parse(text: &str) -> Result<ClientControl, String> {
        let msg: ClientControl = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a control message ({e}): send {{\"type\":\"resize\",\"cols\":C,\"rows\":R}} or {{\"type\":\"close_stdin\"}}; stdin goes in binary frames"
            )
        })?;
        if let ClientControl::Resize { cols, rows } = msg
            && (!(1..=10_000).contains(&cols) || !(1..=10_000).contains(&rows))
        {
            return Err(format!("`cols` and `rows` must be between 1 and 10000, not {cols}x{rows}"));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cmd: &[&str]) -> ExecRequest {
        ExecRequest { cmd: cmd.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn privileged_is_reserved_to_admins() {
        let r = ExecRequest { privileged: Some(true), ..req(&["sh"]) };
        let e = r.validate(false).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert!(e.detail.contains("`privileged`"), "{}", e.detail);
        assert!(r.validate(true).unwrap().privileged);
        assert!(!req(&["sh"]).validate(false).unwrap().privileged);
    }

    #[test]
    fn rejects_bad_fields() {
        for r in [
            req(&[]),
            req(&[""]),
            ExecRequest { env: Some(vec!["=x".into()]), ..req(&["sh"]) },
            ExecRequest { env: Some(vec!["NOVALUE".into()]), ..req(&["sh"]) },
            ExecRequest { workdir: Some("rel".into()), ..req(&["sh"]) },
            ExecRequest { user: Some("a\nb".into()), ..req(&["sh"]) },
            ExecRequest { user: Some(String::new()), ..req(&["sh"]) },
            req(&["sh", "a\0b"]),
        ] {
            assert_eq!(r.validate(true).unwrap_err().code, ErrorCode::InvalidRequest, "{r:?}");
        }
        let spec =
            ExecRequest { env: Some(vec!["A=1".into()]), tty: Some(true), ..req(&["sh"]) }.validate(false).unwrap();
        assert_eq!((spec.env, spec.tty), (vec!["A=1".to_string()], true));
    }

    #[test]
    fn control_messages() {
        assert_eq!(
            ClientControl::parse(r#"{"type":"resize","cols":101,"rows":33}"#),
            Ok(ClientControl::Resize { cols: 101, rows: 33 })
        );
        assert_eq!(ClientControl::parse(r#"{"type":"close_stdin"}"#), Ok(ClientControl::CloseStdin));
        for bad in [
            r#"{"type":"resize","cols":0,"rows":3}"#,
            r#"{"type":"resize","cols":70000,"rows":3}"#,
            r#"{"type":"nope"}"#,
            "ls\n",
            "",
        ] {
            assert!(ClientControl::parse(bad).is_err(), "{bad}");
        }
        let exit = serde_json::to_value(ServerControl::Exit { exit_code: 5 }).unwrap();
        assert_eq!(exit, serde_json::json!({"type": "exit", "exit_code": 5}));
        let err = serde_json::to_value(ServerControl::Error { code: ErrorCode::InvalidRequest, message: "m".into() })
            .unwrap();
        assert_eq!(err, serde_json::json!({"type": "error", "code": "invalid_request", "message": "m"}));
        assert_eq!(serde_json::to_value(ServerControl::Detached).unwrap(), serde_json::json!({"type": "detached"}));
    }
}
