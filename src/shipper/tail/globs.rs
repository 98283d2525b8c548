//! Which files an input's globs match.
//!
//! Each include glob is split into a root directory (its leading components without glob
//! characters) and a depth. Scans walk only the roots, to that depth, following symlinks but
//! never the same directory twice, so a symlink loop cannot hang a scan. The roots are what
//! the reader's watches (`wake`) watch.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::position::DevIno;

/// Deepest walk under a root for globs with `**`.
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("glob {glob:?}: {source}")]
pub struct GlobError {
    glob: String,
    source: globset::Error,
}

/// A directory to walk and watch, and how deep below it matches can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub dir: PathBuf,
    /// 1: only entries of `dir` itself.
    pub depth: usize,
}

/// The compiled globs of one input.
#[derive(Debug, Clone)]
pub struct Matcher {
    include: GlobSet,
    exclude: GlobSet,
    pub roots: Vec<Root>,
}

fn glob_set(globs: &[String]) -> Result<GlobSet, GlobError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .map_err(|source| GlobError {
                glob: g.clone(),
                source,
            })?;
        b.add(glob);
    }
    b.build().map_err(|source| GlobError {
        glob: globs.join(","),
        source,
    })
}

/// The root directory and depth of one glob.
pub fn root_of(glob: &str) -> Root {
    let mut dir = PathBuf::new();
    let mut rest = Vec::new();
    for comp in Path::new(glob).components() {
        let text = comp.as_os_str().to_string_lossy();
        let is_pattern = text.contains(['*', '?', '[', '{']);
        if rest.is_empty() && !is_pattern {
            dir.push(comp);
        } else {
            rest.push(text.into_owned());
        }
    }
    if rest.is_empty() {
        // A literal path: watch its directory for it.
        let file = dir.clone();
        let parent = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        return Root {
            dir: parent,
            depth: 1,
        };
    }
    let depth = if rest.iter().any(|c| c.contains("**")) {
        MAX_DEPTH
    } else {
        rest.len()
    };
    if dir.as_os_str().is_empty() || dir.components().all(|c| c == Component::RootDir) {
        dir = PathBuf::from("/");
    }
    Root { dir, depth }
}

impl Matcher {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Matcher, GlobError> {
        let mut roots: Vec<Root> = Vec::new();
        for g in include {
            let r = root_of(g);
            if let Some(existing) = roots.iter_mut().find(|x| x.dir == r.dir) {
                existing.depth = existing.depth.max(r.depth);
            } else {
                roots.push(r);
            }
        }
        Ok(Matcher {
            include: glob_set(include)?,
            exclude: glob_set(exclude)?,
            roots,
        })
    }

    pub fn matches(&self, path: &Path) -> bool {
        self.include.is_match(path) && !self.exclude.is_match(path)
    }

    /// Every existing path (symlinks followed) the globs match that is not a directory the
    /// walk goes into: regular files, and anything else the globs name.
    pub fn scan(&self, out: &mut Vec<PathBuf>) {
        let mut seen_dirs = HashSet::new();
        for root in &self.roots {
            self.walk(&root.dir, root.depth, &mut seen_dirs, out);
        }
    }

    fn walk(&self, dir: &Path, depth: usize, seen: &mut HashSet<DevIno>, out: &mut Vec<PathBuf>) {
        let Ok(meta) = fs::metadata(dir) else {
            return;
        };
        if !seen.insert(DevIno::of(&meta)) {
            return;
        }
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            // Follow symlinks: /var/log/containers holds links to the real files. A link
            // loop or a target we may not see is handed on so it is reported (once); a
            // dangling link is common (a container went away) and skipped.
            let is_dir = if file_type.is_symlink() {
                match fs::metadata(&path) {
                    Ok(m) => m.is_dir(),
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => false,
                    Err(_) => continue,
                }
            } else {
                file_type.is_dir()
            };
            if is_dir && depth > 1 {
                self.walk(&path, depth - 1, seen, out);
            } else if self.matches(&path) {
                // Whatever is not a regular file (a directory where a log file was) is
                // handed on too, to be reported once and skipped.
                out.push(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_and_depths() {
        assert_eq!(
            root_of("/var/log/app/*.log"),
            Root {
                dir: "/var/log/app".into(),
                depth: 1
            }
        );
        assert_eq!(
            root_of("/var/log/*/x.log"),
            Root {
                dir: "/var/log".into(),
                depth: 2
            }
        );
        assert_eq!(root_of("/var/log/**/*.log").depth, MAX_DEPTH);
        assert_eq!(
            root_of("/var/log/app.log"),
            Root {
                dir: "/var/log".into(),
                depth: 1
            }
        );
    }

    #[test]
    fn scan_matches_includes_minus_excludes_and_survives_loops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::create_dir(d.join("sub")).expect("mkdir");
        for f in ["a.log", "b.log", "c.txt", "sub/d.log"] {
            fs::write(d.join(f), "x\n").expect("write");
        }
        std::os::unix::fs::symlink(d, d.join("sub/loop")).expect("symlink");
        let m = Matcher::new(
            &[format!("{}/**/*.log", d.display())],
            &[format!("{}/b.log", d.display())],
        )
        .expect("globs");
        let mut out = Vec::new();
        m.scan(&mut out);
        out.sort();
        assert!(out.contains(&d.join("a.log")));
        assert!(out.contains(&d.join("sub/d.log")));
        assert!(!out.contains(&d.join("b.log")));
        assert!(!out.iter().any(|p| p.ends_with("c.txt")));
        let star = Matcher::new(&[format!("{}/*.log", d.display())], &[]).expect("globs");
        assert!(!star.matches(&d.join("sub/d.log")), "* must not cross /");
    }
}
