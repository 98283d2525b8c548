//! Tags from the Pod's own labels and annotations, without access to the Kubernetes API.
//!
//! A Downward API volume exposes `metadata.labels` and `metadata.annotations` as files of
//! `key="value"` lines that the kubelet rewrites when they change. This module owns reading
//! those files ([`parse_downward`]), turning them into the service and tags of events the way
//! the Datadog Agent does ([`PodTags::derive`]: Unified Service Tagging and the
//! labels-as-tags maps), and following them ([`PodTagsSource`]): a file that is missing or
//! malformed is a warning and the last good tags stay in use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::KubernetesConfig;

/// The Unified Service Tagging labels (and annotations) the Datadog Agent reads.
const UST_ENV: &str = "tags.datadoghq.com/env";
const UST_SERVICE: &str = "tags.datadoghq.com/service";
const UST_VERSION: &str = "tags.datadoghq.com/version";
/// The Agent's annotation with extra tags for a Pod, a JSON object of tag names to values.
const AD_TAGS: &str = "ad.datadoghq.com/tags";
/// In a labels-as-tags map, a `*` key applies to every label; this in its tag name becomes
/// the label's name (as in the Agent's `DD_KUBERNETES_POD_LABELS_AS_TAGS`).
const NAME_PLACEHOLDER: &str = "%%label%%";

/// A Downward API file that could not be read as one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DownwardError {
    #[error("line {line}: expected key=\"value\"")]
    NotKeyValue { line: usize },
    #[error("line {line}: the value is not a quoted string ({reason})")]
    BadValue { line: usize, reason: &'static str },
}

/// Parses a Downward API labels or annotations file: one `key="value"` per line, the value
/// quoted as Go's `strconv.Quote` does.
pub fn parse_downward(text: &str) -> Result<BTreeMap<String, String>, DownwardError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let (key, quoted) = raw
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or(DownwardError::NotKeyValue { line })?;
        let value = unquote(quoted).map_err(|reason| DownwardError::BadValue { line, reason })?;
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// Undoes Go's `strconv.Quote`: `"..."` with backslash escapes.
fn unquote(quoted: &str) -> Result<String, &'static str> {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .ok_or("no surrounding quotes")?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(unescape(&mut chars)?),
            '"' => return Err("an unescaped quote inside"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// One escape, after its backslash.
fn unescape(chars: &mut std::str::Chars<'_>) -> Result<char, &'static str> {
    let c = chars.next().ok_or("a backslash at the end")?;
    let simple = match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'a' => '\x07',
        'b' => '\x08',
        'f' => '\x0c',
        'v' => '\x0b',
        '\\' | '"' | '\'' => c,
        'x' => return hex(chars, 2),
        'u' => return hex(chars, 4),
        'U' => return hex(chars, 8),
        '0'..='7' => {
            let rest: String = chars.take(2).collect();
            let code = u32::from_str_radix(&format!("{c}{rest}"), 8).map_err(|_| "bad octal")?;
            return char::from_u32(code).ok_or("bad octal");
        }
        _ => return Err("an unknown escape"),
    };
    Ok(simple)
}

fn hex(chars: &mut std::str::Chars<'_>, digits: usize) -> Result<char, &'static str> {
    let text: String = chars.take(digits).collect();
    if text.len() != digits {
        return Err("a short hex escape");
    }
    let code = u32::from_str_radix(&text, 16).map_err(|_| "bad hex escape")?;
    char::from_u32(code).ok_or("bad hex escape")
}

/// What the Pod's labels and annotations add to its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodTags {
    /// From `tags.datadoghq.com/service`: the events' service where the input sets none.
    pub service: Option<String>,
    /// `env:`, `version:`, the mapped labels and annotations; comma-joined, in a stable order.
    pub tags: String,
}

impl PodTags {
    /// The Agent's rules: Unified Service Tagging from the labels (an annotation of the same
    /// name counts when the label is missing), `ad.datadoghq.com/tags`, then the configured
    /// maps of labels and annotations to tag names.
    pub fn derive(
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        settings: &KubernetesConfig,
    ) -> PodTags {
        let ust = |key: &str| labels.get(key).or_else(|| annotations.get(key));
        let mut tags = Vec::new();
        if let Some(env) = ust(UST_ENV) {
            tags.push(tag("env", env));
        }
        if let Some(version) = ust(UST_VERSION) {
            tags.push(tag("version", version));
        }
        if let Some(json) = annotations.get(AD_TAGS) {
            tags.extend(annotation_tags(json));
        }
        tags.extend(mapped(labels, &settings.pod_labels_as_tags));
        tags.extend(mapped(annotations, &settings.pod_annotations_as_tags));
        let mut seen = std::collections::HashSet::new();
        tags.retain(|t| seen.insert(t.clone()));
        PodTags {
            service: ust(UST_SERVICE).filter(|s| !s.is_empty()).cloned(),
            tags: tags.join(","),
        }
    }
}

/// `name:value`, with what would break the comma-joined `ddtags` list replaced.
fn tag(name: &str, value: &str) -> String {
    format!("{name}:{value}").replace(',', "_")
}

/// The tags of `ad.datadoghq.com/tags` (`{"team": "a", "tier": "web"}`); anything else in
/// it is ignored with a warning.
fn annotation_tags(json: &str) -> Vec<String> {
    match serde_json::from_str::<BTreeMap<String, serde_json::Value>>(json) {
        Ok(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => tag(k, s),
                other => tag(k, &other.to_string()),
            })
            .collect(),
        Err(e) => {
            tracing::warn!(annotation = AD_TAGS, error = %e, "annotation is not a JSON object of tags; ignoring it");
            Vec::new()
        }
    }
}

/// Labels (or annotations) named in `map` as `tag_name:value`; a `*` entry maps the rest.
fn mapped(values: &BTreeMap<String, String>, map: &BTreeMap<String, String>) -> Vec<String> {
    let wildcard = map.get("*");
    values
        .iter()
        .filter_map(|(name, value)| match (map.get(name), wildcard) {
            (Some(tag_name), _) => Some(tag(tag_name, value)),
            (None, Some(pattern)) => Some(tag(&pattern.replace(NAME_PLACEHOLDER, name), value)),
            (None, None) => None,
        })
        .collect()
}

/// The Pod's tags as last read, followed as the kubelet rewrites the files.
pub struct PodTagsSource {
    settings: KubernetesConfig,
    current: RwLock<Arc<PodTags>>,
    /// Bumped on every change, so the reader rebuilds its events' templates only then.
    generation: AtomicU64,
    /// Labels, then annotations.
    files: Mutex<[Followed; 2]>,
}

/// One Downward API file: its last good content, and what was last seen of it.
#[derive(Default)]
struct Followed {
    path: Option<PathBuf>,
    /// The text last read, to parse only when it changed.
    text: Option<String>,
    good: BTreeMap<String, String>,
    /// The problem last reported, to warn once per problem, not once per poll.
    problem: Option<String>,
}

impl Followed {
    fn new(path: Option<&Path>) -> Followed {
        Followed {
            path: path.map(Path::to_path_buf),
            ..Followed::default()
        }
    }

    /// Re-reads the file; a missing or malformed file keeps the last good content.
    fn refresh(&mut self) {
        let Some(path) = &self.path else {
            return;
        };
        let parsed = match std::fs::read_to_string(path) {
            Ok(text) if self.text.as_ref() == Some(&text) => return,
            Ok(text) => {
                let parsed = parse_downward(&text).map_err(|e| {
                    format!("cannot read {} as a Downward API file: {e}", path.display())
                });
                self.text = Some(text);
                parsed
            }
            Err(e) => {
                self.text = None;
                Err(format!("cannot read {}: {e}", path.display()))
            }
        };
        match parsed {
            Ok(good) => {
                self.good = good;
                self.problem = None;
            }
            Err(problem) => {
                if self.problem.as_ref() != Some(&problem) {
                    tracing::warn!("{problem}; keeping the tags it gave before (if any)");
                    self.problem = Some(problem);
                }
            }
        }
    }
}

impl PodTagsSource {
    /// Reads the files once; `None` when no file is configured.
    pub fn load(settings: &KubernetesConfig) -> Option<Arc<PodTagsSource>> {
        if settings.labels_file.is_none() && settings.annotations_file.is_none() {
            return None;
        }
        let files = [
            Followed::new(settings.labels_file.as_deref()),
            Followed::new(settings.annotations_file.as_deref()),
        ];
        let source = Arc::new(PodTagsSource {
            settings: settings.clone(),
            current: RwLock::new(Arc::new(PodTags::default())),
            generation: AtomicU64::new(0),
            files: Mutex::new(files),
        });
        source.refresh();
        Some(source)
    }

    /// The tags now in use.
    pub fn current(&self) -> Arc<PodTags> {
        match self.current.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Changes with every new set of tags.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-reads both files and publishes new tags when what they give changed.
    pub fn refresh(&self) {
        let mut files = crate::lock(&self.files);
        for f in files.iter_mut() {
            f.refresh();
        }
        let [labels, annotations] = &*files;
        self.publish(PodTags::derive(
            &labels.good,
            &annotations.good,
            &self.settings,
        ));
    }

    fn publish(&self, fresh: PodTags) {
        let mut current = match self.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if **current != fresh {
            tracing::info!(service = fresh.service.as_deref().unwrap_or(""), tags = %fresh.tags, "tags from the Pod's labels and annotations");
            *current = Arc::new(fresh);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Re-reads the files every `poll` until `stop`. The kubelet rewrites them within its
    /// sync period (about a minute) of a change, so a poll is as quick as a watch would be.
    pub fn follow(self: &Arc<Self>, poll: Duration, stop: CancellationToken) {
        let source = self.clone();
        crate::spawn_every(poll, stop, move || source.refresh());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn downward_files_parse_with_go_escapes() {
        let text = "app=\"web\"\ntags.datadoghq.com/env=\"prod\"\n\nnote=\"a \\\"b\\\"\\n\\tc\\\\ \\u00e9\\x41\\101\"\nutf8=\"é ü\"\n";
        let parsed = parse_downward(text).expect("valid");
        assert_eq!(parsed["app"], "web");
        assert_eq!(parsed["tags.datadoghq.com/env"], "prod");
        assert_eq!(parsed["note"], "a \"b\"\n\tc\\ éAA");
        assert_eq!(parsed["utf8"], "é ü");
        assert_eq!(parsed.len(), 4);
    }

    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(
            parse_downward("a=\"1\"\nno equals sign\n"),
            Err(DownwardError::NotKeyValue { line: 2 })
        );
        assert!(matches!(
            parse_downward("a=unquoted"),
            Err(DownwardError::BadValue { line: 1, .. })
        ));
        assert!(matches!(
            parse_downward("a=\"x\\q\""),
            Err(DownwardError::BadValue { line: 1, .. })
        ));
        assert!(matches!(
            parse_downward("a=\"x\\u12\""),
            Err(DownwardError::BadValue { line: 1, .. })
        ));
        assert_eq!(
            parse_downward("=\"x\""),
            Err(DownwardError::NotKeyValue { line: 1 })
        );
    }

    #[test]
    fn unified_service_tagging_and_maps() {
        let labels = map(&[
            ("tags.datadoghq.com/env", "prod"),
            ("tags.datadoghq.com/service", "checkout"),
            ("tags.datadoghq.com/version", "1.4.2"),
            ("app", "shop"),
            ("team", "a,b"),
            ("pod-template-hash", "5d8f"),
        ]);
        let annotations = map(&[
            (AD_TAGS, r#"{"tier": "web", "replicas": 3}"#),
            ("owner", "payments"),
        ]);
        let settings = KubernetesConfig {
            pod_labels_as_tags: map(&[("app", "kube_app"), ("team", "team")]),
            pod_annotations_as_tags: map(&[("owner", "owner")]),
            ..KubernetesConfig::default()
        };
        let tags = PodTags::derive(&labels, &annotations, &settings);
        assert_eq!(tags.service.as_deref(), Some("checkout"));
        assert_eq!(
            tags.tags,
            "env:prod,version:1.4.2,replicas:3,tier:web,kube_app:shop,team:a_b,owner:payments"
        );
    }

    #[test]
    fn wildcard_maps_every_other_label() {
        let labels = map(&[("app", "shop"), ("tier", "web")]);
        let settings = KubernetesConfig {
            pod_labels_as_tags: map(&[("*", "kube_%%label%%"), ("app", "application")]),
            ..KubernetesConfig::default()
        };
        let tags = PodTags::derive(&labels, &BTreeMap::new(), &settings);
        assert_eq!(tags.tags, "application:shop,kube_tier:web");
        assert_eq!(tags.service, None);
    }

    #[test]
    fn annotations_stand_in_for_missing_labels_and_bad_json_is_ignored() {
        let annotations = map(&[(UST_ENV, "staging"), (AD_TAGS, "not json")]);
        let tags = PodTags::derive(&BTreeMap::new(), &annotations, &KubernetesConfig::default());
        assert_eq!(tags.tags, "env:staging");
    }

    #[test]
    fn source_follows_changes_and_keeps_tags_on_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels = dir.path().join("labels");
        std::fs::write(&labels, "tags.datadoghq.com/env=\"prod\"\n").expect("write");
        let settings = KubernetesConfig {
            labels_file: Some(labels.clone()),
            ..KubernetesConfig::default()
        };
        let source = PodTagsSource::load(&settings).expect("configured");
        assert_eq!(source.current().tags, "env:prod");
        let first = source.generation();

        source.refresh();
        assert_eq!(source.generation(), first, "unchanged files change nothing");

        std::fs::write(&labels, "garbage\n").expect("write");
        source.refresh();
        assert_eq!(
            source.current().tags,
            "env:prod",
            "a malformed file keeps the tags"
        );
        std::fs::remove_file(&labels).expect("remove");
        source.refresh();
        assert_eq!(
            source.current().tags,
            "env:prod",
            "a missing file keeps the tags"
        );
        assert_eq!(source.generation(), first);

        std::fs::write(&labels, "tags.datadoghq.com/env=\"staging\"\n").expect("write");
        source.refresh();
        assert_eq!(source.current().tags, "env:staging");
        assert_ne!(source.generation(), first);
    }

    #[test]
    fn a_bad_file_does_not_hold_back_the_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels = dir.path().join("labels");
        let annotations = dir.path().join("annotations");
        std::fs::write(&annotations, "not a downward file\n").expect("write");
        let settings = KubernetesConfig {
            labels_file: Some(labels.clone()),
            annotations_file: Some(annotations),
            ..KubernetesConfig::default()
        };
        let source = PodTagsSource::load(&settings).expect("configured");
        assert_eq!(
            *source.current(),
            PodTags::default(),
            "neither file gives tags"
        );
        std::fs::write(&labels, "tags.datadoghq.com/version=\"2\"\n").expect("write");
        source.refresh();
        assert_eq!(source.current().tags, "version:2");
    }

    #[test]
    fn nothing_configured_is_no_source() {
        assert!(PodTagsSource::load(&KubernetesConfig::default()).is_none());
    }
}
