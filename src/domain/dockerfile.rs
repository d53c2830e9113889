//! The Dockerfile of an uploaded build context, read before the build is queued: which
//! images the build pulls (`FROM`, `COPY --from`) and which URLs the engine fetches for it
//! (`ADD <url>`), from the host's network namespace, loopback included.
//!
//! Two readings must agree with the engine's, or a check here is a check of some other
//! file than the one built:
//! - which file is the Dockerfile: the context is a tar (or gzip tar) extracted in order,
//!   a later entry replacing an earlier one, names cleaned, symbolic links followed inside
//!   the context, and `Dockerfile` falling back to `dockerfile`. What this reader cannot
//!   follow exactly (hard links to it, entries written through a linked directory, another
//!   compression) is refused rather than guessed at.
//! - what the Dockerfile says: line continuations with comments and blank lines inside,
//!   flags, the JSON form, `ONBUILD`, the shell lexer's quotes, escapes and `${VAR}`
//!   forms. Where builders differ (the escape token a directive sets, heredocs, an escaped
//!   escape at the end of a line), every way is read and what any reading finds is
//!   checked: a Dockerfile cannot be written so that the check reads one thing and the
//!   engine another.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};

use super::net::{self, UrlHost};
use super::policy::RunPolicy;
use super::{ImageRef, Rejection};
use crate::error::ErrorCode;

/// The largest Dockerfile read; a larger one is refused (it could hide instructions past
/// what was read).
pub const DOCKERFILE_MAX: u64 = 4 * 1024 * 1024;
/// Bytes of link names and targets kept while reading a context.
const LINKS_MAX: usize = 16 * 1024 * 1024;
/// Symbolic links followed to find the Dockerfile.
const HOPS_MAX: usize = 32;
/// The longest entry name or link target: the engine cannot extract a longer one.
const PATH_MAX: usize = 4096;

/// Why a context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// Refused: the reading cannot be made to agree with the engine's.
    #[error("{0}")]
    Refused(Rejection),
    /// The spooled file could not be opened.
    #[error("reading the spooled build context: {0}")]
    Io(#[from] std::io::Error),
}

impl From<Rejection> for ContextError {
    fn from(r: Rejection) -> Self {
        ContextError::Refused(r)
    }
}

fn unreadable(why: impl std::fmt::Display) -> ContextError {
    Rejection::invalid(format!(
        "The build context could not be read as a tar (or gzip tar): {why}. Berth reads the Dockerfile before it queues the build."
    ))
    .into()
}

/// The Dockerfiles the engine may build from in a context (`dockerfile`, default
/// `Dockerfile`, which also tries `dockerfile`), as text. Empty: not a tar, or none found;
/// the engine reports that when the job runs. `open` opens the raw context from its start
/// (it may be read twice).
pub fn dockerfiles_in_context<R: Read>(
    open: impl Fn() -> std::io::Result<R>,
    dockerfile: Option<&str>,
) -> Result<Vec<String>, ContextError> {
    let name = dockerfile.unwrap_or("Dockerfile");
    let mut wanted = vec![clean(name.as_bytes(), &[])];
    if name == "Dockerfile" {
        wanted.push(b"dockerfile".to_vec());
    }
    let Some(first) = scan(open()?, &wanted)? else { return Ok(Vec::new()) };
    let mut found = Vec::new();
    let mut elsewhere = Vec::new();
    for w in &wanted {
        let at = resolve(&first.links, w)?;
        if &at == w {
            found.extend(first.files.get(w).cloned());
        } else {
            elsewhere.push(at);
        }
    }
    if !elsewhere.is_empty() {
        if let Some(second) = scan(open()?, &elsewhere)? {
            found.extend(elsewhere.iter().filter_map(|p| second.files.get(p).cloned()));
        }
    }
    Ok(found.into_iter().map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).collect())
}

#[derive(Debug)]
enum Link {
    Symbolic(Vec<u8>),
    Hard,
}

/// What one reading of the archive found: the links as extraction leaves them, and the
/// regular files at the wanted paths.
struct Scan {
    links: HashMap<Vec<u8>, Link>,
    files: HashMap<Vec<u8>, Vec<u8>>,
}

/// Read the archive once. `None`: not a tar to the engine either (its first block is no
/// header), or empty.
fn scan<R: Read>(raw: R, wanted: &[Vec<u8>]) -> Result<Option<Scan>, ContextError> {
    let mut input = BufReader::with_capacity(256 * 1024, raw);
    let head = input.fill_buf()?;
    // The engine's own detection (Docker's archive.DetectCompression).
    let mut tar: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(Rejection::new(
            ErrorCode::UnsupportedMediaType,
            "The build context must be a tar or a gzip-compressed tar (not bzip2, xz or zstd): Berth reads its Dockerfile before it queues the build.",
        )
        .into());
    } else {
        Box::new(input)
    };
    let mut block = [0u8; 512];
    let mut got = 0;
    while got < block.len() {
        match tar.read(&mut block[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(unreadable(e)),
        }
    }
    if got < block.len() || block.iter().all(|b| *b == 0) || !is_header(&block) {
        return Ok(None);
    }
    let mut archive = tar::Archive::new(std::io::Cursor::new(block).chain(tar));
    let mut out = Scan { links: HashMap::new(), files: HashMap::new() };
    let mut link_bytes = 0usize;
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let raw_path = entry.path_bytes();
        if raw_path.len() > PATH_MAX {
            return Err(unreadable(format!("an entry's name is longer than {PATH_MAX} bytes")));
        }
        let path = clean(&raw_path, &[]);
        if let Some(link) = parents(&path).find(|p| !out.links.is_empty() && out.links.contains_key(*p)) {
            return Err(Rejection::invalid(format!(
                "The build context writes `{}` through the link `{}`: Berth reads the Dockerfile before it queues the build and does not follow entries through links.",
                String::from_utf8_lossy(&path),
                String::from_utf8_lossy(link)
            ))
            .into());
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
            if target.len() > PATH_MAX {
                return Err(unreadable(format!("a link's target is longer than {PATH_MAX} bytes")));
            }
            link_bytes += path.len() + target.len();
            if link_bytes > LINKS_MAX {
                return Err(unreadable("it holds more links than Berth follows"));
            }
            let link = if kind.is_symlink() { Link::Symbolic(target) } else { Link::Hard };
            out.files.remove(&path);
            out.links.insert(path, link);
            continue;
        }
        // Extraction replaces what was there, a link included.
        out.links.remove(&path);
        out.files.remove(&path);
        if kind.is_file() && wanted.contains(&path) {
            if entry.size() > DOCKERFILE_MAX {
                return Err(Rejection::invalid(format!(
                    "The Dockerfile `{}` is larger than {DOCKERFILE_MAX} bytes.",
                    String::from_utf8_lossy(&path)
                ))
                .into());
            }
            let mut text = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut text).map_err(unreadable)?;
            out.files.insert(path, text);
        }
    }
    Ok(Some(out))
}

/// Would Go's archive/tar take this block for a header? Its checksum, read as octal,
/// equals the unsigned or the signed sum of the block with the checksum field as spaces.
fn is_header(block: &[u8; 512]) -> bool {
    let field: Vec<u8> = block[148..156].iter().copied().filter(|b| *b != b' ' && *b != 0).collect();
    let Some(value) = std::str::from_utf8(&field).ok().and_then(|s| i64::from_str_radix(s, 8).ok().or((s.is_empty()).then_some(0)))
    else {
        return false;
    };
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += b as i64;
        signed += b as i8 as i64;
    }
    value == unsigned || value == signed
}

/// A path as extraction names it: relative to the context root, `.` and empty parts
/// dropped, `..` never above the root. `base` is the directory a relative path is in.
fn clean(path: &[u8], base: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = if path.starts_with(b"/") { Vec::new() } else { base.split(|b| *b == b'/').filter(|p| !p.is_empty()).collect() };
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join(&b'/')
}

/// The proper prefixes of a cleaned path, shortest first (`a`, `a/b` of `a/b/c`).
fn parents(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter().enumerate().filter(|(_, b)| **b == b'/').map(move |(i, _)| &path[..i])
}

/// Where a wanted path ends, symbolic links (of it or of its directories) followed inside
/// the context as the engine follows them. A hard link is refused: what it holds depends
/// on the order of extraction.
fn resolve(links: &HashMap<Vec<u8>, Link>, wanted: &[u8]) -> Result<Vec<u8>, ContextError> {
    let mut path = wanted.to_vec();
    for _ in 0..HOPS_MAX {
        let linked = parents(&path).map(<[u8]>::to_vec).chain(std::iter::once(path.clone())).find(|p| links.contains_key(p));
        let Some(at) = linked else { return Ok(path) };
        match &links[&at] {
            Link::Hard => {
                return Err(Rejection::invalid(format!(
                    "The Dockerfile `{}` is a hard link in the build context: send it as a regular file.",
                    String::from_utf8_lossy(&at)
                ))
                .into());
            }
            Link::Symbolic(target) => {
                let dir = &at[..at.iter().rposition(|b| *b == b'/').unwrap_or(0)];
                let mut next = clean(target, dir);
                let rest = &path[at.len()..];
                next.extend_from_slice(rest);
                path = clean(&next, &[]);
            }
        }
    }
    Err(Rejection::invalid("The Dockerfile is behind too many symbolic links in the build context.").into())
}

// ---- reading a Dockerfile -------------------------------------------------------------

/// What a Dockerfile makes the engine pull or fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// `ADD` sources that are URLs, or could become one through a variable.
    pub fetches: Vec<Fetch>,
    /// Images the build pulls.
    pub images: Vec<ImageUse>,
}

/// An `ADD` source fetched by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fetch {
    /// A URL, as the builder reads the word.
    Url(String),
    /// A source whose scheme or host comes from a variable: its value may come from the
    /// base image's environment, which is not known here.
    Variable(String),
}

/// An image reference a build pulls: by `FROM` or `COPY --from`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageUse {
    pub instruction: &'static str,
    /// As written.
    pub written: String,
    /// With the build's arguments substituted; `None` when a variable in it has no value
    /// known here.
    pub reference: Option<String>,
}

/// Stands for the value of a variable that is not known.
const UNKNOWN: char = '\u{0}';

/// The builder's predefined proxy arguments: a `buildarg` gives them a value without an
/// `ARG` line, in `FROM` too.
const BUILTIN_ARGS: [&str; 10] =
    ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"];

/// Read a Dockerfile with the build's `buildarg`s.
pub fn analyze(text: &str, build_args: &HashMap<String, String>) -> Findings {
    let mut out = Findings::default();
    let (mut fetches, mut images) = (HashSet::new(), HashSet::new());
    for reading in Reading::ALL {
        let found = findings(&instructions(text, reading), reading.escape, build_args);
        out.fetches.extend(found.fetches.into_iter().filter(|f| fetches.insert(f.clone())));
        out.images.extend(found.images.into_iter().filter(|i| images.insert(i.clone())));
    }
    out
}

/// One way a builder may read the lines. Builders differ: the classic builder runs a
/// heredoc's lines as instructions, BuildKit skips them; parsers disagree on which
/// `# escape=` directive counts (Docker 20.10 only a first-line one, taking its first
/// character; newer ones any among the leading directives, exactly `\` or `` ` ``); older
/// parsers continue a line after an escaped escape token, newer ones do not. So the
/// escape token is each of the two, whatever the directives say.
#[derive(Debug, Clone, Copy)]
struct Reading {
    escape: char,
    heredocs: bool,
    /// The line continues after an escaped escape token too.
    old_continuation: bool,
}

impl Reading {
    const ALL: [Reading; 8] = {
        let mut all = [Reading { escape: '\\', heredocs: false, old_continuation: false }; 8];
        let mut i = 0;
        while i < 8 {
            all[i] = Reading { escape: if i & 1 == 0 { '\\' } else { '`' }, heredocs: i & 2 != 0, old_continuation: i & 4 != 0 };
            i += 1;
        }
        all
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Instruction {
    keyword: String,
    flags: Vec<String>,
    args: String,
}

/// The instructions in order, as `reading` reads the lines. Parser directives are
/// comments here: the escape token is the reading's.
fn instructions(text: &str, reading: Reading) -> Vec<Instruction> {
    let escape = reading.escape;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches(['\r', '\n']));
    let mut out = Vec::new();
    while let Some(raw) = lines.next() {
        let line = raw.trim_start();
        let first = if line.starts_with('#') { "" } else { line };
        let (first, mut ended) = continuation(first, reading);
        if ended && first.is_empty() {
            continue;
        }
        let mut buf = first.to_string();
        while !ended {
            let Some(next) = lines.next() else { break };
            let trimmed = next.trim_start();
            if trimmed.starts_with('#') || trimmed.is_empty() {
                continue;
            }
            let (part, end) = continuation(next, reading);
            buf.push_str(part);
            ended = end;
        }
        let Some(ins) = split_instruction(&buf, escape) else { continue };
        if reading.heredocs && buf.contains("<<") {
            let body_of = if ins.keyword == "ONBUILD" { split_instruction(&ins.args, escape) } else { Some(ins.clone()) };
            if let Some(inner) = body_of.filter(|i| ["ADD", "COPY", "RUN"].contains(&i.keyword.as_str()) && json_words(&i.args).is_none()) {
                for (name, chomp) in heredoc_names(&inner.args) {
                    let mut terminated = false;
                    for body in lines.by_ref() {
                        let candidate = if chomp { body.trim_start_matches('\t') } else { body };
                        if candidate == name {
                            terminated = true;
                            break;
                        }
                    }
                    if !terminated {
                        // The engine refuses an unterminated heredoc.
                        out.push(ins);
                        return out;
                    }
                }
            }
        }
        out.push(ins);
    }
    out
}

/// A line without its continuation token; `true` when the instruction ends with it. The
/// token continues the line when it is last (trailing blanks aside) and, in newer parsers,
/// not itself escaped.
fn continuation(line: &str, reading: Reading) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    match body.strip_suffix(reading.escape) {
        Some(before) if reading.old_continuation || before.is_empty() || !before.ends_with(reading.escape) => (before, false),
        _ => (line, true),
    }
}

/// Keyword (upper case), leading `--flags`, and the rest.
fn split_instruction(line: &str, escape: char) -> Option<Instruction> {
    let line = line.trim_matches(is_blank);
    if line.is_empty() {
        return None;
    }
    let (keyword, rest) = line.split_once(is_blank).unwrap_or((line, ""));
    let (flags, args) = builder_flags(rest.trim_start_matches(is_blank), escape);
    Some(Instruction { keyword: keyword.to_ascii_uppercase(), flags, args: args.trim().to_string() })
}

/// What separates words on an instruction line (not newlines: there are none).
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// The builder's flag words at the start of the arguments (`--chown=1:1`, `--from=x`), with
/// their quotes and escapes read; `--` alone ends them.
fn builder_flags(line: &str, escape: char) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start_matches(char::is_whitespace);
        if !rest.starts_with("--") {
            return (flags, rest);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = i;
                    break;
                }
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == escape => {
                    if let Some((_, n)) = chars.next() {
                        word.push(n);
                    }
                }
                _ => word.push(c),
            }
        }
        rest = &rest[end..];
        if word == "--" {
            return (flags, rest);
        }
        flags.push(word);
    }
}

/// The JSON-array form: the first JSON value of the arguments, when it is an array of
/// strings (the builder ignores what follows it).
fn json_words(args: &str) -> Option<Vec<String>> {
    let args = args.trim_start();
    if !args.starts_with('[') {
        return None;
    }
    let value = serde_json::Deserializer::from_str(args).into_iter::<Vec<serde_json::Value>>().next()?.ok()?;
    value.into_iter().map(|v| v.as_str().map(String::from)).collect()
}

/// Heredoc words of an instruction (`<<EOF`, `<<-EOF`, `2<<"EOF"`): their terminators,
/// and whether leading tabs are stripped before comparing.
fn heredoc_names(args: &str) -> Vec<(String, bool)> {
    args.split(is_blank)
        .filter_map(|w| {
            let w = w.trim_start_matches(|c: char| c.is_ascii_digit());
            let rest = w.strip_prefix("<<")?;
            let (chomp, rest) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let name: String = rest.chars().filter(|c| *c != '\'' && *c != '"').collect();
            (!name.is_empty() && !rest.contains('<')).then_some((name, chomp))
        })
        .collect()
}

/// The value of a variable, as far as it is known here.
#[derive(Debug, Clone)]
enum Var {
    Set(String),
    Unset,
    /// Could be anything (the base image's environment may set it).
    Unknown,
}

/// One word as the builder's shell lexer reads it: quotes removed, escapes applied,
/// variables substituted from `lookup`. A variable without a known value leaves
/// [`UNKNOWN`] in the word.
fn process_word(word: &str, escape: char, lookup: &dyn Fn(&str) -> Var) -> String {
    let mut lexer = Lexer { chars: word.chars().collect(), pos: 0, escape, lookup, depth: 0 };
    lexer.word(None)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Var,
    /// `${…}` nesting: bounded, the rest of a deeper word is unknown.
    depth: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Up to `stop` (unquoted, unescaped) or the end.
    fn word(&mut self, stop: Option<char>) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            self.pos += 1;
            match c {
                '\'' => {
                    while let Some(c) = self.next() {
                        if c == '\'' {
                            break;
                        }
                        out.push(c);
                    }
                }
                '"' => {
                    while let Some(c) = self.next() {
                        match c {
                            '"' => break,
                            '$' => out.push_str(&self.dollar()),
                            c if c == self.escape => match self.peek() {
                                Some(n) if n == '"' || n == '$' || n == self.escape => {
                                    self.pos += 1;
                                    out.push(n);
                                }
                                None => {}
                                _ => out.push(c),
                            },
                            c => out.push(c),
                        }
                    }
                }
                '$' => out.push_str(&self.dollar()),
                c if c == self.escape => {
                    if let Some(n) = self.next() {
                        out.push(n);
                    }
                }
                c => out.push(c),
            }
        }
        out
    }

    /// After a `$`: `$NAME`, `${NAME}`, `${NAME:-word}` and the other forms.
    fn dollar(&mut self) -> String {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return "$".into();
            }
            return self.plain(&name);
        }
        self.pos += 1;
        if self.depth >= 16 {
            self.pos = self.chars.len();
            return UNKNOWN.to_string();
        }
        let name = self.name();
        let colon = self.peek() == Some(':');
        if colon {
            self.pos += 1;
        }
        let Some(op) = self.next() else { return UNKNOWN.to_string() };
        if op == '}' {
            return self.plain(&name);
        }
        self.depth += 1;
        let word = self.word(Some('}'));
        self.depth -= 1;
        self.pos += 1; // the closing brace
        let value = (self.lookup)(&name);
        let set = |v: &str| if colon { !v.is_empty() } else { true };
        match (op, value) {
            (_, Var::Unknown) => UNKNOWN.to_string(),
            ('-', Var::Set(v)) if set(&v) => v,
            ('-', _) => word,
            ('+', Var::Set(v)) if set(&v) => word,
            ('+', _) => String::new(),
            ('?', Var::Set(v)) if set(&v) => v,
            // `?` fails the build when unset; `#`, `%`, `/` are not evaluated here.
            _ => UNKNOWN.to_string(),
        }
    }

    fn plain(&self, name: &str) -> String {
        match (self.lookup)(name) {
            Var::Set(v) => v,
            Var::Unset | Var::Unknown => UNKNOWN.to_string(),
        }
    }

    /// A variable name: letters, digits and `_`; or digits; or one special character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                    name.push(c);
                    self.pos += 1;
                }
            }
            Some(c) if "@*#?-$!".contains(c) => {
                name.push(c);
                self.pos += 1;
            }
            _ => {
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        name
    }
}

/// Words of `ARG` (and `ENV`, `LABEL`): split on blanks outside quotes, with the quotes and
/// escapes kept for the lexer.
fn quoted_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                continue;
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                blank_ok = true;
            }
            Some(q) if c == q => quote = None,
            Some('\'') => {}
            _ if c == escape => {
                match chars.next() {
                    Some(n) => {
                        word.push(c);
                        word.push(n);
                    }
                    None => quote = None,
                }
                continue;
            }
            _ => {}
        }
        word.push(c);
    }
    if blank_ok || !word.is_empty() {
        words.push(word);
    }
    words
}

/// Words of a shell-form argument list: split on blanks before the lexer reads each.
fn blank_words(args: &str) -> Vec<&str> {
    args.split(is_blank).filter(|w| !w.is_empty()).collect()
}

fn findings(list: &[Instruction], escape: char, build_args: &HashMap<String, String>) -> Findings {
    let mut out = Findings::default();
    // ARGs before the first FROM: the only variables FROM sees.
    let mut meta: HashMap<String, Option<String>> = HashMap::new();
    let mut stages: HashSet<String> = HashSet::new();
    let mut seen_from = false;
    for ins in list {
        match ins.keyword.as_str() {
            "ARG" if !seen_from => {
                for word in quoted_words(&ins.args, escape) {
                    let (name, default) = match word.split_once('=') {
                        Some((n, d)) => (n, Some(d)),
                        None => (word.as_str(), None),
                    };
                    let value = match build_args.get(name) {
                        Some(v) => Some(v.clone()),
                        None => default.map(|d| process_word(d, escape, &|n| meta_var(&meta, build_args, n))),
                    };
                    meta.insert(name.to_string(), value);
                }
            }
            "FROM" => {
                seen_from = true;
                let words = blank_words(&ins.args);
                let Some(image) = words.first() else { continue };
                let name = process_word(image, escape, &|n| meta_var(&meta, build_args, n));
                if !name.eq_ignore_ascii_case("scratch") && !stages.contains(&name.to_ascii_lowercase()) {
                    out.images.push(ImageUse { instruction: "FROM", written: image.to_string(), reference: known(name) });
                }
                if words.len() >= 3 && words[1].eq_ignore_ascii_case("as") {
                    stages.insert(words[2].to_ascii_lowercase());
                }
            }
            _ => step(ins, escape, &stages, &mut out),
        }
    }
    out
}

/// ADD and COPY, also as an `ONBUILD` trigger.
fn step(ins: &Instruction, escape: char, stages: &HashSet<String>, out: &mut Findings) {
    match ins.keyword.as_str() {
        "ONBUILD" => {
            if let Some(inner) = split_instruction(&ins.args, escape) {
                step(&inner, escape, stages, out);
            }
        }
        "ADD" => {
            let words = match json_words(&ins.args) {
                Some(words) => words,
                None => blank_words(&ins.args).into_iter().map(String::from).collect(),
            };
            for w in words {
                let read = process_word(&w, escape, &|_| Var::Unknown);
                if let Some(f) = fetch(&w, read) {
                    out.fetches.push(f);
                }
            }
        }
        "COPY" => {
            for flag in &ins.flags {
                let Some(from) = flag.strip_prefix("--from=") else { continue };
                let name = process_word(from, escape, &|_| Var::Unknown);
                let lower = name.to_ascii_lowercase();
                if !stages.contains(&lower) && !name.bytes().all(|b| b.is_ascii_digit()) {
                    out.images.push(ImageUse { instruction: "COPY --from", written: from.to_string(), reference: known(name) });
                }
            }
        }
        _ => {}
    }
}

fn known(word: String) -> Option<String> {
    (!word.contains(UNKNOWN)).then_some(word)
}

fn meta_var(meta: &HashMap<String, Option<String>>, build_args: &HashMap<String, String>, name: &str) -> Var {
    match meta.get(name) {
        Some(Some(v)) => Var::Set(v.clone()),
        Some(None) => Var::Unset,
        None => match build_args.get(name) {
            Some(v) if BUILTIN_ARGS.contains(&name) => Var::Set(v.clone()),
            _ => Var::Unset,
        },
    }
}

/// An ADD source the engine fetches: a URL, or one whose scheme or host a variable makes.
fn fetch(written: &str, read: String) -> Option<Fetch> {
    if net::is_remote(&read) {
        let lower = read.to_ascii_lowercase();
        let start = if lower.starts_with("git@") { 4 } else { read.find("://").map_or(0, |i| i + 3) };
        let authority = &read[start..];
        let stops: &[char] = if lower.starts_with("git@") { &[':', '/'] } else { &['/', '?', '#'] };
        let authority = &authority[..authority.find(stops).unwrap_or(authority.len())];
        return Some(if authority.contains(UNKNOWN) { Fetch::Variable(written.into()) } else { Fetch::Url(read) });
    }
    // A variable before the first `/` could spell a scheme and a host.
    let head = &read[..read.find('/').unwrap_or(read.len())];
    head.contains(UNKNOWN).then(|| Fetch::Variable(written.into()))
}

// ---- the build policy ---------------------------------------------------------------------

/// Hold what a Dockerfile pulls to `BERTH_ALLOWED_IMAGES` and, for non-admins, what it
/// fetches to the host's outside: 403 `policy_violation` naming the reference or host.
/// Answers the host names left to resolve (each must not resolve inside the host).
pub fn check(found: &Findings, policy: &RunPolicy, admin: bool) -> Result<Vec<UrlHost>, Rejection> {
    if !policy.allowed_images.is_empty() {
        for image in &found.images {
            let Some(reference) = &image.reference else {
                return Err(Rejection::policy(format!(
                    "`{} {}` uses a variable without a value known before the build (an `ARG` before the first `FROM` with a default, or a `buildarg`): with BERTH_ALLOWED_IMAGES set, every image a build pulls must be known",
                    image.instruction, image.written
                )));
            };
            let parsed = ImageRef::parse(reference).map_err(|_| {
                Rejection::policy(format!(
                    "`{} {reference}` is not an image reference that can be held to BERTH_ALLOWED_IMAGES",
                    image.instruction
                ))
            })?;
            policy.check_image(&parsed, &format!("build from (`{}`)", image.instruction))?;
        }
    }
    if admin {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for f in &found.fetches {
        let url = match f {
            Fetch::Variable(written) => {
                return Err(Rejection::policy(format!(
                    "`ADD` source `{written}` takes its scheme or host from a variable, whose value is not known before the build: only admins may (write the URL out)"
                )));
            }
            Fetch::Url(url) => url,
        };
        let host = net::url_host(url).map_err(|_| {
            Rejection::policy(format!("`ADD` URL `{url}` has a host that cannot be checked: only admins may fetch it"))
        })?;
        match host.ip() {
            Some(ip) => refuse_internal(&host, ip)?,
            None if host.host == "localhost" || host.host.ends_with(".localhost") => {
                return Err(fetch_refusal(&host, "loopback"));
            }
            None => names.push(host),
        }
    }
    Ok(names)
}

/// 403 when an address a URL's host stands for is inside the host.
pub fn refuse_internal(host: &UrlHost, ip: std::net::IpAddr) -> Result<(), Rejection> {
    match net::internal(ip) {
        Some(why) if host.ip() == Some(ip) => Err(fetch_refusal(host, why)),
        Some(why) => Err(fetch_refusal(host, &format!("name for {ip}, a {why} address"))),
        None => Ok(()),
    }
}

/// 403 for a name that cannot be resolved here: it cannot be checked.
pub fn unresolvable(host: &UrlHost, why: &str) -> Rejection {
    Rejection::policy(format!(
        "`ADD` URL host `{}` could not be resolved to check that it is outside this host ({why}): only admins may fetch it",
        host.display()
    ))
}

fn fetch_refusal(host: &UrlHost, what: &str) -> Rejection {
    Rejection::policy(format!(
        "`ADD` URL host `{}` is a {what} address: the engine fetches ADD URLs from the host's own network, so only admins may",
        host.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_args() -> HashMap<String, String> {
        HashMap::new()
    }

    fn urls(text: &str) -> Vec<String> {
        analyze(text, &no_args())
            .fetches
            .into_iter()
            .map(|f| match f {
                Fetch::Url(u) => u,
                Fetch::Variable(w) => format!("var:{w}"),
            })
            .collect()
    }

    fn images(text: &str, args: &[(&str, &str)]) -> Vec<Option<String>> {
        let args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        analyze(text, &args).images.into_iter().map(|i| i.reference).collect()
    }

    #[test]
    fn add_urls_in_every_form() {
        assert_eq!(urls("FROM x\nADD http://127.0.0.1:8/a /a\n"), ["http://127.0.0.1:8/a"]);
        assert_eq!(urls("from x\nadd --chown=1:1 --chmod=600 http://a/1 https://b/2 /dst/\n"), ["http://a/1", "https://b/2"]);
        assert_eq!(urls("FROM x\nADD [\"http://[::1]/a\", \"/a\"]\n"), ["http://[::1]/a"]);
        assert_eq!(urls("FROM x\nADD --chown=1 [\"http://127.0.0.\\u0031/a\", \"/a\"] trailing\n"), ["http://127.0.0.1/a"]);
        assert_eq!(urls("FROM x\nADD \\\n  http://10.0.0.1/x \\\n  /x\n"), ["http://10.0.0.1/x"]);
        // Comments and blank lines inside a continuation are skipped.
        assert_eq!(urls("FROM x\nADD \\\n# note\n\n  http://10.0.0.2/x /x\n"), ["http://10.0.0.2/x"]);
        // Quotes and escapes are read as the builder reads them.
        assert_eq!(urls("FROM x\nADD \"http://127.0.0.1/q\" /q\nADD htt\\p://127.0.0.\\1/e /e\nADD 'http'://h/s /s\n"), [
            "http://127.0.0.1/q",
            "http://127.0.0.1/e",
            "http://h/s"
        ]);
        assert_eq!(urls("FROM x\n  ADD HTTP://h/u /u\n"), ["HTTP://h/u"]);
        assert_eq!(urls("FROM x\nONBUILD ADD http://169.254.169.254/ /m\n"), ["http://169.254.169.254/"]);
        assert_eq!(urls("FROM x\nADD git@10.0.0.3:r.git /r\n"), ["git@10.0.0.3:r.git"]);
        assert!(urls("FROM x\nADD src/ /app\nADD ./http://x /y\nCOPY http://127.0.0.1/ /z\nRUN curl http://127.0.0.1/\n").is_empty());
    }

    #[test]
    fn variables_in_a_host_are_unknown() {
        assert_eq!(urls("FROM x\nARG H=example.com\nADD http://${H}/a /a\n"), ["var:http://${H}/a"]);
        assert_eq!(urls("FROM x\nADD $SCHEME127.0.0.1/a /a\n"), ["var:$SCHEME127.0.0.1/a"]);
        assert_eq!(urls("FROM x\nADD http://h${X:-}/a /a\n"), ["var:http://h${X:-}/a"]);
        // In the path a variable cannot move the host.
        assert_eq!(urls("FROM x\nARG V=1\nADD https://example.com/v${V}/a.tgz /a\nADD dir/$F /f\n"), ["https://example.com/v\u{0}/a.tgz"]);
        let deep = format!("FROM x\nADD http://{}h{}/ /\n", "${X:-".repeat(100_000), "}".repeat(100_000));
        assert_eq!(urls(&deep).len(), 1, "deep nesting is bounded");
        // An escaped dollar is no variable (to a reading with `\` as the escape token).
        assert_eq!(process_word("http://h\\$x/a", '\\', &|_| Var::Unknown), "http://h$x/a");
        assert_eq!(process_word("http://h\\$x/a", '`', &|_| Var::Unknown), "http://h\\\u{0}/a");
    }

    #[test]
    fn both_escape_tokens_are_read() {
        let df = "# escape=`\nFROM x\nADD `\n  http://127.0.0.1/a /a\nADD C:\\path\\ /b\n";
        assert_eq!(urls(df), ["http://127.0.0.1/a"]);
        // Only at the very top: after an instruction it is a comment.
        let late = "FROM x\n# escape=`\nADD \\\n  http://127.0.0.1/b /b\n";
        assert_eq!(urls(late), ["http://127.0.0.1/b"]);
        // An escaped escape at the end does not continue the line.
        assert_eq!(urls("FROM x\nRUN echo \\\\\nADD http://127.0.0.1/c /c\n"), ["http://127.0.0.1/c"]);
    }

    #[test]
    fn heredocs_are_read_both_ways() {
        // BuildKit: the heredoc body is no instruction, but the classic builder reads it as
        // lines; a terminator that ends in the escape token would hide the next line from a
        // reading that does not know heredocs.
        let df = "FROM x\nRUN <<'E\\'\necho hi\nE\\\nADD http://127.0.0.1/h /h\n";
        assert_eq!(urls(df), ["http://127.0.0.1/h"]);
        let body = "FROM x\nRUN <<EOF\nADD http://127.0.0.1/b /b\nEOF\n";
        assert_eq!(urls(body), ["http://127.0.0.1/b"], "the classic builder runs this line");
    }

    #[test]
    fn from_images_with_stages_and_args() {
        assert_eq!(images("FROM busybox\n", &[]), [Some("busybox".into())]);
        assert_eq!(images("FROM --platform=linux/amd64 a:1 AS base\nFROM base\nFROM BASE\nFROM scratch\nFROM b\n", &[]), [
            Some("a:1".into()),
            Some("b".into())
        ]);
        assert_eq!(images("ARG BASE=a:1\nFROM ${BASE}\nFROM $BASE-x\n", &[]), [Some("a:1".into()), Some("a:1-x".into())]);
        assert_eq!(images("ARG BASE=a:1\nFROM ${BASE}\n", &[("BASE", "evil:1")]), [Some("evil:1".into())]);
        assert_eq!(images("ARG T\nFROM a:${T:-2}\n", &[]), [Some("a:2".into())]);
        assert_eq!(images("ARG R=reg\nARG I=${R}/img\nFROM $I\n", &[]), [Some("reg/img".into())]);
        // Undeclared or unset: unknown.
        assert_eq!(images("FROM ${NOPE}\n", &[("NOPE", "x")]), [None]);
        assert_eq!(images("ARG T\nFROM a:$T\n", &[]), [None]);
        // An ARG after FROM does not reach the next FROM.
        assert_eq!(images("FROM a\nARG B=b\nFROM $B\n", &[]), [Some("a".into()), None]);
        // The proxy arguments are predefined.
        assert_eq!(images("FROM $HTTP_PROXY\n", &[("HTTP_PROXY", "evil")]), [Some("evil".into())]);
        assert_eq!(images("FROM a AS one\nCOPY --from=one /x /x\nCOPY --from=0 /x /x\nCOPY --from=other:1 /y /y\nONBUILD COPY --from=o2 / /\n", &[]), [
            Some("a".into()),
            Some("other:1".into()),
            Some("o2".into())
        ]);
    }

    #[test]
    fn the_policy() {
        let open = RunPolicy::default();
        let found = analyze("FROM x\nADD http://2130706433:9/a /a\n", &no_args());
        let e = check(&found, &open, false).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert!(e.detail.contains("`2130706433:9`") && e.detail.contains("loopback"), "{}", e.detail);
        assert!(check(&found, &open, true).is_ok(), "admins may");
        let meta = analyze("FROM x\nADD http://0xa9fea9fe/latest/meta-data/ /m\n", &no_args());
        assert!(check(&meta, &open, false).unwrap_err().detail.contains("metadata"));
        let named = analyze("FROM x\nADD https://example.com/a /a\nADD http://LocalHost./b /b\n", &no_args());
        assert!(check(&named, &open, false).unwrap_err().detail.contains("`localhost`"));
        let named = analyze("FROM x\nADD https://example.com/a /a\n", &no_args());
        let names = check(&named, &open, false).unwrap();
        assert_eq!(names.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["example.com"]);
        let e = refuse_internal(&names[0], "10.1.1.1".parse().unwrap()).unwrap_err();
        assert!(e.detail.contains("`example.com` is a name for 10.1.1.1, a private address"), "{}", e.detail);
        assert!(refuse_internal(&names[0], "93.184.216.34".parse().unwrap()).is_ok());

        let listed = RunPolicy { allowed_images: vec!["berth-test/*".into()], ..Default::default() };
        assert!(check(&analyze("FROM berth-test/busybox\nFROM scratch\n", &no_args()), &listed, false).is_ok());
        let e = check(&analyze("FROM evil/x:1\n", &no_args()), &listed, true).unwrap_err();
        assert!(e.detail.contains("evil/x:1") && e.detail.contains("BERTH_ALLOWED_IMAGES"), "{}", e.detail);
        let e = check(&analyze("FROM $X\n", &no_args()), &listed, false).unwrap_err();
        assert!(e.detail.contains("`FROM $X`"), "{}", e.detail);
        assert!(check(&analyze("FROM $X\n", &no_args()), &open, false).is_ok(), "no allow-list: nothing to hold it to");
        let e = check(&analyze("FROM x\nADD http://$H/ /\n", &no_args()), &open, false).unwrap_err();
        assert!(e.detail.contains("`http://$H/`"), "{}", e.detail);
    }

    fn tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn found(bytes: &[u8], name: Option<&str>) -> Result<Vec<String>, ContextError> {
        dockerfiles_in_context(|| Ok(std::io::Cursor::new(bytes.to_vec())), name)
    }

    const REG: tar::EntryType = tar::EntryType::Regular;
    const SYM: tar::EntryType = tar::EntryType::Symlink;

    #[test]
    fn the_dockerfile_the_engine_builds_from() {
        let t = tar(&[("./Dockerfile", REG, b"FROM old", None), ("Dockerfile", REG, b"FROM new", None), ("x", REG, b"", None)]);
        assert_eq!(found(&t, None).unwrap(), ["FROM new"], "a later entry replaces an earlier one");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &t).unwrap();
        assert_eq!(found(&gz.finish().unwrap(), None).unwrap(), ["FROM new"], "gzip, by its magic bytes");
        let lower = tar(&[("dockerfile", REG, b"FROM low", None)]);
        assert_eq!(found(&lower, None).unwrap(), ["FROM low"]);
        assert!(found(&lower, Some("Other")).unwrap().is_empty(), "missing: the engine says so");
        let nested = tar(&[("build/prod.Dockerfile", REG, b"FROM p", None)]);
        assert_eq!(found(&nested, Some("./build//x/../prod.Dockerfile")).unwrap(), ["FROM p"]);
        let linked = tar(&[
            ("docker", SYM, b"", Some("build/docker")),
            ("build/docker/Dockerfile", REG, b"FROM real", None),
            ("Dockerfile", SYM, b"", Some("/docker/../docker/Dockerfile")),
        ]);
        assert_eq!(found(&linked, None).unwrap(), ["FROM real"], "symbolic links are followed inside the context");
        assert_eq!(found(&linked, Some("docker/Dockerfile")).unwrap(), ["FROM real"]);
        let replaced = tar(&[("Dockerfile", SYM, b"", Some("other")), ("other", REG, b"FROM o", None), ("Dockerfile", REG, b"FROM d", None)]);
        assert_eq!(found(&replaced, None).unwrap(), ["FROM d"]);
    }

    #[test]
    fn what_cannot_be_followed_is_refused() {
        let through = tar(&[("d", SYM, b"", Some(".")), ("d/Dockerfile", REG, b"FROM hidden", None)]);
        assert!(matches!(found(&through, None), Err(ContextError::Refused(r)) if r.detail.contains("through the link `d`")));
        let hard = tar(&[("x", REG, b"FROM x", None), ("Dockerfile", tar::EntryType::Link, b"", Some("x"))]);
        assert!(matches!(found(&hard, None), Err(ContextError::Refused(r)) if r.detail.contains("hard link")));
        let looped = tar(&[("Dockerfile", SYM, b"", Some("Dockerfile"))]);
        assert!(matches!(found(&looped, None), Err(ContextError::Refused(_))));
        let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2];
        assert!(matches!(found(&xz, None), Err(ContextError::Refused(r)) if r.code == ErrorCode::UnsupportedMediaType));
        let mut truncated = tar(&[("Dockerfile", REG, &[b'x'; 2000], None)]);
        truncated.truncate(1200);
        assert!(matches!(found(&truncated, None), Err(ContextError::Refused(r)) if r.code == ErrorCode::InvalidRequest));
        // Not a tar to the engine either: it reports that when the job runs.
        assert!(found(&[7u8; 8192], None).unwrap().is_empty());
        assert!(found(&[0u8; 1024], None).unwrap().is_empty());
    }

    #[test]
    fn go_reads_signed_checksums_too() {
        let mut t = tar(&[("Dockerfile\u{e9}", REG, b"", None)]);
        assert!(is_header(t[..512].try_into().unwrap()));
        let signed: i64 = t[..512].iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { *b as i8 as i64 }).sum();
        t[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        assert!(is_header(t[..512].try_into().unwrap()), "Go takes the signed sum");
        assert!(matches!(found(&t, None), Err(ContextError::Refused(_))), "a header Go takes and this reader cannot is refused");
    }
}
