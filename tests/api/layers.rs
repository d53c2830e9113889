//! The layering of `src/`, checked on the source text (std only, no build needed).
//!
//! A top-level module is the first path segment under `src/` (`foo.rs` or `foo/`;
//! `lib.rs` and `main.rs` are not modules). Its references are the `crate::<module>`
//! paths in its code, `use crate::{a, b::c}` groups included. Comments and string
//! literals are not code, and neither are `#[cfg(test)]` items (the item after the
//! attribute is skipped up to its closing brace, so a test module in the middle of a
//! file hides nothing after it). The rules:
//! - the module graph has no cycle;
//! - `domain`, `jobs`, `store` and `docker` never name `ApiError`, `crate::api` or
//!   `crate::startup` (nothing below the HTTP edge knows HTTP);
//! - only `docker/` names `bollard`, only `store/` names `rusqlite`;
//! - `error.rs` (the code table) references no `crate::` path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// One file of `src/`: its top-level module, its path under `src/`, and its code
/// without comments, string literals and test items.
struct Source {
    module: String,
    path: String,
    code: String,
}

/// The modules below the HTTP edge.
const BELOW_THE_EDGE: [&str; 4] = ["domain", "jobs", "store", "docker"];

#[test]
fn src_keeps_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let sources = sources(&root);
    let graph = graph(&sources);
    // The parser sees the crate: a graph without these edges means it read nothing.
    for (from, to) in [("startup", "api"), ("api", "error"), ("jobs", "store")] {
        assert!(graph.get(from).is_some_and(|t| t.contains(to)), "{from} -> {to} expected in\n{}", show(&graph));
    }
    let problems = violations(&sources);
    assert!(problems.is_empty(), "layering broken:\n- {}\n\nmodule graph:\n{}", problems.join("\n- "), show(&graph));
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph = graph_of(&[("api", &["jobs", "error"]), ("jobs", &["store"]), ("store", &["api"]), ("error", &[])]);
    let cycle = find_cycle(&graph).expect("api -> jobs -> store -> api is a cycle");
    assert_eq!(cycle, ["api", "jobs", "store", "api"]);
    let graph = graph_of(&[("startup", &["api", "jobs"]), ("api", &["jobs", "error"]), ("jobs", &["error"])]);
    assert_eq!(find_cycle(&graph), None, "a diamond is not a cycle");
    assert_eq!(find_cycle(&graph_of(&[("a", &["a"])])), None, "a module referring to itself is no edge");
}

/// Every rule fails on a tree that breaks it.
#[test]
fn every_rule_can_fail() {
    let tree = [
        ("error.rs", "use crate::telemetry::current_request_id;\n"),
        ("telemetry.rs", "use crate::{config::Settings, error::ErrorCode};\n"),
        ("config.rs", "pub fn f() -> crate::error::ErrorCode { todo!() }\n"),
        ("domain/mod.rs", "use crate::api::problem::ApiError;\n"),
        ("jobs/mod.rs", "fn f(e: ApiError) {}\nuse rusqlite::Connection;\n"),
        ("store/sqlite.rs", "use bollard::Docker;\n"),
        ("docker/mod.rs", "pub fn f() { crate::startup::openapi(); }\n"),
        ("api/mod.rs", "use crate::jobs;\n"),
    ];
    let sources: Vec<Source> = tree.iter().map(|(path, text)| source(path, text).unwrap()).collect();
    let problems = violations(&sources).join("\n");
    for expected in [
        "cycle: config -> error -> telemetry -> config",
        "domain/mod.rs references crate::api",
        "jobs/mod.rs names ApiError",
        "docker/mod.rs references crate::startup",
        "store/sqlite.rs names bollard",
        "jobs/mod.rs names rusqlite",
        "error.rs references crate::",
    ] {
        assert!(problems.contains(expected), "expected `{expected}` in:\n{problems}");
    }
}

#[test]
fn comments_strings_and_test_items_are_not_code() {
    let text = r###"
//! Nothing here may name ApiError or crate::api.
use crate::{config::{self, Settings}, domain::job::Job, self as me};
/* a block /* nested */ crate::startup */
const S: &str = "crate::jobs { ApiError";
const R: &str = r#"crate::store " }"#;
const C: char = '{';
const Q: (char, &str) = ('\'', "a \" crate::jobs");
fn f<'a>(x: &'a str) -> &'a str { x }
#[cfg(test)]
mod until_tests {
    use crate::api::problem::ApiError;
    fn g() { let _ = '}'; }
}
pub fn after() -> crate::metrics::Metrics { $crate::error::x() }
#[cfg(test)]
use crate::sessions::Hub;
"###;
    let src = source("domain/requests.rs", text).unwrap();
    assert_eq!(src.module, "domain");
    assert!(!src.code.contains("ApiError"), "{}", src.code);
    let refs: Vec<String> = references(&src.code).into_iter().collect();
    assert_eq!(refs, ["config", "domain", "error", "metrics"]);
}

fn violations(sources: &[Source]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(cycle) = find_cycle(&graph(sources)) {
        problems.push(format!("cycle: {}", cycle.join(" -> ")));
    }
    for src in sources {
        let refs = references(&src.code);
        let in_dir = |dir: &str| src.path.starts_with(&format!("{dir}/"));
        if BELOW_THE_EDGE.contains(&src.module.as_str()) {
            for edge in ["api", "startup"] {
                if refs.contains(edge) {
                    problems.push(format!("{} references crate::{edge}", src.path));
                }
            }
            if names(&src.code, "ApiError") {
                problems.push(format!("{} names ApiError", src.path));
            }
        }
        if !in_dir("docker") && names(&src.code, "bollard") {
            problems.push(format!("{} names bollard (only docker/ talks to the engine)", src.path));
        }
        if !in_dir("store") && names(&src.code, "rusqlite") {
            problems.push(format!("{} names rusqlite (only store/ holds SQL)", src.path));
        }
        if src.path == "error.rs" {
            for other in refs.iter().filter(|m| *m != "error") {
                problems.push(format!("error.rs references crate::{other}: the code table imports nothing of ours"));
            }
        }
    }
    problems
}

/// Every `.rs` file under `root`, read and prepared.
fn sources(root: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    walk(root, &mut files);
    files.sort();
    files
        .iter()
        .filter_map(|file| {
            let rel = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            source(&rel, &text)
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `None` for `lib.rs` and `main.rs`, which are not modules.
fn source(rel: &str, text: &str) -> Option<Source> {
    let first = rel.split('/').next().unwrap();
    let module = first.strip_suffix(".rs").unwrap_or(first);
    if rel == "lib.rs" || rel == "main.rs" {
        return None;
    }
    Some(Source { module: module.to_string(), path: rel.to_string(), code: drop_test_items(&strip(text)) })
}

fn graph(sources: &[Source]) -> Graph {
    let mut graph = Graph::new();
    for src in sources {
        let edges = graph.entry(src.module.clone()).or_default();
        edges.extend(references(&src.code).into_iter().filter(|m| *m != src.module));
    }
    graph
}

/// The first cycle found, as `a -> b -> … -> a`; modules are visited in name order,
/// so the answer is stable.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit<'g>(node: &'g str, graph: &'g Graph, path: &mut Vec<&'g str>, done: &mut BTreeSet<&'g str>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[i..].iter().map(|n| n.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if next.as_str() != node {
                if let Some(cycle) = visit(next, graph, path, done) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// The top-level modules named by `crate::x` (or `$crate::x`) paths, groups included.
fn references(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            refs.extend(group_heads(group));
        } else {
            refs.insert(ident(after).to_string());
        }
    }
    refs.retain(|m| !m.is_empty() && m != "self");
    refs
}

/// The first segment of each path in a `{a::b, c, d::{e, f}}` group (after its `{`).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut chars = group.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_head = true,
            c if c.is_whitespace() => {}
            _ if expect_head && depth == 0 => {
                let head = ident(&group[i..]);
                heads.push(head.to_string());
                expect_head = false;
                for _ in 1..head.chars().count() {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    heads
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// Whether `word` occurs in `code` as a whole identifier.
fn names(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        let after = code[i + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The text with comments blanked and string and char literals emptied; newlines kept.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| chars.get(i + k) == Some(&c));
    while i < chars.len() {
        let c = chars[i];
        let prev_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if at(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let mut depth = 0;
            while i < chars.len() {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
            out.push(' ');
        } else if !prev_is_ident && (c == 'r' || (c == 'b' && chars.get(i + 1) == Some(&'r'))) && raw_string_start(&chars, i).is_some() {
            let (hashes, body) = raw_string_start(&chars, i).unwrap();
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            i = body;
            while i < chars.len() && !at(i, &close) {
                i += 1;
            }
            i += close.chars().count();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && char_literal_len(&chars, i).is_some() {
            i += char_literal_len(&chars, i).unwrap();
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `r"`, `r#"`, `br##"`…: the number of `#` and where the body starts.
fn raw_string_start(chars: &[char], mut i: usize) -> Option<(usize, usize)> {
    if chars[i] == 'b' {
        i += 1;
    }
    i += 1; // the `r`
    let mut hashes = 0;
    while chars.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    (chars.get(i) == Some(&'"')).then_some((hashes, i + 1))
}

/// At a `'`: the length of the char literal starting there, or `None` for a lifetime.
fn char_literal_len(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1)? {
        '\\' => {
            let mut j = i + 3;
            while j < chars.len() && chars[j] != '\'' && chars[j] != '\n' {
                j += 1;
            }
            (chars.get(j) == Some(&'\'')).then_some(j + 1 - i)
        }
        _ => (chars.get(i + 2) == Some(&'\'')).then_some(3),
    }
}

/// Removes each `#[cfg(test)]` item: the attribute up to the item's `;`, or up to the
/// brace that closes its first `{`.
fn drop_test_items(code: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(i) = rest.find(ATTR) {
        out.push_str(&rest[..i]);
        let item = &rest[i + ATTR.len()..];
        let mut depth = 0usize;
        let mut end = item.len();
        for (j, c) in item.char_indices() {
            match c {
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn graph_of(edges: &[(&str, &[&str])]) -> Graph {
    edges.iter().map(|(from, to)| (from.to_string(), to.iter().map(|t| t.to_string()).collect())).collect()
}

fn show(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(from, to)| format!("  {from} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}
