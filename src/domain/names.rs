//! Container names and ids, labels and signals.

use super::Rejection;

/// A container id or name as the engine accepts it: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most
/// 128 characters (ids are 64 hex digits, or a prefix of them).
pub fn validate_container_ref(s: &str) -> Result<(), Rejection> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Rejection::invalid(format!(
            "`{}` is not a valid container id or name: use [a-zA-Z0-9][a-zA-Z0-9_.-]*, at most 128 characters",
            s.chars().take(140).collect::<String>().escape_debug()
        )))
    }
}

/// A signal name (`SIGKILL`, `KILL`, `HUP`) or number (`9`).
pub fn validate_signal(s: &str) -> Result<(), Rejection> {
    let ok = !s.is_empty()
        && s.len() <= 16
        && (s.bytes().all(|c| c.is_ascii_digit()) || s.bytes().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'+' || c == b'-'));
    if ok { Ok(()) } else { Err(Rejection::invalid(format!("`{}` is not a signal name or number", s.escape_debug()))) }
}

/// A label filter: `key` or `key=value`, printable, at most 1024 characters.
pub fn validate_label_filter(s: &str) -> Result<(), Rejection> {
    let ok = !s.is_empty() && s.len() <= 1024 && !s.chars().any(char::is_control) && !s.starts_with('=');
    if ok { Ok(()) } else { Err(Rejection::invalid(format!("`{}` is not a label filter (key or key=value)", s.escape_debug()))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_refs() {
        for ok in ["web", "web-1", "a.b_c", "0123abcdef"] {
            assert!(validate_container_ref(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-web", "a/b", "../x", "a b", "a\u{0}", &"x".repeat(129)] {
            assert!(validate_container_ref(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signals_and_labels() {
        for ok in ["SIGKILL", "KILL", "9", "SIGRTMIN+3"] {
            assert!(validate_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["", "kill;rm", "SIG KILL", "abc"] {
            assert!(validate_signal(bad).is_err(), "{bad}");
        }
        assert!(validate_label_filter("a=b").is_ok());
        assert!(validate_label_filter("=b").is_err());
        assert!(validate_label_filter("a\nb").is_err());
    }
}
