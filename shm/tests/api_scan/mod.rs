//! A small reader of this workspace's own Rust sources: every `pub fn` of
//! every inherent `impl Type` block (and every free `pub fn`), by crate and
//! type, so that tests can check properties of the whole public API.
//!
//! It matches `impl` blocks, not files, so a type whose methods move to
//! another file (or are spread over several) is still seen whole. It is a
//! scanner, not a parser: comments, strings and character literals are
//! blanked out first, then braces, parentheses and angle brackets are
//! matched. That is enough for this code base, whose formatting `rustfmt`
//! keeps regular.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One public function.
#[derive(Debug, Clone)]
pub struct PubFn {
    /// `core` or `shm`.
    pub krate: &'static str,
    /// The type of its `impl` block; `None` for a free function.
    pub ty: Option<String>,
    pub name: String,
    /// The parameter list, as written (comments removed).
    pub params: String,
    /// The file it is in, relative to the workspace root.
    pub file: String,
    /// Marked `#[doc(hidden)]` (test support, not public API).
    pub hidden: bool,
}

impl PubFn {
    /// `Type::name` (or `file::name` for a free function).
    pub fn path(&self) -> String {
        match &self.ty {
            Some(t) => format!("{}::{t}::{}", self.krate, self.name),
            None => format!("{}::{}::{}", self.krate, self.file, self.name),
        }
    }

    /// Whether it takes `self` in some form.
    pub fn is_method(&self) -> bool {
        let p = self.params.trim_start_matches('(').trim_start();
        p.starts_with("&self")
            || p.starts_with("&mut self")
            || p.starts_with("self")
            || p.starts_with("mut self")
            || p.starts_with("&'")
    }

    /// Whether a parameter is a `Duration` or a `Deadline`: the call is
    /// bounded by its argument.
    pub fn takes_time(&self) -> bool {
        self.params.contains("Duration") || self.params.contains("Deadline")
    }
}

/// The workspace root (shm's manifest directory is one below it).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("shm has a parent directory")
        .to_path_buf()
}

/// Every public function of `core/src` and `shm/src`, and the names of the
/// types each crate declares `pub`.
pub fn scan() -> (Vec<PubFn>, BTreeMap<&'static str, BTreeSet<String>>) {
    let root = workspace();
    let mut fns = Vec::new();
    let mut pub_types = BTreeMap::new();
    for krate in ["core", "shm"] {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "no sources under {krate}/src");
        let types: &mut BTreeSet<String> = pub_types.entry(krate).or_default();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            let rel = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let code = blank(&text);
            types.extend(pub_type_names(&code));
            scan_items(&code, krate, &rel, &mut fns);
        }
    }
    (fns, pub_types)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read a source directory")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The text with comments, string literals and character literals replaced
/// by spaces (newlines kept), so that braces inside them do not count.
pub fn blank(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let keep_lines = |s: &[char], out: &mut String| {
        for &ch in s {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
            keep_lines(&c[i..end], &mut out);
            i = end;
        } else if c[i] == '/' && next == Some('*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            keep_lines(&c[i..j], &mut out);
            i = j;
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && !c
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            keep_lines(&c[i..j], &mut out);
            i = j;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let j = (j + 1).min(c.len());
            keep_lines(&c[i..j], &mut out);
            i = j;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                let j = (j + 1).min(c.len());
                keep_lines(&c[i..j], &mut out);
                i = j;
            } else if c.get(i + 2) == Some(&'\'') {
                keep_lines(&c[i..i + 3], &mut out);
                i += 3;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Names declared `pub struct`, `pub enum`, `pub trait` or `pub type`.
fn pub_type_names(code: &str) -> Vec<String> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let mut out = Vec::new();
    for w in words.windows(3) {
        if w[0] == "pub" && matches!(w[1], "struct" | "enum" | "trait" | "type") {
            out.push(ident_prefix(w[2]).to_owned());
        }
    }
    out
}

fn ident_prefix(s: &str) -> &str {
    let end = s
        .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

fn is_ident_char(ch: u8) -> bool {
    ch.is_ascii_alphanumeric() || ch == b'_'
}

/// Whether the keyword `kw` starts at byte `i` of `b` as a whole word.
fn word_at(b: &[u8], i: usize, kw: &str) -> bool {
    let k = kw.as_bytes();
    b.len() >= i + k.len()
        && &b[i..i + k.len()] == k
        && (i == 0 || !is_ident_char(b[i - 1]))
        && b.get(i + k.len()).map_or(true, |&ch| !is_ident_char(ch))
}

/// The index just past the `close` that matches the `open` at `i`.
fn matching(b: &[u8], i: usize, open: u8, close: u8) -> usize {
    let mut depth = 0usize;
    for (j, &ch) in b.iter().enumerate().skip(i) {
        if ch == open {
            depth += 1;
        } else if ch == close {
            depth -= 1;
            if depth == 0 {
                return j + 1;
            }
        }
    }
    b.len()
}

/// The attributes written just before byte `i` (`#[...]` lines), as text.
fn attributes_before(code: &str, i: usize) -> String {
    let line_start = code[..i].rfind('\n').map_or(0, |n| n + 1);
    let mut attrs = String::new();
    for line in code[..line_start].lines().rev() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if t.starts_with("#[") || t.starts_with("#![") || t.ends_with(")]") {
            attrs.push_str(t);
        } else {
            break;
        }
    }
    // The line `i` is on, before `i` (for `#[doc(hidden)] pub fn` on one line).
    attrs.push_str(&code[line_start..i]);
    attrs
}

/// Walks the items of one file: `impl` blocks (their `pub fn`s),
/// free `pub fn`s, and `mod` blocks (skipping `#[cfg(test)]` ones).
fn scan_items(code: &str, krate: &'static str, file: &str, out: &mut Vec<PubFn>) {
    scan_range(code, 0, code.len(), krate, file, None, out);
}

fn scan_range(
    code: &str,
    start: usize,
    end: usize,
    krate: &'static str,
    file: &str,
    ty: Option<&str>,
    out: &mut Vec<PubFn>,
) {
    let b = code.as_bytes();
    let mut i = start;
    while i < end {
        if b[i] == b'{' {
            // A block that is not an item we look into (a fn body, a
            // struct's fields, ...): skip it whole.
            i = matching(b, i, b'{', b'}');
            continue;
        }
        if ty.is_none() && word_at(b, i, "mod") {
            let Some(open) = code[i..end].find(['{', ';']).map(|k| i + k) else {
                break;
            };
            if b[open] == b';' {
                i = open + 1;
                continue;
            }
            let close = matching(b, open, b'{', b'}');
            if !attributes_before(code, i).contains("test") {
                scan_range(code, open + 1, close - 1, krate, file, None, out);
            }
            i = close;
            continue;
        }
        if ty.is_none() && word_at(b, i, "impl") {
            let Some(open) = code[i..end].find('{').map(|k| i + k) else {
                break;
            };
            let close = matching(b, open, b'{', b'}');
            let attrs = attributes_before(code, i);
            if let Some(t) = impl_self_type(&code[i + 4..open]) {
                if !attrs.contains("cfg(test)") && !attrs.contains("cfg(all(test") {
                    scan_range(code, open + 1, close - 1, krate, file, Some(&t), out);
                }
            }
            i = close;
            continue;
        }
        if word_at(b, i, "fn") {
            let after = &code[i + 2..end];
            let name = ident_prefix(after.trim_start()).to_owned();
            let Some(paren) = code[i..end].find('(').map(|k| i + k) else {
                break;
            };
            let close = matching(b, paren, b'(', b')');
            // `pub fn` only (also `pub const fn`, `pub unsafe fn`);
            // `pub(crate) fn` and the like are not public.
            let line_start = code[..i].rfind('\n').map_or(0, |n| n + 1);
            let before: Vec<&str> = code[line_start..i].split_whitespace().collect();
            let public = before
                .iter()
                .rev()
                .find(|w| !matches!(**w, "const" | "unsafe" | "async" | "extern"))
                .is_some_and(|w| *w == "pub");
            if public && !name.is_empty() {
                out.push(PubFn {
                    krate,
                    ty: ty.map(str::to_owned),
                    name,
                    params: code[paren..close]
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                    file: file.to_owned(),
                    hidden: attributes_before(code, line_start).contains("doc(hidden)"),
                });
            }
            // Past the signature and the body (a return type such as
            // `impl Iterator` must not be taken for an impl block).
            match code[close..end].find(['{', ';']).map(|k| close + k) {
                Some(k) if b[k] == b'{' => i = matching(b, k, b'{', b'}'),
                Some(k) => i = k + 1,
                None => break,
            }
            continue;
        }
        i += 1;
    }
}

/// The self type of an inherent `impl` header (the text between `impl` and
/// `{`), or `None` for a trait impl (`impl Trait for Type`).
fn impl_self_type(header: &str) -> Option<String> {
    let h = header.trim_start();
    // Generic parameters of the impl itself.
    let h = if h.starts_with('<') {
        let close = matching(h.as_bytes(), 0, b'<', b'>');
        &h[close..]
    } else {
        h
    };
    let h = match h.find(" where") {
        Some(w) => &h[..w],
        None => h,
    };
    // A ` for ` outside angle brackets makes it a trait impl.
    let b = h.as_bytes();
    let mut depth = 0i32;
    for (j, &ch) in b.iter().enumerate() {
        match ch {
            b'<' => depth += 1,
            b'>' => depth -= 1,
            _ if depth == 0 && word_at(b, j, "for") => return None,
            _ => {}
        }
    }
    // The last path segment before any generic arguments.
    let path = h.trim().split('<').next()?.trim();
    let last = path.rsplit("::").next()?.trim();
    let name = ident_prefix(last);
    (!name.is_empty()).then(|| name.to_owned())
}
