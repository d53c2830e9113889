//! The engine's errors, and how bollard's map onto them.

/// Which kind of object a 404 was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Image,
    Container,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Docker engine unavailable: {0}")]
    Unavailable(String),
    #[error("{message}")]
    NotFound { kind: ObjectKind, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Docker(String),
    /// A registry refused a pull or push: bad or missing credentials.
    #[error("{0}")]
    RegistryRefused(String),
}

impl crate::error::HasCode for EngineError {
    fn code(&self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            EngineError::Unavailable(_) => ErrorCode::DockerUnavailable,
            EngineError::NotFound { kind: ObjectKind::Image, .. } => ErrorCode::ImageNotFound,
            EngineError::NotFound { kind: ObjectKind::Container, .. } => ErrorCode::ContainerNotFound,
            EngineError::NotFound { kind: ObjectKind::Other, .. } => ErrorCode::NotFound,
            EngineError::Conflict(_) => ErrorCode::Conflict,
            EngineError::BadRequest(_) => ErrorCode::InvalidRequest,
            EngineError::Docker(_) => ErrorCode::DockerError,
            EngineError::RegistryRefused(_) => ErrorCode::RegistryAuthFailed,
        }
    }
    fn detail(&self) -> String {
        match self {
            EngineError::Unavailable(msg) => format!("The Docker engine does not answer: {msg}"),
            other => other.to_string(),
        }
    }
    fn retry_after(&self) -> Option<u64> {
        self.is_unavailable().then_some(5)
    }
}

impl EngineError {
    /// The 404 of a container `given` names none of: the same words whether it is absent
    /// or hidden from the caller (another team's).
    pub fn container_not_found(given: &str) -> Self {
        EngineError::NotFound {
            kind: ObjectKind::Container,
            message: format!(
                "No such container: {given} (give a name, or an id or id prefix of at least {} characters)",
                super::MIN_ID_PREFIX
            ),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, EngineError::Unavailable(_))
    }

    pub(super) fn from_bollard(kind: ObjectKind, e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError { status_code, message } => Self::from_status(status_code, kind, message),
            B::SocketNotFoundError(path) => EngineError::Unavailable(format!("no socket at {path}")),
            B::HyperLegacyError { err } => EngineError::Unavailable(format!("{err}")),
            B::IOError { err } => EngineError::Unavailable(err.to_string()),
            B::RequestTimeoutError => EngineError::Unavailable("the engine did not answer in time".into()),
            // The connection broke while a body was streaming: the engine went away.
            B::HyperResponseError { err } => EngineError::Unavailable(format!("the engine connection broke: {err}")),
            B::DockerStreamError { error } => EngineError::Docker(error),
            other => EngineError::Docker(other.to_string()),
        }
    }

    /// An engine answer that is not a success, by its status: 404, 409 and 400 as such,
    /// anything else a Docker error.
    pub(super) fn from_status(status: u16, kind: ObjectKind, message: String) -> Self {
        match status {
            404 => EngineError::NotFound { kind, message },
            409 => EngineError::Conflict(message),
            400 => EngineError::BadRequest(message),
            // The engine answers 500 for a container that is being removed (or a removal
            // already under way): the state of the object, not a failure of the engine.
            _ if is_state_conflict(&message) => EngineError::Conflict(message),
            _ => EngineError::Docker(message),
        }
    }

    pub(super) fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Self {
        EngineError::Unavailable(format!("{what}: {e}"))
    }
}

/// Engine messages that say the object is in a state that forbids the action.
fn is_state_conflict(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["marked for removal", "removal of container", "is already in progress", "is restarting"].iter().any(|p| m.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_being_removed_is_a_conflict() {
        let e = EngineError::from_status(500, ObjectKind::Container, "Cannot restart container x: container is marked for removal and cannot be started".into());
        assert!(matches!(e, EngineError::Conflict(_)), "{e:?}");
        let e = EngineError::from_status(500, ObjectKind::Container, "something else broke".into());
        assert!(matches!(e, EngineError::Docker(_)));
    }
}
