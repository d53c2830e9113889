//! Image references, parsed and validated before they reach the engine.
//!
//! Grammar (the one Docker's `distribution/reference` implements):
//! `[host[:port]/]path[:tag][@algorithm:hex]`. Lower-case path components, tags of at
//! most 128 word characters, names of at most 255 characters. Control characters, `..`
//! and anything else outside the grammar are refused with `invalid_reference`.

use std::fmt;

use super::Rejection;
use crate::error::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with port), when the reference names one.
    pub domain: Option<String>,
    /// Repository path, e.g. `team/app` or `busybox`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid image reference: {why}")]
pub struct RefError {
    pub input: String,
    pub why: &'static str,
}

impl crate::error::HasCode for RefError {
    fn code(&self) -> ErrorCode {
        ErrorCode::InvalidReference
    }
}

impl From<RefError> for Rejection {
    fn from(e: RefError) -> Self {
        Rejection::new(ErrorCode::InvalidReference, e.to_string())
    }
}

fn is_domain_component(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_domain(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (s, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty() && host.split('.').all(is_domain_component)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn is_digest(s: &str) -> bool {
    let Some((alg, hex)) = s.split_once(':') else { return false };
    let alg_ok = !alg.is_empty()
        && alg.as_bytes()[0].is_ascii_alphabetic()
        && alg.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_+.".contains(&c));
    alg_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<Self, RefError> {
        let err = |why| RefError { input: input.chars().take(300).collect(), why };
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        if input.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(err("it contains whitespace or control characters"));
        }
        if input.len() > 512 {
            return Err(err("it is longer than 512 characters"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                if !is_digest(d) {
                    return Err(err("the digest must be algorithm:hex (e.g. sha256:<64 hex digits>)"));
                }
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !is_tag(t) {
                    return Err(err("the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -"));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(err("the repository name is missing"));
        }
        if name.len() > 255 {
            return Err(err("the repository name is longer than 255 characters"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                // Not "or has an upper-case letter": newer Docker reads `Foo/app` as host `Foo`,
                // but Engine 20.10 refuses it (with a 500 on tag), so it is invalid here.
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                if !is_domain(first) {
                    return Err(err("the registry host is not a valid host[:port]"));
                }
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        if path.is_empty() || !path.split('/').all(is_path_component) {
            return Err(err(
                "each repository path component must be lower-case letters and digits, separated by '.', '_', '__' or '-'",
            ));
        }
        Ok(ImageRef { domain, path: path.to_string(), tag, digest })
    }

    /// The repository: `[domain/]path`.
    pub fn repository(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The registry host credentials are looked up by (`docker.io` when none is named).
    pub fn registry_host(&self) -> &str {
        self.domain.as_deref().unwrap_or("docker.io")
    }

    /// The tag, or `latest` when neither tag nor digest is given.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A reference or an image id (`sha256:<hex>` or a hex prefix), as inspect and remove take.
pub fn validate_reference_or_id(input: &str) -> Result<(), RefError> {
    if let Some(hex) = input.strip_prefix("sha256:") {
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Ok(());
        }
        // Not a repository named `sha256` with a tag: an id that is not hex.
        return Err(RefError {
            input: input.chars().take(300).collect(),
            why: "an image id is `sha256:` followed by at most 64 hex digits",
        });
    }
    ImageRef::parse(input).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_references() {
        let cases = [
            ("busybox", None, "busybox", None, None),
            ("busybox:1.36", None, "busybox", Some("1.36"), None),
            ("library/busybox:latest", None, "library/busybox", Some("latest"), None),
            ("127.0.0.1:5000/team/app:1.2", Some("127.0.0.1:5000"), "team/app", Some("1.2"), None),
            ("localhost/app", Some("localhost"), "app", None, None),
            ("ghcr.io/org/a-b_c.d__e:v1", Some("ghcr.io"), "org/a-b_c.d__e", Some("v1"), None),
            ("localhost:5000/app", Some("localhost:5000"), "app", None, None),
            ("berth-test/busybox:latest", None, "berth-test/busybox", Some("latest"), None),
        ];
        for (input, domain, path, tag, digest) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.domain.as_deref(), domain, "{input}");
            assert_eq!(r.path, path, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
            assert_eq!(r.to_string(), input);
        }
        let d = format!("app@sha256:{}", "a".repeat(64));
        assert_eq!(ImageRef::parse(&d).unwrap().digest.unwrap(), format!("sha256:{}", "a".repeat(64)));
        let d = format!("reg:5000/app:1@sha256:{}", "b".repeat(64));
        let r = ImageRef::parse(&d).unwrap();
        assert_eq!((r.domain.as_deref(), r.tag.as_deref()), (Some("reg:5000"), Some("1")));
    }

    #[test]
    fn refuses_invalid_references() {
        for input in [
            "",
            "UPPER",
            "app:",
            ":tag",
            "app:-tag",
            "../etc/passwd",
            "a/../b",
            "app\n",
            "app\u{7}",
            "a b",
            "app//x",
            "/app",
            "app/",
            "app@sha256:xyz",
            "reg:99999999/app",
            "app:tag:tag",
            "-app",
            "a..b",
            "Upper/app",
        ] {
            assert!(ImageRef::parse(input).is_err(), "accepted {input:?}");
        }
        assert!(ImageRef::parse(&"a".repeat(256)).is_err());
        assert!(ImageRef::parse(&format!("app:{}", "t".repeat(129))).is_err());
    }

    #[test]
    fn ids_and_registry_hosts() {
        assert!(validate_reference_or_id("sha256:0123abcd").is_ok());
        assert!(validate_reference_or_id("sha256:zz").is_err());
        assert_eq!(ImageRef::parse("busybox").unwrap().registry_host(), "docker.io");
        assert_eq!(ImageRef::parse("127.0.0.1:5000/a").unwrap().registry_host(), "127.0.0.1:5000");
        assert_eq!(ImageRef::parse("a").unwrap().tag_or_latest(), "latest");
    }
}
