//! The layers of docs/ARCHITECTURE.md, checked on the source: which module
//! of the `redirector` crate may import which. Reads the files (no build,
//! no root), so a new import across a layer fails here with its file.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Top-level modules and the modules of ours each may import. The daemon
/// and the CLI sit on top and may import anything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("decide", &[]),
    ("fleet", &["decide"]),
    ("resolve", &[]),
    ("error_chain", &[]),
    ("lock", &[]),
    ("logging", &[]),
    ("datapath", &["error_chain"]),
    ("health", &["config", "error_chain"]),
    ("status", &["decide"]),
    ("admin", &["status"]),
    ("metrics", &["datapath", "logging", "status"]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../redirector/src")
}

/// Every `.rs` file under `dir`, test files left out.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read redirector/src") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "tests" {
                files(&path, out);
            }
        } else if name.ends_with(".rs") && name != "tests.rs" && name != "test_support.rs" {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`daemon/service.rs` -> daemon).
fn top_module(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The file's code before its unit tests.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).expect("read source");
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named after `crate::` in `code`, including the
/// members of a `crate::{a, b::c}` group.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[j..]);
                        if !name.is_empty() && name != "self" {
                            out.insert(name.to_string());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn imports() -> BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut graph: BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> = BTreeMap::new();
    for f in all {
        let from = top_module(&f);
        if from == "lib" || from == "main" {
            continue;
        }
        for to in crate_refs(&code(&f)) {
            if to != from {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .push(f.clone());
            }
        }
    }
    graph
}

#[test]
fn the_crate_ref_scanner_reads_groups_and_paths() {
    let refs = crate_refs(
        "use crate::{\n    admin::{self, Request},\n    config,\n};\nlet x = crate::metrics::LIMITS;",
    );
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["admin", "config", "metrics"]
    );
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let graph = imports();
    assert!(graph.contains_key("daemon"), "scanned nothing: {graph:?}");
    let mut wrong = Vec::new();
    for (module, allowed) in ALLOWED {
        for (to, files) in graph.get(*module).into_iter().flatten() {
            if !allowed.contains(&to.as_str()) {
                wrong.push(format!("{module} imports {to} in {files:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against docs/ARCHITECTURE.md:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flat_map(|e| e.keys()) {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        false
    };
    for (from, edges) in &graph {
        for to in edges.keys() {
            assert!(!reaches(to, from), "{from} -> {to} -> ... -> {from}");
        }
    }
}

#[test]
fn the_probe_loop_does_not_import_its_service() {
    let probe = code(&src().join("daemon/probe.rs"));
    assert!(
        !probe.contains("super::service") && !probe.contains("daemon::service"),
        "daemon/probe.rs imports daemon/service.rs, which imports it"
    );
}
