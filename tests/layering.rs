//! The crate's floors, enforced: every `crate::`, `super::` and `self::` path in `src/`
//! (outside `#[cfg(test)]` modules) is resolved to the module it names, and the test fails
//! on an import from a lower floor to a higher one, on HTTP (or anything but the source
//! facade) reaching into a source adapter, on one adapter importing another, and on any
//! circle between sibling modules. Each failure names the file and line.
//!
//! The floors (bottom first) are those of `src/lib.rs`'s module map and
//! `docs/architecture.md`:
//!
//! | floor | modules |
//! |---|---|
//! | 0 | `position` (the position trait), `event_id` (the id wire form), `sse` (frames), `problems` (config problems), `metrics` |
//! | 1 | `bus` |
//! | 2 | `source` (facade and adapters), `auth` |
//! | 3 | `config` |
//! | 4 | `http` |
//! | 5 | the crate root (`lib.rs`: startup), `route_set`, `watch` |

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Floor of each top-level module; the crate root (`""`) is the top.
const FLOORS: &[(&str, u8)] = &[
    ("position", 0),
    ("event_id", 0),
    ("sse", 0),
    ("problems", 0),
    ("metrics", 0),
    ("bus", 1),
    ("source", 2),
    ("auth", 2),
    ("config", 3),
    ("http", 4),
    ("route_set", 5),
    ("watch", 5),
    ("", 5),
];

/// Folders under `src/source/` that are adapters (everything else there is the facade).
fn is_adapter_folder(src: &Path, name: &str) -> bool {
    src.join("source").join(name).is_dir()
}

type Module = Vec<String>;

/// Every file module of the crate: its path segments and its file.
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let mut segs: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
                segs.pop();
            }
            if segs == ["main"] {
                continue; // the binary: a crate of its own
            }
            out.insert(segs, p);
        }
    }
    out
}

/// The text of a file without its `#[cfg(test)]` modules and comments, line by line.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut skip_depth: Option<i32> = None;
    let mut pending_cfg_test = false;
    let mut depth = 0i32;
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find("//") {
            Some(at) if !raw[..at].contains('"') => &raw[..at],
            _ => raw,
        };
        let trimmed = line.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        if pending_cfg_test && skip_depth.is_none() && trimmed.contains("mod ") {
            if trimmed.ends_with(';') {
                pending_cfg_test = false;
                continue; // `#[cfg(test)] mod tests;`: a file of its own, skipped below
            }
            skip_depth = Some(depth);
        }
        pending_cfg_test = false;
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if let Some(d) = skip_depth {
            depth += opens - closes;
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        depth += opens - closes;
        out.push((i + 1, line.to_owned()));
    }
    out
}

/// Files that are test modules of their parent (`#[cfg(test)] mod tests;`).
fn test_files(mods: &BTreeMap<Module, PathBuf>) -> BTreeSet<Module> {
    let mut out = BTreeSet::new();
    for (m, file) in mods {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for w in lines.windows(2) {
            if w[0].trim().starts_with("#[cfg(test)]") {
                if let Some(name) = w[1]
                    .trim()
                    .strip_prefix("mod ")
                    .and_then(|r| r.strip_suffix(';'))
                {
                    let mut child = m.clone();
                    child.push(name.trim().to_owned());
                    out.insert(child);
                }
            }
        }
    }
    out
}

/// Paths (`crate::a::b`, `super::x`, grouped `use crate::{a, b::c}`) in one line, as
/// written, with the prefix kept.
fn paths_in(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = line[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            let before = line[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // part of a longer path, e.g. `x::super::`, or `$crate::`
            }
            let rest = &line[at..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches(':').to_owned();
            if rest[end..].starts_with('{') {
                // A group: each member is a path of its own.
                let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
                for member in rest[end + 1..close].split(',') {
                    let m = member.trim().split(" as ").next().unwrap_or("").trim();
                    let m = m.trim_end_matches("::{").trim();
                    if !m.is_empty() && m != "self" {
                        out.push(format!("{path}::{m}"));
                    } else if m == "self" {
                        out.push(path.clone());
                    }
                }
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The file module a path written in module `at` names (the longest known prefix).
fn resolve(at: &Module, path: &str, mods: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Module = match segs.first().copied() {
        Some("crate") => {
            segs.remove(0);
            Vec::new()
        }
        Some("self") => {
            segs.remove(0);
            at.clone()
        }
        Some("super") => {
            let mut b = at.clone();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                b.pop();
            }
            b
        }
        _ => return None,
    };
    let mut best = if mods.contains_key(&base) {
        Some(base.clone())
    } else {
        None
    };
    for s in segs {
        base.push(s.to_owned());
        if mods.contains_key(&base) {
            best = Some(base.clone());
        }
    }
    best
}

fn floor_of(m: &Module) -> u8 {
    let top = m.first().map_or("", String::as_str);
    FLOORS
        .iter()
        .find(|(name, _)| *name == top)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("module `{}` has no floor in FLOORS", m.join("::")))
}

/// The adapter a module belongs to (`source::kafka::plan` → `kafka`).
fn adapter_of(src: &Path, m: &Module) -> Option<String> {
    match m.as_slice() {
        [s, a, ..] if s == "source" && is_adapter_folder(src, a) => Some(a.clone()),
        _ => None,
    }
}

struct Import {
    from: Module,
    to: Module,
    file: PathBuf,
    line: usize,
    text: String,
}

fn imports(src: &Path) -> (Vec<Import>, BTreeMap<Module, PathBuf>) {
    let mods = modules(src);
    let tests = test_files(&mods);
    let mut out = Vec::new();
    for (m, file) in &mods {
        if tests.contains(m) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in code_lines(&text) {
            for p in paths_in(&line) {
                if let Some(to) = resolve(m, &p, &mods) {
                    if &to != m {
                        out.push(Import {
                            from: m.clone(),
                            to,
                            file: file.clone(),
                            line: n,
                            text: line.trim().to_owned(),
                        });
                    }
                }
            }
        }
    }
    (out, mods)
}

fn at(i: &Import) -> String {
    format!("{}:{}: `{}`", i.file.display(), i.line, i.text)
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Layering rules between two modules; `None` when the import is allowed.
fn rule_broken(src: &Path, i: &Import) -> Option<String> {
    let (ff, ft) = (floor_of(&i.from), floor_of(&i.to));
    if ft > ff {
        return Some(format!(
            "`{}` (floor {ff}) imports `{}` (floor {ft}, higher)",
            name(&i.from),
            name(&i.to)
        ));
    }
    let (af, at_) = (adapter_of(src, &i.from), adapter_of(src, &i.to));
    if let Some(target) = &at_ {
        let from_facade = i.from.first().is_some_and(|s| s == "source") && af.is_none();
        match &af {
            Some(a) if a != target => {
                return Some(format!(
                    "adapter `{a}` imports adapter `{target}` (`{}`)",
                    name(&i.to)
                ))
            }
            Some(_) => {}
            None if from_facade => {}
            None => {
                return Some(format!(
                    "`{}` reaches into adapter `{}`; only the source facade may",
                    name(&i.from),
                    name(&i.to)
                ))
            }
        }
    }
    None
}

/// The sibling units of an import: the children of the deepest module holding both
/// ends, when both ends lie strictly inside it (parent facades and their children are
/// not siblings).
fn siblings(i: &Import) -> Option<(Module, Module)> {
    let common = i.from.iter().zip(&i.to).take_while(|(a, b)| a == b).count();
    if common >= i.from.len() || common >= i.to.len() {
        return None;
    }
    Some((i.from[..=common].to_vec(), i.to[..=common].to_vec()))
}

/// Circles among sibling units, each as the list of units on it.
fn circles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let mut found = Vec::new();
    let mut seen_sets: BTreeSet<BTreeSet<Module>> = BTreeSet::new();
    for start in edges.keys() {
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(Module, Vec<Module>)> = vec![(start.clone(), vec![start.clone()])];
        let mut visited = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let set: BTreeSet<Module> = path.iter().cloned().collect();
                    if seen_sets.insert(set) {
                        found.push(path.clone());
                    }
                } else if visited.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found
}

fn check(src: &Path) -> Vec<String> {
    let (imports, _) = imports(src);
    let mut problems = Vec::new();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    let mut example: BTreeMap<(Module, Module), String> = BTreeMap::new();
    for i in &imports {
        if let Some(why) = rule_broken(src, i) {
            let p = format!("{}\n    {why}", at(i));
            if !problems.contains(&p) {
                problems.push(p);
            }
        }
        if let Some((a, b)) = siblings(i) {
            edges.entry(a.clone()).or_default().insert(b.clone());
            example.entry((a, b)).or_insert_with(|| at(i));
        }
    }
    for c in circles(&edges) {
        let mut msg = format!(
            "circle between modules: {}",
            c.iter()
                .chain(c.first())
                .map(name)
                .collect::<Vec<_>>()
                .join(" -> ")
        );
        for w in c.iter().chain(c.first()).collect::<Vec<_>>().windows(2) {
            if let Some(e) = example.get(&(w[0].clone(), w[1].clone())) {
                msg.push_str(&format!("\n    {e}"));
            }
        }
        problems.push(msg);
    }
    problems
}

#[test]
fn floors_hold_and_modules_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = check(&src);
    assert!(
        problems.is_empty(),
        "{} layering problem(s) (floors: see tests/layering.rs and docs/architecture.md):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The checker itself finds what it must: a miniature crate with one downward-floor
/// violation, one adapter reach-in and one circle.
#[test]
fn checker_catches_violations() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |p: &str, text: &str| {
        let f = src.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod sse; pub mod bus; pub mod source; pub mod http;\n",
    );
    write("sse/mod.rs", "use crate::bus::Hub;\n");
    write("bus/mod.rs", "pub struct Hub;\n");
    write(
        "source/mod.rs",
        "pub mod kafka;\nuse crate::source::kafka::K;\n",
    );
    write("source/kafka/mod.rs", "pub struct K;\n");
    write(
        "http/mod.rs",
        "mod a; mod b;\nuse crate::source::kafka::K;\n",
    );
    write("http/a.rs", "use super::b::B;\npub struct A;\n");
    write(
        "http/b.rs",
        "use super::a::A;\npub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::route_set::X;\n}\n",
    );
    let problems = check(src);
    let all = problems.join("\n");
    assert!(
        all.contains("sse/mod.rs:1") && all.contains("`sse` (floor 0) imports `bus` (floor 1"),
        "{all}"
    );
    assert!(
        all.contains("http/mod.rs:2") && all.contains("reaches into adapter `source::kafka`"),
        "{all}"
    );
    assert!(
        all.contains("circle between modules: http::a -> http::b -> http::a")
            || all.contains("circle between modules: http::b -> http::a -> http::b"),
        "{all}"
    );
    assert!(
        !all.contains("route_set"),
        "test modules are not checked: {all}"
    );
    assert!(!all.contains("source/mod.rs"), "the facade may: {all}");
    assert_eq!(problems.len(), 3, "{all}");
}
