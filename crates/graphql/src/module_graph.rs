//! Proves the crate's modules form no import cycle: every `crate::…` path
//! in the sources is an edge from the module that writes it to the module
//! it names, and the graph of the crate's top-level modules (and of the
//! submodules of each directory module) must have no cycle. Test-only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Directory modules whose submodules may name each other: GraphQL output
/// types are a graph (`City.activities` lists `Activity`, whose `hosts`
/// are `City`s), so their modules refer to each other by nature.
const MUTUALLY_RECURSIVE: &[&str] = &["objects"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read the source directory");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file (`objects/city.rs` → `["objects",
/// "city"]`, `objects/mod.rs` → `["objects"]`, `lib.rs` → `[]`).
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).expect("a file under the root");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The length of the path or use tree at the start of `s` (`a::{b, c::D}`
/// in `a::{b, c::D};`, `a::f` in `a::f(x)`).
fn tree_len(s: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => {}
            ',' | '*' | ' ' | '\n' | '\t' if depth > 0 => {}
            _ if depth == 0 => return i,
            _ => {}
        }
    }
    s.len()
}

/// Splits `s` at the commas outside braces.
fn split_members(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0usize, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Every path of a use tree, after `prefix`, cut to two segments.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        for member in split_members(inner) {
            expand(member, prefix, out);
        }
        return;
    }
    let (head, rest) = match tree.split_once("::") {
        Some((head, rest)) => (head, Some(rest)),
        None => (tree, None),
    };
    let head: String = head
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut path = prefix.to_vec();
    if !head.is_empty() && head != "self" {
        path.push(head);
    }
    match rest {
        Some(rest) if path.len() < 2 => expand(rest, &path, out),
        _ if !path.is_empty() => out.push(path),
        _ => {}
    }
}

/// The module paths a piece of code names through `crate::` (groups such
/// as `crate::{a::X, b}` name each of their members), each cut to at most
/// two segments.
fn named_paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            // `$crate::` (a macro's own crate) and longer names.
            continue;
        }
        expand(&rest[..tree_len(rest)], &[], &mut found);
    }
    found
}

/// A cycle of `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

#[test]
fn modules_form_no_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    // Graphs keyed by the parent module ("" for the crate's top level).
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut edge_count = 0;
    for file in &files {
        let module = module_of(&root, file);
        if module.is_empty() || module == ["module_graph"] {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read a source file");
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        for mut target in named_paths(&code) {
            // Paths inside `super::` are not followed: within a directory
            // module they are covered by its own `crate::` paths.
            if target[0] != module[0] {
                graphs
                    .entry(String::new())
                    .or_default()
                    .entry(module[0].clone())
                    .or_default()
                    .insert(target.swap_remove(0));
                edge_count += 1;
            } else if module.len() > 1 && target.len() > 1 && target[1] != module[1] {
                graphs
                    .entry(module[0].clone())
                    .or_default()
                    .entry(module[1].clone())
                    .or_default()
                    .insert(target[1].clone());
            }
        }
    }
    assert!(
        edge_count > 50,
        "the sources were not read: {edge_count} edges"
    );
    for (parent, edges) in &graphs {
        if MUTUALLY_RECURSIVE.contains(&parent.as_str()) {
            continue;
        }
        if let Some(cycle) = find_cycle(edges) {
            let place = if parent.is_empty() {
                "the crate's modules".to_owned()
            } else {
                format!("the submodules of `{parent}`")
            };
            panic!("import cycle among {place}: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn reads_grouped_and_inline_paths() {
    let paths = named_paths(
        "use crate::{auth::{A, B}, error};\nlet x = crate::cache::etag(v);\n$crate::support::x;\n\
         use crate::objects::{self, city::C, connection::{D, E}};",
    );
    let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    let expected = vec![
        path(&["auth", "A"]),
        path(&["auth", "B"]),
        path(&["error"]),
        path(&["cache", "etag"]),
        path(&["objects"]),
        path(&["objects", "city"]),
        path(&["objects", "connection"]),
    ];
    assert_eq!(paths, expected);
}
