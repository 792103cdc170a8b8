//! The crate graph as ARCHITECTURE.md draws it: every `cityhub-*` edge of
//! every workspace member's `[dependencies]`, compared with the table
//! below, so an edge is added on purpose (table, diagram and all) or not at
//! all. The surfaces — GraphQL, the web pages and feeds, the dashboard and
//! the publishing desk — sit side by side on the application layer and do
//! not import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every member and the `cityhub-*` crates it depends on (normal
/// dependencies; tests and benches may reach further).
const EDGES: &[(&str, &[&str])] = &[
    (
        "cityhub",
        &[
            "cityhub-app",
            "cityhub-auth",
            "cityhub-dashboard",
            "cityhub-desk",
            "cityhub-domain",
            "cityhub-graphql",
            "cityhub-sources",
            "cityhub-storage",
            "cityhub-web",
        ],
    ),
    (
        "cityhub-bench",
        &["cityhub-domain", "cityhub-graphql", "cityhub-storage"],
    ),
    (
        "cityhub-web",
        &["cityhub-app", "cityhub-domain", "cityhub-storage"],
    ),
    ("cityhub-dashboard", &["cityhub-app"]),
    ("cityhub-desk", &["cityhub-app"]),
    (
        "cityhub-graphql",
        &[
            "cityhub-app",
            "cityhub-auth",
            "cityhub-domain",
            "cityhub-events",
            "cityhub-sources",
            "cityhub-storage",
        ],
    ),
    (
        "cityhub-sources",
        &["cityhub-app", "cityhub-domain", "cityhub-storage"],
    ),
    ("cityhub-events", &["cityhub-domain", "cityhub-storage"]),
    (
        "cityhub-app",
        &["cityhub-auth", "cityhub-domain", "cityhub-storage"],
    ),
    ("cityhub-auth", &["cityhub-domain"]),
    ("cityhub-storage", &["cityhub-domain", "cityhub-migrations"]),
    ("cityhub-migrations", &[]),
    ("cityhub-domain", &[]),
];

/// The surfaces, which must not depend on each other.
const SURFACES: &[&str] = &[
    "cityhub-graphql",
    "cityhub-web",
    "cityhub-dashboard",
    "cityhub-desk",
];

/// Edges between surfaces that remain, each with what still keeps it.
/// The goal is an empty list.
const SURFACE_EDGES_LEFT: &[(&str, &str, &str)] = &[];

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

/// Every workspace member's name and its `cityhub-*` dependencies.
fn actual_edges() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = read_toml(&root.join("Cargo.toml"));
    let members = workspace["workspace"]["members"]
        .as_array()
        .expect("workspace.members is a list");
    members
        .iter()
        .map(|member| {
            let dir = member.as_str().expect("a member is a path");
            let manifest = read_toml(&root.join(dir).join("Cargo.toml"));
            let name = manifest["package"]["name"]
                .as_str()
                .expect("package.name")
                .to_owned();
            let deps = manifest
                .get("dependencies")
                .and_then(toml::Value::as_table)
                .map(|deps| {
                    deps.keys()
                        .filter(|d| d.starts_with("cityhub-"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            (name, deps)
        })
        .collect()
}

fn expected_edges() -> BTreeMap<String, BTreeSet<String>> {
    EDGES
        .iter()
        .map(|(name, deps)| {
            (
                (*name).to_owned(),
                deps.iter().map(|d| (*d).to_owned()).collect(),
            )
        })
        .collect()
}

#[test]
fn crate_graph_is_the_one_drawn() {
    let actual = actual_edges();
    let expected = expected_edges();
    let mut differences = Vec::new();
    for name in actual
        .keys()
        .chain(expected.keys())
        .collect::<BTreeSet<_>>()
    {
        let empty = BTreeSet::new();
        let has = actual.get(name).unwrap_or(&empty);
        let drawn = expected.get(name).unwrap_or(&empty);
        if !actual.contains_key(name) {
            differences.push(format!("{name} is in the table but not a member"));
        }
        if !expected.contains_key(name) {
            differences.push(format!("{name} is a member the table does not list"));
        }
        for dep in has.difference(drawn) {
            differences.push(format!("{name} -> {dep} is not drawn"));
        }
        for dep in drawn.difference(has) {
            differences.push(format!("{name} -> {dep} is drawn but gone"));
        }
    }
    assert!(
        differences.is_empty(),
        "the crate graph changed; update ARCHITECTURE.md's diagram and this table:\n{}",
        differences.join("\n")
    );
}

#[test]
fn surfaces_do_not_import_each_other() {
    let actual = actual_edges();
    let mut found = Vec::new();
    for surface in SURFACES {
        for dep in actual.get(*surface).into_iter().flatten() {
            if SURFACES.contains(&dep.as_str())
                && !SURFACE_EDGES_LEFT
                    .iter()
                    .any(|(from, to, _)| from == surface && to == dep)
            {
                found.push(format!("{surface} -> {dep}"));
            }
        }
    }
    assert!(found.is_empty(), "surfaces import each other: {found:?}");
    for (from, to, why) in SURFACE_EDGES_LEFT {
        assert!(
            actual.get(*from).is_some_and(|deps| deps.contains(*to)),
            "{from} -> {to} is gone ({why}): remove it from SURFACE_EDGES_LEFT"
        );
    }
}

#[test]
fn storage_decides_nothing() {
    // Repositories and the database only: no keys, no use cases.
    let actual = actual_edges();
    let storage = &actual["cityhub-storage"];
    for forbidden in ["cityhub-auth", "cityhub-app"] {
        assert!(!storage.contains(forbidden), "storage -> {forbidden}");
    }
}
