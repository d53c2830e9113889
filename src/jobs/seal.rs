//! Seals on job rows: an HMAC over what a job may do (id, owner, kind, authority, spool
//! path, request and host), made at submit with a key that never lives in the data dir. A
//! row written or changed behind the API's back (someone with the data volume) does
//! not verify and is never run.

use hmac::{KeyInit, Mac};

use super::{JobKind, Role};

type Hmac = hmac::Hmac<sha2::Sha256>;

/// What a seal covers.
pub struct Sealed<'a> {
    pub id: &'a str,
    pub owner: &'a str,
    pub team: &'a str,
    pub kind: JobKind,
    pub authority: Role,
    pub spool: Option<&'a str>,
    pub request: &'a str,
    /// The engine it runs on; empty for rows from before jobs had a host (sealed without
    /// it, so their seals still verify; a host written into such a row breaks its seal).
    pub host: &'a str,
}

fn mac(key: &[u8], s: &Sealed) -> Hmac {
    let mut mac = Hmac::new_from_slice(key).expect("HMAC takes any key length");
    for part in [s.id, s.owner, s.team, s.kind.as_str(), s.authority.as_str(), s.spool.unwrap_or(""), s.request] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    if !s.host.is_empty() {
        mac.update(b"host");
        mac.update(&(s.host.len() as u64).to_be_bytes());
        mac.update(s.host.as_bytes());
    }
    mac
}

/// The seal of a new row, hex.
pub fn seal(key: &[u8], what: &Sealed) -> String {
    let bytes = mac(key, what).finalize().into_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Does a stored row carry the seal of what it holds? Constant-time comparison.
pub fn verify(key: &[u8], job: &super::Job) -> bool {
    let (Some(seal), Some(authority)) = (job.seal.as_deref(), job.authority) else { return false };
    let Some(expected) = decode_hex(seal) else { return false };
    let request = job.request.to_string();
    let what = Sealed {
        id: &job.id,
        owner: &job.owner,
        team: &job.team,
        kind: job.kind,
        authority,
        spool: job.spool.as_deref(),
        request: &request,
        host: &job.host,
    };
    mac(key, &what).verify_slice(&expected).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_breaks_the_seal() {
        let key = b"k".repeat(32);
        let request = serde_json::json!({"image": "busybox", "privileged": false});
        let mut job: super::super::Job = serde_json::from_value(serde_json::json!({
            "id": "01J", "kind": "run", "state": "queued", "owner": "alice", "created_at": "t",
            "started_at": null, "finished_at": null, "request": request,
            "progress": {"phase": "queued", "current": null, "total": null, "percent": null, "layers_done": 0, "layers_total": 0, "message": null},
            "result": null, "error": null
        }))
        .unwrap();
        job.authority = Some(Role::Operator);
        let text = request.to_string();
        let what = Sealed { id: "01J", owner: "alice", team: "default", kind: JobKind::Run, authority: Role::Operator, spool: None, request: &text, host: "" };
        job.seal = Some(seal(&key, &what));
        assert!(verify(&key, &job));
        assert!(!verify(b"another key", &job));
        let mut forged = job.clone();
        forged.request["privileged"] = serde_json::json!(true);
        assert!(!verify(&key, &forged), "a changed request");
        let mut forged = job.clone();
        forged.authority = Some(Role::Admin);
        assert!(!verify(&key, &forged), "a raised authority");
        let mut forged = job.clone();
        forged.team = "other".into();
        assert!(!verify(&key, &forged), "a moved team");
        let mut forged = job.clone();
        forged.spool = Some("/etc/passwd".into());
        assert!(!verify(&key, &forged), "a planted spool path");
        let mut forged = job.clone();
        forged.host = "b".into();
        assert!(!verify(&key, &forged), "a host written into a row sealed without one");
        let what = Sealed { host: "a", ..what };
        job.host = "a".into();
        job.seal = Some(seal(&key, &what));
        assert!(verify(&key, &job), "a row sealed with its host");
        let mut forged = job.clone();
        forged.host = "b".into();
        assert!(!verify(&key, &forged), "a moved host");
        forged.host = String::new();
        assert!(!verify(&key, &forged), "a host taken out");
        let mut unsealed = job.clone();
        unsealed.seal = None;
        assert!(!verify(&key, &unsealed));
    }
}
