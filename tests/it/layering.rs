//! The layering rule (docs/architecture.md): the top-level modules of
//! `src/` import each other without cycles. Read from the sources: every
//! `crate::X` path outside comments, strings and `#[cfg(test)]` code is an
//! import of top-level module `X` by the module whose file it is in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Importer → imported → the files that import it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// The source text without comments, string and character literals, and
/// with every `#[cfg(test)]` item removed. A `#[cfg(test)] mod x;`
/// declaration is returned in the second value (its file is test code).
fn production_code(text: &str) -> (String, Vec<String>) {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && at(&c, i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(&c, i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(&c, i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(&c, i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (at(&c, i + 1) == '"' || (at(&c, i + 1) == '#' && !is_ident(prev(&c, i))))
        {
            // Raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < c.len() && c[j] == '#' {
                hashes += 1;
                j += 1;
            }
            if j < c.len() && c[j] == '"' && !is_ident(prev(&c, i)) {
                j += 1;
                'raw: while j < c.len() {
                    if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break 'raw;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            } else {
                out.push(c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\'') or a lifetime ('a).
            if at(&c, i + 1) == '\\' {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(&c, i + 2) == '\'' {
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
    strip_test_items(&out)
}

fn at(c: &[char], i: usize) -> char {
    c.get(i).copied().unwrap_or('\0')
}

fn prev(c: &[char], i: usize) -> char {
    if i == 0 { ' ' } else { c[i - 1] }
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Removes each `#[cfg(test)]` item (up to its `;` or its balanced
/// braces); collects the names of `#[cfg(test)] mod x;` declarations.
fn strip_test_items(code: &str) -> (String, Vec<String>) {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut test_mods = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(ATTR) {
        out.push_str(&rest[..at]);
        let item = &rest[at + ATTR.len()..];
        let semi = item.find(';');
        let brace = item.find('{');
        let end = match (semi, brace) {
            (Some(s), b) if b.is_none_or(|b| s < b) => {
                let decl = item[..s].trim();
                if let Some(name) = decl.strip_prefix("mod ").or(decl.strip_prefix("pub mod ")) {
                    test_mods.push(name.trim().to_owned());
                }
                s + 1
            }
            (_, Some(b)) => {
                let mut depth = 0;
                let mut end = item.len();
                for (k, ch) in item[b..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            _ => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    (out, test_mods)
}

/// The top-level modules `code` names through `crate::` paths, including
/// `crate::{a, b::c}` groups.
fn imported(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = code.len() - rest.len() + at;
        rest = &rest[at + "crate::".len()..];
        // `$crate::` and identifiers ending in `crate` are not paths of
        // this crate.
        if before > 0 && {
            let ch = code[..before].chars().next_back().unwrap_or(' ');
            is_ident(ch) || ch == '$'
        } {
            continue;
        }
        let trimmed = rest.trim_start();
        if let Some(group) = trimmed.strip_prefix('{') {
            // The first segment of every path in the (possibly nested)
            // group, at depth one.
            let mut depth = 1;
            let mut segment_start = true;
            let mut word = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                if depth == 1 && is_ident(ch) {
                    if segment_start {
                        word.push(ch);
                    }
                } else if depth == 1 && ch == ',' {
                    segment_start = true;
                    if !word.is_empty() {
                        found.insert(std::mem::take(&mut word));
                    }
                } else if !ch.is_whitespace() || !word.is_empty() {
                    if !word.is_empty() {
                        found.insert(std::mem::take(&mut word));
                    }
                    segment_start = false;
                }
            }
            if !word.is_empty() {
                found.insert(word);
            }
        } else {
            let word: String = trimmed.chars().take_while(|c| is_ident(*c)).collect();
            if !word.is_empty() {
                found.insert(word);
            }
        }
    }
    found.remove("self");
    found
}

/// The import graph of the top-level modules of `files` (path relative
/// to `src/`, text). `lib.rs` and `main.rs` are the crate root and the
/// binary, not modules.
fn graph(files: &[(String, String)]) -> Graph {
    let mut test_files = BTreeSet::new();
    let mut codes = Vec::new();
    for (path, text) in files {
        let (code, test_mods) = production_code(text);
        let dir = Path::new(path).parent().unwrap_or(Path::new(""));
        let stem = Path::new(path).file_stem().unwrap().to_string_lossy();
        let base = if stem == "mod" || stem == "lib" || stem == "main" {
            dir.to_path_buf()
        } else {
            dir.join(&*stem)
        };
        for m in test_mods {
            test_files.insert(base.join(format!("{m}.rs")));
            test_files.insert(base.join(&m).join("mod.rs"));
        }
        codes.push((path.clone(), code));
    }
    let mut graph = Graph::new();
    for (path, code) in codes {
        if path == "lib.rs" || path == "main.rs" || test_files.contains(Path::new(&path)) {
            continue;
        }
        let top = path
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        let edges = graph.entry(top.clone()).or_default();
        for m in imported(&code) {
            if m != top {
                edges.entry(m).or_default().insert(path.clone());
            }
        }
    }
    graph
}

/// Every cycle's modules (strongly connected components of more than
/// one module), Tarjan's algorithm.
fn knots(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        knots: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    self.low.insert(v, self.low[v].min(self.low[w]));
                } else if self.on_stack.contains(w) {
                    self.low.insert(v, self.low[v].min(self.index[w]));
                }
            }
            if self.low[v] == self.index[v] {
                let mut knot = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    knot.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if knot.len() > 1 {
                    knot.sort();
                    self.knots.push(knot);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        knots: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.knots
}

/// Which files make `knot` a knot: each import between two of its modules.
fn explain(graph: &Graph, knot: &[String]) -> String {
    let mut lines = Vec::new();
    for a in knot {
        for (b, files) in graph.get(a).into_iter().flatten() {
            if knot.contains(b) {
                lines.push(format!("  {a} -> {b} (in {files:?})"));
            }
        }
    }
    lines.join("\n")
}

fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).expect("readable")));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.sort();
    out
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let graph = graph(&sources());
    // The reader sees the imports there are (so this test can fail).
    assert!(graph["app"].contains_key("pipeline"), "{graph:?}");
    assert!(graph["source"].contains_key("pipeline"), "{graph:?}");
    let mut mutual = Vec::new();
    for (a, edges) in &graph {
        for (b, files) in edges {
            if a < b
                && let Some(back) = graph.get(b).and_then(|e| e.get(a))
            {
                mutual.push(format!("{a} <-> {b}: {files:?} and {back:?}"));
            }
        }
    }
    assert!(
        mutual.is_empty(),
        "top-level modules that import each other (see the layering rule in \
         docs/architecture.md):\n{}",
        mutual.join("\n")
    );
    let knots = knots(&graph);
    assert!(
        knots.is_empty(),
        "import cycles between top-level modules (see the layering rule in \
         docs/architecture.md):\n{}",
        knots
            .iter()
            .map(|k| explain(&graph, k))
            .collect::<Vec<_>>()
            .join("\n--\n")
    );
}

#[test]
fn config_is_a_leaf() {
    let graph = graph(&sources());
    let imports: Vec<_> = graph.get("config").into_iter().flatten().collect();
    assert!(
        imports.is_empty(),
        "config/ must import no other module of the crate: {imports:?}"
    );
}

#[test]
fn the_reader_sees_paths_and_skips_comments_strings_and_tests() {
    let files = |a: &str, b: &str| {
        vec![
            ("a/mod.rs".to_owned(), a.to_owned()),
            ("b.rs".to_owned(), b.to_owned()),
            ("b/tests.rs".to_owned(), "use crate::a::X;".to_owned()),
        ]
    };
    // A knot through a group import and a plain path.
    let g = graph(&files(
        "use crate::{event::E, b::{self, Y}};",
        "fn f() { crate::a::g() }",
    ));
    assert_eq!(knots(&g), [vec!["a".to_owned(), "b".to_owned()]]);
    assert!(g["a"].contains_key("event"));
    // Comments, strings, characters and test code are not imports.
    let g = graph(&files(
        "use crate::b::Y;",
        "//! [`crate::a`]\n/* crate::a */ const S: &str = \"crate::a\"; const C: char = '\"';\n\
         fn f<'a>(x: &'a str) {}\n#[cfg(test)]\nmod tests { use crate::a::X; }\n\
         #[cfg(test)]\nmod tests;\nconst R: &str = r#\"crate::a\"#;",
    ));
    assert!(knots(&g).is_empty(), "{g:?}");
    assert!(!g.get("b").is_some_and(|e| e.contains_key("a")), "{g:?}");
}

/// Lines of production code a source file may hold before its tests
/// (issue 18: a file a reader can hold in mind; split it when it grows).
const MAX_LINES_BEFORE_TESTS: usize = 800;

/// The lines of `text` before its first `#[cfg(test)]` item.
fn lines_before_tests(text: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start() == "#[cfg(test)]")
        .unwrap_or_else(|| text.lines().count())
}

#[test]
fn no_source_file_is_over_800_lines_before_its_tests() {
    assert_eq!(lines_before_tests("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
    assert_eq!(lines_before_tests("a\nb\nc\n"), 3);
    let long: Vec<String> = sources()
        .into_iter()
        .map(|(file, text)| (file, lines_before_tests(&text)))
        .filter(|&(_, n)| n > MAX_LINES_BEFORE_TESTS)
        .map(|(file, n)| format!("src/{file}: {n}"))
        .collect();
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES_BEFORE_TESTS} lines before their tests (split them):\n{}",
        long.join("\n")
    );
}
