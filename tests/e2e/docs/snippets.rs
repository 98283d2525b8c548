//! The documentation cannot rot: every fenced snippet in `README.md`, `CONTRIBUTING.md` and
//! `docs/` is checked. TOML is loaded as sidelog loads a configuration file; YAML and JSON are
//! parsed, and a Kubernetes Pod goes through `sidelog inject`; each shell command is taken
//! apart: sidelog's own (also through `cargo run --`) are parsed by the binary's argument
//! parser, `SIDELOG_*` variables must name configuration keys, cargo's benches and profiles
//! must exist, scripts must be there, and any other program must be one of the tools the docs
//! are allowed to show. A snippet that is none of these fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Programs the docs may show and no test can run here (a cluster, an image builder, a
/// service manager); each of them is named so that a new one is a decision.
const EXTERNAL_TOOLS: &[&str] = &["kubectl", "docker", "podman", "systemctl"];

struct Snippet {
    file: PathBuf,
    line: usize,
    lang: String,
    text: String,
}

impl Snippet {
    fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    let mut pages = Vec::new();
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs/") {
            let path = entry.expect("docs/ entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    files.extend(pages);
    files
}

fn snippets() -> Vec<Snippet> {
    let mut out = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).expect("read doc");
        let mut open: Option<(usize, String, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match (&mut open, line.strip_prefix("```")) {
                (None, Some(lang)) => open = Some((i + 1, lang.trim().to_string(), String::new())),
                (Some(_), Some(_)) => {
                    let (line, lang, text) = open.take().expect("open fence");
                    out.push(Snippet {
                        file: file.strip_prefix(root()).unwrap_or(&file).to_path_buf(),
                        line,
                        lang,
                        text,
                    });
                }
                (Some((_, _, body)), None) => {
                    body.push_str(line);
                    body.push('\n');
                }
                (None, None) => {}
            }
        }
        assert!(
            open.is_none(),
            "{}: a fence is never closed",
            file.display()
        );
    }
    out
}

fn of_lang<'a>(all: &'a [Snippet], lang: &str) -> Vec<&'a Snippet> {
    all.iter().filter(|s| s.lang == lang).collect()
}

#[test]
fn every_snippet_has_a_language_the_tests_know() {
    for s in snippets() {
        assert!(
            ["sh", "toml", "yaml", "json", "text"].contains(&s.lang.as_str()),
            "{}: fence language {:?}: say sh, toml, yaml, json or text",
            s.at(),
            s.lang
        );
    }
}

/// The variables the snippets interpolate (`${POD_NAME}` and the like), as a Pod has them.
fn pod_env() -> Vec<(String, String)> {
    ["POD_NAME", "POD_NAMESPACE", "NODE_NAME"]
        .iter()
        .map(|k| (k.to_string(), "x".to_string()))
        .collect()
}

#[test]
fn toml_snippets_are_valid_configurations() {
    let all = snippets();
    let tomls = of_lang(&all, "toml");
    assert!(!tomls.is_empty(), "the docs show configuration");
    let dir = tempfile::tempdir().expect("tempdir");
    for s in tomls {
        // A snippet shows one part; the rest of a file takes its defaults, and a file needs
        // an input.
        let mut text = s.text.clone();
        if !text.contains("[[inputs]]") {
            text.push_str("\n[[inputs]]\ninclude = [\"/var/log/app/*.log\"]\n");
        }
        let path = dir.path().join("snippet.toml");
        std::fs::write(&path, text).expect("write snippet");
        if let Err(e) = sidelog_shipper::config::Config::load_with_env(&path, &pod_env()) {
            panic!("{}: not a valid configuration: {e}", s.at());
        }
    }
}

#[test]
fn yaml_and_json_snippets_parse_and_pods_inject() {
    let all = snippets();
    for s in of_lang(&all, "json") {
        serde_json::from_str::<serde_json::Value>(&s.text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", s.at()));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for s in of_lang(&all, "yaml") {
        let docs = yaml_rust2::YamlLoader::load_from_str(&s.text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", s.at()));
        let is_manifest = docs.iter().any(|d| !d["apiVersion"].is_badvalue());
        if is_manifest {
            let path = dir.path().join("manifest.yaml");
            std::fs::write(&path, &s.text).expect("write manifest");
            let out = sidelog(&["inject", "-f", path.to_str().expect("utf-8 path")]);
            assert!(
                out.status.success(),
                "{}: sidelog inject refuses it: {}",
                s.at(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn sidelog(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sidelog"))
        .args(args)
        .output()
        .expect("run sidelog")
}

#[test]
fn shell_commands_name_what_exists() {
    let all = snippets();
    let shells = of_lang(&all, "sh");
    assert!(!shells.is_empty(), "the docs show commands");
    let mut checked = 0;
    for s in shells {
        for line in logical_lines(&s.text) {
            for command in split_commands(&line) {
                check_command(&s.at(), &command);
                checked += 1;
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} commands found: the parser lost them"
    );
}

/// Lines joined at a trailing `\`, without comments and blank lines.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = strip_comment(raw);
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    out
}

/// A line up to a `#` that starts a comment: at the start or after white space, outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..i],
            _ => {}
        }
        previous = c;
    }
    line
}

/// The words of each command of a line: split at `|`, `&&`, `;` and `&`, quotes removed,
/// `[...]` around optional arguments dropped.
fn split_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, commands: &mut Vec<Vec<String>>| {
        if *in_word {
            let w = std::mem::take(word);
            let w = w.trim_start_matches('[').trim_end_matches(']').to_string();
            if !w.is_empty() {
                commands.last_mut().expect("a command").push(w);
            }
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '|' | ';' | '&') => {
                end_word(&mut word, &mut in_word, &mut commands);
                if c == '&' && chars.peek() == Some(&'&') {
                    chars.next();
                }
                commands.push(Vec::new());
            }
            (None, c) if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut commands),
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut commands);
    commands.into_iter().filter(|c| !c.is_empty()).collect()
}

fn check_command(at: &str, words: &[String]) {
    // Leading variable assignments: sidelog's own must name a configuration key.
    let mut rest = words;
    while let Some((first, tail)) = rest.split_first() {
        let Some((name, _)) = first.split_once('=') else {
            break;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            break;
        }
        check_variable(at, name);
        rest = tail;
    }
    let Some((program, args)) = rest.split_first() else {
        return;
    };
    match program.as_str() {
        "sidelog" => check_sidelog_args(at, args),
        "cargo" => check_cargo(at, args),
        p if p.starts_with(".ci/") || p.starts_with("docker/") => assert!(
            root().join(p).is_file(),
            "{at}: {p} is not a file of the repository"
        ),
        "kubectl" => {
            // `kubectl exec POD -c sidelog -- sidelog ...` runs one of ours.
            if let Some(i) = args.iter().position(|a| a == "--") {
                check_command(at, &args[i + 1..]);
            }
        }
        p if EXTERNAL_TOOLS.contains(&p) => {}
        p => panic!(
            "{at}: the docs run {p:?}, which no test knows: add it to EXTERNAL_TOOLS or test it"
        ),
    }
}

fn check_variable(at: &str, name: &str) {
    let Some(path) = name.strip_prefix("SIDELOG_") else {
        return;
    };
    // SIDELOG_INPUTS__0__INCLUDE is inputs.include: levels at `__`, list indexes dropped.
    let key: Vec<String> = path
        .split("__")
        .filter(|part| !part.chars().all(|c| c.is_ascii_digit()))
        .map(|part| part.to_ascii_lowercase())
        .collect();
    let key = key.join(".");
    assert!(
        sidelog_shipper::config::all_keys().contains(&key),
        "{at}: {name} names no configuration key ({key})"
    );
}

/// Placeholders the docs write in capitals, given a value of their kind.
fn placeholder(word: &str) -> &str {
    match word {
        "N" | "SECONDS" | "LINES_PER_S" => "1",
        "DIR" | "PATH" => "/tmp",
        "URL" => "http://127.0.0.1:1",
        w => w,
    }
}

/// The arguments parse: the same words and `--help` exit 0 (the parser stops at `--help`
/// only after it has taken every word before it, so an unknown flag or a bad value fails).
fn check_sidelog_args(at: &str, args: &[String]) {
    let mut argv: Vec<&str> = args.iter().map(|a| placeholder(a)).collect();
    argv.push("--help");
    let out = sidelog(&argv);
    assert!(
        out.status.success(),
        "{at}: `sidelog {}` does not parse: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_cargo(at: &str, args: &[String]) {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let value_of = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    if let Some(profile) = value_of("--profile") {
        assert!(
            matches!(profile.as_str(), "dev" | "release" | "test" | "bench")
                || manifest.contains(&format!("[profile.{profile}]")),
            "{at}: no cargo profile {profile}"
        );
    }
    if let Some(bench) = value_of("--bench") {
        assert!(
            manifest.contains(&format!("name = \"{bench}\"")),
            "{at}: no bench {bench}"
        );
    }
    if let Some(test) = value_of("--test") {
        assert!(
            root().join("tests").join(format!("{test}.rs")).is_file(),
            "{at}: no test file {test}"
        );
    }
    let subcommand = args.first().map(String::as_str);
    assert!(
        matches!(
            subcommand,
            Some("run" | "build" | "test" | "bench" | "clippy" | "fmt" | "install")
        ),
        "{at}: cargo {subcommand:?} is not a command the docs should need"
    );
    if subcommand == Some("run")
        && let Some(i) = args.iter().position(|a| a == "--")
    {
        check_sidelog_args(at, &args[i + 1..]);
    }
}

#[test]
fn the_shell_reader_splits_as_a_shell_would() {
    let lines = logical_lines("a \\\n  b # c\n\n# only a comment\nd '#x' e\n");
    assert_eq!(lines, vec!["a    b ".to_string(), "d '#x' e".to_string()]);
    let commands = split_commands("X=1 sidelog intake [--out f] & y | z && 'q r'");
    assert_eq!(
        commands,
        vec![
            vec!["X=1", "sidelog", "intake", "--out", "f"],
            vec!["y"],
            vec!["z"],
            vec!["q r"]
        ]
    );
}

#[test]
fn the_module_map_names_every_file_of_the_shipper() {
    let map = std::fs::read_to_string(root().join("CONTRIBUTING.md")).expect("CONTRIBUTING.md");
    // A line of the map starts with a file's path, or with a directory's path and `/` when
    // the map describes the directory as a whole.
    let entries: Vec<&str> = map
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let shipper = root().join("src/shipper");
    let mut missing = Vec::new();
    let mut dirs = vec![shipper.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/shipper") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&shipper).expect("under src/shipper");
            let named = entries.contains(&rel.to_string_lossy().as_ref())
                || rel.ancestors().skip(1).any(|a| {
                    !a.as_os_str().is_empty()
                        && entries.contains(&format!("{}/", a.display()).as_str())
                });
            if !named {
                missing.push(rel.display().to_string());
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "CONTRIBUTING.md's module map lacks: {missing:?}"
    );
}

/// A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as `-`.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn links_between_the_docs_lead_somewhere() {
    let mut broken = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).expect("read doc");
        let dir = file.parent().expect("a directory");
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !linked.exists() {
                broken.push(format!("{}: {target}", file.display()));
                continue;
            }
            if !anchor.is_empty() {
                let page = std::fs::read_to_string(&linked).unwrap_or_default();
                let found = page
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .filter_map(|l| l.trim_start_matches('#').strip_prefix(' '))
                    .any(|h| anchor_of(h) == anchor);
                if !found {
                    broken.push(format!("{}: {target} (no such heading)", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "links that lead nowhere: {broken:#?}");
}
