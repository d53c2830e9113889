//! Teams at the edge: every container route reaches its container through [`container`],
//! and the list through [`visible`], so the one rule ([`crate::domain::scope::access`])
//! is applied in one place. A container the caller may not even see answers 404
//! `container_not_found` in the very words of an absent one; one they may read but not
//! change (`BERTH_UNMANAGED=read`) answers an action with 403 `forbidden`.

use std::collections::HashMap;

use super::problem::{ApiError, ApiResult};
use crate::auth::Principal;
use crate::docker::{ContainerSummary, EngineError};
use crate::domain::scope::{Access, access};
use crate::error::ErrorCode;
use crate::state::AppState;

/// What a route does with the container: read it (inspect, logs) or act on it
/// (start/stop/restart/kill, remove, exec, attach).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    Read,
    Act,
}

/// A container the caller may use as the route needs.
pub(crate) struct Scoped {
    /// The full id.
    pub id: String,
    /// The engine's inspect document.
    pub doc: serde_json::Value,
}

/// Resolve the container `given` names (name, id or id prefix) and check that `who` may
/// `need` it.
pub(crate) async fn container(state: &AppState, who: &Principal, given: &str, need: Need) -> ApiResult<Scoped> {
    let doc = state.engine.inspect_container(given).await?;
    let labels: Option<HashMap<String, String>> =
        doc.pointer("/Config/Labels").and_then(|l| serde_json::from_value(l.clone()).ok());
    let id = doc.get("Id").and_then(|v| v.as_str()).unwrap_or(given).to_string();
    match (access(who, labels.as_ref(), state.settings.unmanaged), need) {
        (Access::None, _) => Err(EngineError::container_not_found(given).into()),
        (Access::Read, Need::Act) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "Container {id} was not made through Berth (no `berth.team` label): everyone may read it, only the \
                 admin role acts on it (BERTH_UNMANAGED=read)."
            ),
        )),
        _ => Ok(Scoped { id, doc }),
    }
}

/// The containers of a list `who` may see (at least read).
pub(crate) fn visible(state: &AppState, who: &Principal, list: Vec<ContainerSummary>) -> Vec<ContainerSummary> {
    let unmanaged = state.settings.unmanaged;
    list.into_iter().filter(|c| access(who, Some(&c.labels), unmanaged) != Access::None).collect()
}

/// A list's label filters with `team=` folded in (`berth.team=<team>`), each checked:
/// what the engine gets.
pub(crate) fn label_filters(label: &[String], team: Option<&str>) -> ApiResult<Vec<String>> {
    for l in label {
        crate::domain::names::validate_label_filter(l)?;
    }
    let mut label = label.to_vec();
    if let Some(team) = team {
        if !crate::domain::identity::is_team_name(team) {
            return Err(ApiError::invalid("`team` must be a team name: [a-z0-9][a-z0-9_.-]{0,62}"));
        }
        label.push(format!("{}={team}", crate::domain::scope::TEAM_LABEL));
    }
    Ok(label)
}

/// An object the caller may `need`, by its [`Access`]: 404 (`absent`) when they may not
/// see it, 403 `forbidden` (`read_only`, why) when they may read but not change it.
pub(crate) fn require<T>(object: T, access: Access, need: Access, absent: impl FnOnce() -> ApiError, read_only: impl FnOnce() -> String) -> ApiResult<T> {
    match access {
        Access::None => Err(absent()),
        Access::Read if need == Access::Act => Err(ApiError::new(ErrorCode::Forbidden, read_only())),
        _ => Ok(object),
    }
}
