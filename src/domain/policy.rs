//! The run policy beyond roles: which images may be run, pulled and pushed, and the
//! resource limits a container gets when it asks for none.

use super::ImageRef;
use super::Rejection;
use crate::error::ErrorCode;

#[derive(Debug, Clone, Default)]
pub struct RunPolicy {
    /// Glob patterns (`*` matches anything, `/` included) over image references; empty:
    /// every image is allowed.
    pub allowed_images: Vec<String>,
    pub default_memory_bytes: Option<i64>,
    pub default_nano_cpus: Option<i64>,
}

fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

impl RunPolicy {
    /// The forms an image is known by: `repo`, `repo:tag`, and for Docker Hub images
    /// also `docker.io/library/name:tag`.
    fn names(image: &ImageRef) -> Vec<String> {
        let repo = image.repository();
        // A digest-only reference has no tag: it must not pass as `:latest`.
        let tag = match (&image.tag, &image.digest) {
            (Some(t), _) => Some(t.as_str()),
            (None, Some(_)) => None,
            (None, None) => Some("latest"),
        };
        let hub = image.domain.is_none().then(|| {
            let path = if image.path.contains('/') { image.path.clone() } else { format!("library/{}", image.path) };
            format!("docker.io/{path}")
        });
        let mut names = Vec::new();
        for r in std::iter::once(repo).chain(hub) {
            names.push(r.clone());
            if let Some(t) = tag {
                names.push(format!("{r}:{t}"));
            }
            if let Some(d) = &image.digest {
                names.push(format!("{r}@{d}"));
            }
        }
        names
    }

    /// 403 `policy_violation` unless the image matches an allowed pattern.
    pub fn check_image(&self, image: &ImageRef, action: &str) -> Result<(), Rejection> {
        if self.allowed_images.is_empty() {
            return Ok(());
        }
        let names = Self::names(image);
        if self.allowed_images.iter().any(|p| names.iter().any(|n| glob(p, n))) {
            return Ok(());
        }
        Err(Rejection::new(
            ErrorCode::PolicyViolation,
            format!(
                "`image` {image} may not be used to {action}: it matches none of BERTH_ALLOWED_IMAGES ({})",
                self.allowed_images.join(", ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "anything/at:all"));
        assert!(glob("127.0.0.1:5000/*", "127.0.0.1:5000/team/app:1"));
        assert!(glob("berth-test/*:1.*", "berth-test/app:1.2"));
        assert!(!glob("berth-test/*:1.*", "berth-test/app:2.0"));
        assert!(!glob("team/app", "team/app2"));
        assert!(glob("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn allow_list() {
        let open = RunPolicy::default();
        assert!(open.check_image(&ImageRef::parse("x").unwrap(), "run").is_ok());
        let p = RunPolicy { allowed_images: vec!["127.0.0.1:5000/*".into(), "docker.io/library/busybox:*".into()], ..Default::default() };
        assert!(p.check_image(&ImageRef::parse("127.0.0.1:5000/team/app:1").unwrap(), "run").is_ok());
        assert!(p.check_image(&ImageRef::parse("busybox:1.36").unwrap(), "pull").is_ok());
        let tagged = RunPolicy { allowed_images: vec!["team/app:latest".into()], ..Default::default() };
        let digest = format!("team/app@sha256:{}", "a".repeat(64));
        assert!(tagged.check_image(&ImageRef::parse(&digest).unwrap(), "run").is_err(), "a digest is not :latest");
        assert!(tagged.check_image(&ImageRef::parse("team/app").unwrap(), "run").is_ok());
        let e = p.check_image(&ImageRef::parse("evil/app").unwrap(), "push").unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert!(e.detail.contains("evil/app") && e.detail.contains("BERTH_ALLOWED_IMAGES"), "{}", e.detail);
    }
}
