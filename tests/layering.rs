//! The architecture as a test: dependencies point one way (policy → store → service → web →
//! binary), only the store links RocksDB, the domain has no HTTP types, and no module imports a
//! module that imports it.
//!
//! Reads `cargo metadata` (no network: `--offline`, for the host platform only, whose packages a
//! build has already fetched) and the sources of every workspace crate.
#![allow(clippy::unwrap_used)] // tests and benches may unwrap

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Workspace crates by layer: a crate may depend (normal and build dependencies) only on
/// workspace crates of a lower layer. `esigd-testkit` is a dev-dependency only.
///
/// `esigd-net` (the accept loops) sits above the domain, since it is HTTP, and below everything
/// that serves HTTP: esigd's web layer and the reference Remote SCD service both use it.
const LAYERS: &[(&str, u32)] = &[
    ("esigd-reload", 0),
    ("esigd-hsm", 0),
    ("esigd-pki", 0),
    ("esigd-ledger", 0),
    ("esigd-ca", 1),
    ("esigd-tsa", 1),
    ("esigd-scd", 0),
    ("esigd-formats", 1),
    ("esigd-store", 2),
    ("esigd-service", 3),
    ("esigd-net", 4),
    ("esigd-web", 5),
    ("esigd-remote-scd", 6),
    ("esigd-device", 6),
    ("esig", 6),
    ("esig-wasm", 7),
    ("esigd", 6),
    ("esigd-integration", 7),
];

/// Crates the domain (esigd-service) and everything below it must not depend on directly.
const HTTP_CRATES: &[&str] = &["axum", "hyper", "hyper-util", "http", "tower", "prometheus"];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(root().join("Cargo.toml"))
        .args(["--filter-platform", host_triple()])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

/// The platform this test was built for (cargo's target triple of the host).
fn host_triple() -> &'static str {
    if cfg!(all(
        target_arch = "x86_64",
        target_os = "linux",
        target_env = "gnu"
    )) {
        "x86_64-unknown-linux-gnu"
    } else if cfg!(all(
        target_arch = "aarch64",
        target_os = "linux",
        target_env = "gnu"
    )) {
        "aarch64-unknown-linux-gnu"
    } else {
        panic!("tests/layering.rs: add this platform's target triple")
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (package name, manifest dir, direct non-dev dependencies by name).
fn workspace_packages(meta: &Value) -> Vec<(String, PathBuf, Vec<String>)> {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            let dir = Path::new(p["manifest_path"].as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf();
            (p["name"].as_str().unwrap().to_owned(), dir, deps)
        })
        .collect()
}

fn layer(name: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

#[test]
fn dependencies_point_down_and_only_the_store_links_rocksdb() {
    let meta = metadata();
    let packages = workspace_packages(&meta);
    let mut problems = Vec::new();
    for (name, _, deps) in &packages {
        if name == "esigd-testkit" {
            continue;
        }
        let Some(own) = layer(name) else {
            problems.push(format!("{name}: not placed in LAYERS (tests/layering.rs)"));
            continue;
        };
        for dep in deps {
            if dep == "esigd-testkit" {
                problems.push(format!(
                    "{name} depends on esigd-testkit outside dev-dependencies"
                ));
            }
            if let Some(l) = layer(dep)
                && l >= own
            {
                problems.push(format!("{name} (layer {own}) depends on {dep} (layer {l})"));
            }
            if dep == "rocksdb" && name != "esigd-store" {
                problems.push(format!("{name} depends on rocksdb: only esigd-store may"));
            }
            if own <= layer("esigd-service").unwrap() && HTTP_CRATES.contains(&dep.as_str()) {
                problems.push(format!(
                    "{name} depends on {dep}: the domain and the layers below it have no HTTP types"
                ));
            }
        }
    }
    // The policy crates see none of the HTTP stack or RocksDB even transitively.
    for name in [
        "esigd-hsm",
        "esigd-pki",
        "esigd-ca",
        "esigd-tsa",
        "esigd-scd",
    ] {
        for dep in transitive_deps(&meta, name) {
            if dep == "rocksdb" || HTTP_CRATES.contains(&dep.as_str()) {
                problems.push(format!("{name} reaches {dep} through its dependencies"));
            }
        }
    }
    // The accept loops know no domain: no store, RocksDB, CA or service, not even transitively
    // (the Remote SCD service uses them too); only the shared reloadable cell.
    for dep in transitive_deps(&meta, "esigd-net") {
        if dep == "rocksdb"
            || dep == "librocksdb-sys"
            || (dep.starts_with("esigd") && dep != "esigd-reload")
        {
            problems.push(format!(
                "esigd-net reaches {dep}: the accept loops depend on no esigd crate but esigd-reload"
            ));
        }
    }
    // The reference Remote SCD service (and device) are other parties: they never hold the
    // appliance's store, CA or domain, not even transitively.
    for name in ["esigd-remote-scd", "esigd-device"] {
        for dep in transitive_deps(&meta, name) {
            if matches!(
                dep.as_str(),
                "rocksdb"
                    | "esigd-store"
                    | "esigd-ca"
                    | "esigd-tsa"
                    | "esigd-service"
                    | "esigd-web"
                    | "esigd"
            ) {
                problems.push(format!("{name} reaches {dep}: a separate party must not"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

/// Names of the packages `name` depends on, directly or not (normal dependencies only).
fn transitive_deps(meta: &Value, name: &str) -> BTreeSet<String> {
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let packages = meta["packages"].as_array().unwrap();
    let name_of = |id: &str| -> String {
        packages
            .iter()
            .find(|p| p["id"].as_str() == Some(id))
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let root = packages
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{name} is not a package of the workspace"));
    let mut seen = BTreeSet::new();
    let mut todo = vec![root["id"].as_str().unwrap()];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for d in nodes[id]["deps"].as_array().unwrap() {
            let normal = d["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                todo.push(d["pkg"].as_str().unwrap());
            }
        }
    }
    seen.remove(root["id"].as_str().unwrap());
    seen.into_iter().map(name_of).collect()
}

/// The module path of a source file under `src/` (`routes/mod.rs` → `routes`, `lib.rs` → ``).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The paths a line names after `crate::` or `super::` (grouped imports expanded one level).
fn referenced_paths(line: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            let mut p = here.to_vec();
            p.pop();
            p
        }),
    ] {
        let mut rest = line;
        while let Some(i) = rest.find(anchor) {
            // `super::` inside a longer identifier is not ours; neither is `$crate::`.
            let before = rest[..i].chars().last();
            rest = &rest[i + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
                continue;
            }
            let tails: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').collect()
            } else {
                vec![rest]
            };
            for tail in tails {
                let mut path = base.clone();
                for seg in tail.trim().split("::") {
                    let ident: String = seg
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if ident.is_empty() || ident == "self" {
                        break;
                    }
                    path.push(ident);
                    if seg.len() != seg.trim_end().len() || seg.contains(['{', ' ', '(', ';', ','])
                    {
                        break;
                    }
                }
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_module_that_imports_it() {
    let meta = metadata();
    let mut problems = Vec::new();
    for (name, dir, _) in workspace_packages(&meta) {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for f in &files {
            let here = module_of(&src, f);
            let text = std::fs::read_to_string(f).unwrap();
            // Unit tests (`#[cfg(test)] mod tests` at the end of a file) are not the module's
            // imports.
            let body = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for line in body.lines() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for path in referenced_paths(code, &here) {
                    // The longest prefix that is a module of this crate.
                    let target = (0..=path.len())
                        .rev()
                        .map(|n| path[..n].to_vec())
                        .find(|p| modules.contains(p))
                        .unwrap_or_default();
                    // A module may use its own items and its ancestors' (a parent declares its
                    // children; that is not an import back).
                    if target == here || here.starts_with(&target) {
                        continue;
                    }
                    edges.entry(here.clone()).or_default().insert(target);
                }
            }
        }
        // Any edge a → b with a path b → … → a is a circle.
        for (from, tos) in &edges {
            for to in tos {
                let mut seen = BTreeSet::new();
                let mut todo = vec![to.clone()];
                while let Some(m) = todo.pop() {
                    if &m == from {
                        problems.push(format!(
                            "{name}: {} imports {} which leads back to it",
                            show(from),
                            show(to)
                        ));
                        break;
                    }
                    if seen.insert(m.clone()) {
                        todo.extend(edges.get(&m).into_iter().flatten().cloned());
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "import circles:\n{}",
        problems.join("\n")
    );
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "crate root".into()
    } else {
        m.join("::")
    }
}
