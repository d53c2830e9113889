//! Teams: the one rule for who sees and acts on an engine object, from its labels.
//!
//! Everything Berth creates carries `berth.team`, `berth.owner` and, when a job made it,
//! `berth.job`. A viewer or operator sees and acts on their own team's objects; another
//! team's are absent (404, as if they did not exist). Objects without a `berth.team`
//! label were made outside Berth: team `default`'s, or admin-only (`BERTH_UNMANAGED=admin`),
//! or readable by everyone and changeable by admins only (`read`). Admins reach all.

use std::collections::HashMap;

use super::Rejection;
use super::identity::{DEFAULT_TEAM, Principal};

pub const TEAM_LABEL: &str = "berth.team";
pub const OWNER_LABEL: &str = "berth.owner";
pub const JOB_LABEL: &str = "berth.job";
/// The prefix callers may not set labels under.
pub const RESERVED_PREFIX: &str = "berth.";

/// Who owns unlabelled objects (`BERTH_UNMANAGED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmanaged {
    /// Team `default`'s.
    #[default]
    Default,
    /// Admins' only.
    Admin,
    /// Everyone reads them; only admins act on them.
    Read,
}

/// What a caller may do with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Not even its existence (404).
    None,
    Read,
    Act,
}

/// The one rule: what `who` may do with an object carrying `labels`.
pub fn access(who: &Principal, labels: Option<&HashMap<String, String>>, unmanaged: Unmanaged) -> Access {
    if who.is_admin() {
        return Access::Act;
    }
    match labels.and_then(|l| l.get(TEAM_LABEL)) {
        Some(team) if *team == who.team => Access::Act,
        Some(_) => Access::None,
        None => match unmanaged {
            Unmanaged::Default if who.team == DEFAULT_TEAM => Access::Act,
            Unmanaged::Default | Unmanaged::Admin => Access::None,
            Unmanaged::Read => Access::Read,
        },
    }
}

/// The labels Berth stamps on what it creates for `who` (and for a job).
pub fn stamp(labels: &mut HashMap<String, String>, team: &str, owner: &str, job: Option<&str>) {
    labels.insert(TEAM_LABEL.into(), team.into());
    labels.insert(OWNER_LABEL.into(), owner.into());
    if let Some(job) = job {
        labels.insert(JOB_LABEL.into(), job.into());
    }
}

/// 400 for a caller-set label under `berth.`: those are Berth's to stamp.
pub fn refuse_reserved_labels<'a>(field: &str, keys: impl IntoIterator<Item = &'a String>) -> Result<(), Rejection> {
    match keys.into_iter().find(|k| k.starts_with(RESERVED_PREFIX)) {
        Some(k) => Err(Rejection::invalid(format!(
            "`{field}` may not set `{}`: labels under `berth.` are set by Berth itself (team, owner, job)",
            k.escape_debug()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::Role;

    fn who(team: &str, role: Role) -> Principal {
        Principal { team: team.into(), team_claimed: true, ..Principal::new("s", Some(role), u64::MAX) }
    }

    #[test]
    fn one_rule_for_every_object() {
        let blue: HashMap<String, String> = [(TEAM_LABEL.to_string(), "blue".to_string())].into();
        let op = |t| who(t, Role::Operator);
        assert_eq!(access(&op("blue"), Some(&blue), Unmanaged::Default), Access::Act);
        assert_eq!(access(&op("red"), Some(&blue), Unmanaged::Default), Access::None);
        assert_eq!(access(&who("red", Role::Admin), Some(&blue), Unmanaged::Default), Access::Act);
        assert_eq!(access(&op("default"), None, Unmanaged::Default), Access::Act);
        assert_eq!(access(&op("red"), None, Unmanaged::Default), Access::None);
        assert_eq!(access(&op("default"), None, Unmanaged::Admin), Access::None);
        assert_eq!(access(&op("red"), None, Unmanaged::Read), Access::Read);
        assert_eq!(access(&who("red", Role::Admin), None, Unmanaged::Admin), Access::Act);
    }

    #[test]
    fn callers_may_not_set_berth_labels() {
        let keys = ["app".to_string(), "berth.team".to_string()];
        assert!(refuse_reserved_labels("labels", keys.iter()).unwrap_err().detail.contains("berth.team"));
        assert!(refuse_reserved_labels("labels", ["berthx".to_string()].iter()).is_ok());
    }
}
