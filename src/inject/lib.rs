//! `sidelog inject`: adds sidelog to the Pods of Kubernetes manifests, as `linkerd inject` does
//! for its proxy.
//!
//! This crate owns finding the Pod template in each kind of workload, the sidecar's
//! container, volumes and mounts (the log directory shared with the app, the key from a
//! Secret, the configuration, the checkpoints, the Pod's labels), the drain deadline made to
//! fit `terminationGracePeriodSeconds`, and idempotence (a Pod that has a `sidelog` container
//! is left as it is). YAML goes through `yaml-rust2`, which keeps the order of keys, read with
//! [`sidelog_shipper::yaml11`] so that every scalar means to kubectl what it meant before (`0644`
//! stays `0644`); comments are not kept (as with `kubectl`). Nothing is printed unless every
//! document succeeded.

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

use sidelog_shipper::yaml11;

/// The container's name; a Pod with a container of this name is already injected.
pub const CONTAINER_NAME: &str = "sidelog";
/// Where the sidecar finds what it needs.
const CONFIG_DIR: &str = "/etc/sidelog/config";
const SECRET_DIR: &str = "/etc/sidelog/secret";
const DATA_DIR: &str = "/var/lib/sidelog";
const PODINFO_DIR: &str = "/etc/podinfo";
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE_SECS: i64 = 30;
/// Of the grace period, what the app's own shutdown and the final checkpoint write keep.
const APP_SHUTDOWN_SECS: i64 = 10;

/// What to inject, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory the app writes its logs into.
    pub logs: String,
    /// The app container that writes them (needed when a Pod has several).
    pub container: Option<String>,
    pub secret: String,
    pub secret_key: String,
    /// An existing ConfigMap with `sidelog.toml`; `None`: one is generated.
    pub config_map: Option<String>,
    /// A classic sidecar (a second container) instead of a native one (Kubernetes 1.29+).
    pub classic: bool,
    pub image: String,
}

/// The ConfigMap generated when none is named.
pub const GENERATED_CONFIG_MAP: &str = "sidelog-config";

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("cannot parse the input as YAML: {0}")]
    Yaml(#[from] yaml_rust2::ScanError),
    #[error("{doc}: {problem}")]
    Document { doc: String, problem: String },
    #[error("cannot write YAML: {0}")]
    Emit(String),
}

/// The result: the documents as YAML, and a note per document for the operator.
#[derive(Debug)]
pub struct Injected {
    pub yaml: String,
    pub notes: Vec<String>,
}

/// Injects into every document of `input` (multi-document YAML, `List`s included).
pub fn inject(input: &str, opts: &Options) -> Result<Injected, InjectError> {
    let mut docs = yaml11::load(input)?;
    let mut notes = Vec::new();
    let mut namespaces = Vec::new();
    for (i, doc) in docs.iter_mut().enumerate() {
        let what = describe(doc, i);
        visit(doc, opts, &what, &mut notes, &mut namespaces)?;
    }
    if opts.config_map.is_none() {
        for ns in namespaces {
            if !has_config_map(&docs, ns.as_deref()) {
                notes.push(format!(
                    "generated ConfigMap {GENERATED_CONFIG_MAP}{}",
                    ns.as_deref()
                        .map(|n| format!(" in {n}"))
                        .unwrap_or_default()
                ));
                docs.insert(0, generated_config_map(opts, ns.as_deref())?);
            }
        }
    }
    Ok(Injected {
        yaml: emit(&docs)?,
        notes,
    })
}

/// Injects into one document, or into each item of a `List`. Records the namespace of
/// every injected workload (for the generated ConfigMap).
fn visit(
    doc: &mut Yaml,
    opts: &Options,
    what: &str,
    notes: &mut Vec<String>,
    namespaces: &mut Vec<Option<String>>,
) -> Result<(), InjectError> {
    let kind = str_at(doc, &["kind"]).unwrap_or_default().to_string();
    if kind == "List" {
        let Some(Yaml::Array(items)) = hash_mut(doc).and_then(|h| get_mut(h, "items")) else {
            return Ok(());
        };
        for (i, item) in items.iter_mut().enumerate() {
            let inner = format!("{what}, {}", describe(item, i));
            visit(item, opts, &inner, notes, namespaces)?;
        }
        return Ok(());
    }
    let namespace = str_at(doc, &["metadata", "namespace"]).map(str::to_string);
    let Some(path) = pod_spec_path(&kind, doc, what)? else {
        notes.push(format!("{what}: skipped (no Pods)"));
        return Ok(());
    };
    let spec = spec_at(doc, path).ok_or_else(|| fail(what, "has no Pod template spec"))?;
    let injected = inject_pod_spec(spec, opts, what)?;
    notes.push(format!(
        "{what}: {}",
        if injected {
            "injected"
        } else {
            "already has a sidelog container; unchanged"
        }
    ));
    if !namespaces.contains(&namespace) {
        namespaces.push(namespace);
    }
    Ok(())
}

/// Where a kind keeps its Pod spec; `None` for kinds without Pods (passed through).
fn pod_spec_path(
    kind: &str,
    doc: &Yaml,
    what: &str,
) -> Result<Option<&'static [&'static str]>, InjectError> {
    Ok(Some(match kind {
        "Pod" => &["spec"],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            &["spec", "template", "spec"]
        }
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ if at(doc, &["spec", "template"]).is_some()
            || at(doc, &["spec", "jobTemplate"]).is_some() =>
        {
            return Err(fail(
                what,
                "sidelog cannot be injected into this kind (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and CronJob can be)",
            ));
        }
        _ => return Ok(None),
    }))
}

/// Adds the sidecar to one Pod spec. Returns false when it already has one.
fn inject_pod_spec(spec: &mut Hash, opts: &Options, what: &str) -> Result<bool, InjectError> {
    let names = container_names(spec);
    if names.iter().any(|n| n == CONTAINER_NAME) {
        return Ok(false);
    }
    let app = app_container(spec, opts, what)?;
    let logs_volume = logs_volume(spec, app, opts, what)?;
    for volume in sidecar_volumes(opts)? {
        add_volume(spec, volume, what)?;
    }
    let grace = get(spec, "terminationGracePeriodSeconds")
        .and_then(yaml11::int)
        .unwrap_or(DEFAULT_GRACE_SECS);
    let container = sidecar_container(opts, &logs_volume, drain_secs(grace))?;
    if opts.classic {
        with_array(spec, "containers", |cs| cs.push(container));
    } else {
        with_array(spec, "initContainers", |cs| cs.insert(0, container));
    }
    Ok(true)
}

/// The drain deadline for a grace period: what the app's shutdown and the last checkpoint
/// write leave of it (a native sidecar gets SIGTERM only after the app exited).
pub fn drain_secs(grace: i64) -> i64 {
    if grace >= 2 * APP_SHUTDOWN_SECS {
        grace - APP_SHUTDOWN_SECS
    } else {
        (grace * 2 / 3).max(1)
    }
}

fn container_names(spec: &Hash) -> Vec<String> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|k| match get(spec, k) {
            Some(Yaml::Array(cs)) => Some(cs),
            _ => None,
        })
        .flatten()
        .filter_map(|c| str_at(c, &["name"]).map(str::to_string))
        .collect()
}

/// The index in `containers` of the app container that writes the logs: the one named by
/// `--container`, or the only one.
fn app_container(spec: &Hash, opts: &Options, what: &str) -> Result<usize, InjectError> {
    let names: Vec<&str> = match get(spec, "containers") {
        Some(Yaml::Array(cs)) => cs.iter().filter_map(|c| str_at(c, &["name"])).collect(),
        _ => Vec::new(),
    };
    match (&opts.container, names.as_slice()) {
        (_, []) => Err(fail(what, "has no containers")),
        (Some(wanted), _) => names.iter().position(|n| n == wanted).ok_or_else(|| {
            fail(
                what,
                &format!(
                    "has no container named {wanted} (it has: {})",
                    names.join(", ")
                ),
            )
        }),
        (None, [_]) => Ok(0),
        (None, _) => Err(fail(
            what,
            &format!(
                "has several containers ({}): name the one that writes the logs with --container",
                names.join(", ")
            ),
        )),
    }
}

/// The name of the volume the app writes its logs into: the emptyDir it already mounts at
/// `--logs`, or `sidelog-logs`, added and mounted there.
fn logs_volume(
    spec: &mut Hash,
    app: usize,
    opts: &Options,
    what: &str,
) -> Result<String, InjectError> {
    let mounted = match at_index(spec, "containers", app) {
        Some(c) => match at(c, &["volumeMounts"]) {
            Some(Yaml::Array(ms)) => ms
                .iter()
                .find(|m| str_at(m, &["mountPath"]) == Some(opts.logs.as_str()))
                .and_then(|m| str_at(m, &["name"]))
                .map(str::to_string),
            _ => None,
        },
        None => None,
    };
    if let Some(name) = mounted {
        let is_empty_dir = match get(spec, "volumes") {
            Some(Yaml::Array(vs)) => vs.iter().any(|v| {
                str_at(v, &["name"]) == Some(name.as_str()) && at(v, &["emptyDir"]).is_some()
            }),
            _ => false,
        };
        if !is_empty_dir {
            return Err(fail(
                what,
                &format!(
                    "mounts volume {name} at {}, which is not an emptyDir; choose another --logs",
                    opts.logs
                ),
            ));
        }
        return Ok(name);
    }
    let name = "sidelog-logs".to_string();
    add_volume(
        spec,
        parse_one(&format!("name: {name}\nemptyDir: {{ sizeLimit: 1Gi }}\n"))?,
        what,
    )?;
    let mount = parse_one(&format!(
        "name: {name}\nmountPath: {}\n",
        quoted(&opts.logs)
    ))?;
    with_array(spec, "containers", |cs| {
        if let Some(Yaml::Hash(c)) = cs.get_mut(app) {
            with_array(c, "volumeMounts", |ms| ms.push(mount));
        }
    });
    Ok(name)
}

/// The volumes of the sidecar itself: checkpoints, configuration, key, the Pod's labels.
fn sidecar_volumes(opts: &Options) -> Result<Vec<Yaml>, InjectError> {
    let config_map = opts.config_map.as_deref().unwrap_or(GENERATED_CONFIG_MAP);
    let text = format!(
        r#"- name: sidelog-data
  emptyDir: {{ sizeLimit: 16Mi }}
- name: sidelog-config
  configMap: {{ name: {config_map} }}
- name: sidelog-secret
  secret:
    secretName: {secret}
    items: [{{ key: {key}, path: api-key }}]
- name: sidelog-podinfo
  downwardAPI:
    items:
      - {{ path: labels, fieldRef: {{ fieldPath: metadata.labels }} }}
      - {{ path: annotations, fieldRef: {{ fieldPath: metadata.annotations }} }}
"#,
        config_map = quoted(config_map),
        secret = quoted(&opts.secret),
        key = quoted(&opts.secret_key),
    );
    match parse_one(&text)? {
        Yaml::Array(vs) => Ok(vs),
        _ => Err(InjectError::Emit("volume template is not a list".into())),
    }
}

/// Adds a volume unless the Pod has one of that name already (an error: it would be
/// another volume under our name).
fn add_volume(spec: &mut Hash, volume: Yaml, what: &str) -> Result<(), InjectError> {
    let name = str_at(&volume, &["name"]).unwrap_or_default().to_string();
    with_array(spec, "volumes", |volumes| {
        if volumes
            .iter()
            .any(|v| str_at(v, &["name"]) == Some(name.as_str()))
        {
            return Err(fail(what, &format!("already has a volume named {name}")));
        }
        volumes.push(volume);
        Ok(())
    })
}

/// The sidecar: image, configuration, the Downward API variables, the drain deadline,
/// probes, resources and the hardened security context of our manifests. Its only probe is
/// liveness, which fails only when sidelog itself is stuck: a readiness probe would make the
/// Pod's readiness, and so the app's place in its Services, follow the intake and the key.
fn sidecar_container(opts: &Options, logs_volume: &str, drain: i64) -> Result<Yaml, InjectError> {
    let restart = if opts.classic {
        ""
    } else {
        "restartPolicy: Always\n"
    };
    let text = format!(
        r#"name: {CONTAINER_NAME}
{restart}image: {image}
args: ["--config", "{CONFIG_DIR}/sidelog.toml"]
env:
  - name: POD_NAME
    valueFrom: {{ fieldRef: {{ fieldPath: metadata.name }} }}
  - name: POD_NAMESPACE
    valueFrom: {{ fieldRef: {{ fieldPath: metadata.namespace }} }}
  - name: NODE_NAME
    valueFrom: {{ fieldRef: {{ fieldPath: spec.nodeName }} }}
  - name: SIDELOG_SHUTDOWN_TIMEOUT_MS
    value: "{drain_ms}"
ports:
  - {{ name: sidelog-metrics, containerPort: 9500 }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {{ drop: ["ALL"] }}
  seccompProfile: {{ type: RuntimeDefault }}
resources:
  requests: {{ cpu: 20m, memory: 32Mi }}
  limits: {{ cpu: "1", memory: 64Mi }}
livenessProbe:
  httpGet: {{ path: /healthz, port: sidelog-metrics }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
volumeMounts:
  - {{ name: {logs_volume}, mountPath: {logs}, readOnly: true }}
  - {{ name: sidelog-data, mountPath: {DATA_DIR} }}
  - {{ name: sidelog-config, mountPath: {CONFIG_DIR}, readOnly: true }}
  - {{ name: sidelog-secret, mountPath: {SECRET_DIR}, readOnly: true }}
  - {{ name: sidelog-podinfo, mountPath: {PODINFO_DIR}, readOnly: true }}
"#,
        image = quoted(&opts.image),
        drain_ms = drain * 1000,
        logs_volume = quoted(logs_volume),
        logs = quoted(&opts.logs),
    );
    parse_one(&text)
}

/// The configuration of the injected sidecars, as a ConfigMap: the logs directory's `*.log`,
/// the key from the Secret volume, the Pod's name as host and its labels as tags.
pub fn config_toml(opts: &Options) -> String {
    format!(
        r#"# Generated by `sidelog inject`. Every key and its default: config/sidelog.toml.
data_dir = "{DATA_DIR}"
log_format = "json"
metrics_listen = "0.0.0.0:9500"

[[inputs]]
include = [{include}]

[datadog]
api_key_file = "{SECRET_DIR}/api-key"
hostname = "${{POD_NAME}}"
tags = ["kube_namespace:${{POD_NAMESPACE}}", "kube_node:${{NODE_NAME:-unknown}}", "pod_name:${{POD_NAME}}"]

[kubernetes]
labels_file = "{PODINFO_DIR}/labels"
annotations_file = "{PODINFO_DIR}/annotations"
"#,
        include = quoted(&format!("{}/*.log", opts.logs.trim_end_matches('/'))),
    )
}

fn generated_config_map(opts: &Options, namespace: Option<&str>) -> Result<Yaml, InjectError> {
    let namespace = namespace
        .map(|n| format!("  namespace: {}\n", quoted(n)))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {GENERATED_CONFIG_MAP}\n{namespace}  labels:\n    app.kubernetes.io/name: sidelog\ndata:\n  sidelog.toml: {}\n",
        quoted(&config_toml(opts))
    );
    parse_one(&text)
}

/// Whether the documents hold the generated ConfigMap already (injecting twice adds it once).
fn has_config_map(docs: &[Yaml], namespace: Option<&str>) -> bool {
    docs.iter().any(|d| {
        str_at(d, &["kind"]) == Some("ConfigMap")
            && str_at(d, &["metadata", "name"]) == Some(GENERATED_CONFIG_MAP)
            && str_at(d, &["metadata", "namespace"]) == namespace
    })
}

/// A value as a YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn parse_one(text: &str) -> Result<Yaml, InjectError> {
    yaml11::load(text)?
        .into_iter()
        .next()
        .ok_or_else(|| InjectError::Emit("empty template".into()))
}

fn at_index<'a>(spec: &'a Hash, k: &str, i: usize) -> Option<&'a Yaml> {
    match get(spec, k) {
        Some(Yaml::Array(a)) => a.get(i),
        _ => None,
    }
}

/// `Deployment web` (document 2): how errors and notes name a document.
fn describe(doc: &Yaml, index: usize) -> String {
    let kind = str_at(doc, &["kind"]).unwrap_or("(no kind)");
    match str_at(doc, &["metadata", "name"]) {
        Some(name) => format!("{kind} {name} (document {})", index + 1),
        None => format!("{kind} (document {})", index + 1),
    }
}

fn fail(what: &str, problem: &str) -> InjectError {
    InjectError::Document {
        doc: what.to_string(),
        problem: problem.to_string(),
    }
}

fn emit(docs: &[Yaml]) -> Result<String, InjectError> {
    let mut out = String::new();
    for doc in docs {
        let mut emitter = YamlEmitter::new(&mut out);
        emitter.multiline_strings(true);
        emitter
            .dump(doc)
            .map_err(|e| InjectError::Emit(format!("{e:?}")))?;
        out.push('\n');
    }
    Ok(out)
}

// Small accessors over yaml-rust2's tree.

fn key(k: &str) -> Yaml {
    Yaml::String(k.to_string())
}

fn get<'a>(h: &'a Hash, k: &str) -> Option<&'a Yaml> {
    h.get(&key(k))
}

fn get_mut<'a>(h: &'a mut Hash, k: &str) -> Option<&'a mut Yaml> {
    h.get_mut(&key(k))
}

fn hash_mut(y: &mut Yaml) -> Option<&mut Hash> {
    match y {
        Yaml::Hash(h) => Some(h),
        _ => None,
    }
}

fn at<'a>(y: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(y, |node, k| match node {
        Yaml::Hash(h) => get(h, k),
        _ => None,
    })
}

fn str_at<'a>(y: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    at(y, path).and_then(Yaml::as_str)
}

fn spec_at<'a>(y: &'a mut Yaml, path: &[&str]) -> Option<&'a mut Hash> {
    path.iter()
        .try_fold(y, |node, k| hash_mut(node).and_then(|h| get_mut(h, k)))
        .and_then(hash_mut)
}

/// Runs `f` on the array under `k`, created empty when missing (a value of another type is
/// replaced: Kubernetes would refuse it anyway).
fn with_array<R>(h: &mut Hash, k: &str, f: impl FnOnce(&mut Vec<Yaml>) -> R) -> R {
    let slot = h.entry(key(k)).or_insert(Yaml::Null);
    let mut items = match std::mem::replace(slot, Yaml::Null) {
        Yaml::Array(items) => items,
        _ => Vec::new(),
    };
    let result = f(&mut items);
    *slot = Yaml::Array(items);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            logs: "/var/log/app".into(),
            container: None,
            secret: "datadog-api-key".into(),
            secret_key: "api-key".into(),
            config_map: None,
            classic: false,
            image: "sidelog:test".into(),
        }
    }

    const POD_SPEC: &str = "containers: [{ name: app, image: \"app:1\" }]";

    fn workload(kind: &str, name: &str) -> String {
        let template = format!(
            "template:\n    metadata: {{ labels: {{ app: {name} }} }}\n    spec: {{ {POD_SPEC} }}"
        );
        let spec = match kind {
            "Pod" => format!("spec: {{ {POD_SPEC} }}"),
            "CronJob" => format!(
                "spec:\n  schedule: \"* * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec: {{ restartPolicy: Never, {POD_SPEC} }}"
            ),
            "Job" => {
                format!("spec:\n  template:\n    spec: {{ restartPolicy: Never, {POD_SPEC} }}")
            }
            _ => format!("spec:\n  selector: {{ matchLabels: {{ app: {name} }} }}\n  {template}"),
        };
        format!("apiVersion: v1\nkind: {kind}\nmetadata: {{ name: {name} }}\n{spec}\n")
    }

    fn docs(yaml: &str) -> Vec<Yaml> {
        yaml_rust2::YamlLoader::load_from_str(yaml).expect("output is YAML")
    }

    fn pod_spec(doc: &Yaml) -> &Yaml {
        let kind = str_at(doc, &["kind"]).unwrap_or_default();
        let path: &[&str] = match kind {
            "Pod" => &["spec"],
            "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        };
        at(doc, path).expect("pod spec")
    }

    /// Entry `i` of the list under `key`.
    fn nth<'a>(node: &'a Yaml, key: &str, i: usize) -> &'a Yaml {
        &at(node, &[key]).and_then(Yaml::as_vec).expect(key)[i]
    }

    fn names(spec: &Yaml, list: &str) -> Vec<String> {
        match at(spec, &[list]) {
            Some(Yaml::Array(cs)) => cs
                .iter()
                .filter_map(|c| str_at(c, &["name"]).map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_kind_gets_a_native_sidecar_sharing_the_log_directory() {
        let kinds = [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
        ];
        let input: Vec<String> = kinds.iter().map(|k| workload(k, "w")).collect();
        let out = inject(&input.join("---\n"), &opts()).expect("injects");
        let out = docs(&out.yaml);
        assert_eq!(
            str_at(&out[0], &["kind"]),
            Some("ConfigMap"),
            "generated config first"
        );
        for (doc, kind) in out[1..].iter().zip(kinds) {
            let spec = pod_spec(doc);
            assert_eq!(names(spec, "initContainers"), ["sidelog"], "{kind}");
            assert_eq!(names(spec, "containers"), ["app"], "{kind}");
            let sidecar = nth(spec, "initContainers", 0);
            assert_eq!(str_at(sidecar, &["restartPolicy"]), Some("Always"));
            // Its only probe is its own liveness: never the Pod's readiness.
            assert_eq!(
                str_at(sidecar, &["livenessProbe", "httpGet", "path"]),
                Some("/healthz")
            );
            assert!(at(sidecar, &["readinessProbe"]).is_none(), "{kind}");
            let app = nth(spec, "containers", 0);
            let mount = nth(app, "volumeMounts", 0);
            assert_eq!(
                str_at(mount, &["mountPath"]),
                Some("/var/log/app"),
                "{kind}"
            );
            assert_eq!(str_at(mount, &["name"]), Some("sidelog-logs"));
            let volumes = names(spec, "volumes");
            for v in [
                "sidelog-logs",
                "sidelog-data",
                "sidelog-config",
                "sidelog-secret",
                "sidelog-podinfo",
            ] {
                assert!(volumes.iter().any(|n| n == v), "{kind} lacks volume {v}");
            }
        }
    }

    #[test]
    fn classic_sidecars_are_containers_and_lists_are_followed() {
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n  - {}",
            workload("Pod", "p").replace('\n', "\n    ")
        );
        let out = inject(
            &list,
            &Options {
                classic: true,
                ..opts()
            },
        )
        .expect("injects");
        let out = docs(&out.yaml);
        let item = nth(&out[1], "items", 0);
        let spec = pod_spec(item);
        assert_eq!(names(spec, "containers"), ["app", "sidelog"]);
        assert!(names(spec, "initContainers").is_empty());
        let sidecar = nth(spec, "containers", 1);
        assert!(at(sidecar, &["restartPolicy"]).is_none());
    }

    #[test]
    fn injecting_twice_changes_nothing() {
        let input = format!(
            "{}---\n{}",
            workload("Deployment", "a"),
            workload("Job", "b")
        );
        let once = inject(&input, &opts()).expect("once").yaml;
        let twice = inject(&once, &opts()).expect("twice");
        assert_eq!(twice.yaml, once);
        assert!(twice.notes.iter().any(|n| n.contains("unchanged")));
    }

    #[test]
    fn other_kinds_and_fields_are_kept() {
        let input = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{ name: s }}\nspec: {{ ports: [{{ port: 80 }}] }}\n---\n{}",
            workload("Pod", "p").replace("spec: {", "spec: { hostname: keep-me, ")
        );
        let out = inject(&input, &opts()).expect("injects");
        let out = docs(&out.yaml);
        assert_eq!(str_at(&out[1], &["kind"]), Some("Service"));
        assert_eq!(
            at(&out[1], &["spec", "ports"])
                .and_then(|p| p.as_vec())
                .map(Vec::len),
            Some(1)
        );
        assert_eq!(str_at(&out[2], &["spec", "hostname"]), Some("keep-me"));
    }

    #[test]
    fn an_emptydir_the_app_mounts_at_the_log_directory_is_reused() {
        let input = "apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec:\n  containers: [{ name: app, image: a, volumeMounts: [{ name: logs, mountPath: /var/log/app }] }]\n  volumes: [{ name: logs, emptyDir: {} }]\n";
        let out = docs(&inject(input, &opts()).expect("injects").yaml);
        let spec = pod_spec(&out[1]);
        assert!(!names(spec, "volumes").iter().any(|v| v == "sidelog-logs"));
        let sidecar = nth(spec, "initContainers", 0);
        let mount = nth(sidecar, "volumeMounts", 0);
        assert_eq!(str_at(mount, &["name"]), Some("logs"));
        assert_eq!(at(mount, &["readOnly"]).and_then(Yaml::as_bool), Some(true));
    }

    #[test]
    fn the_drain_fits_the_grace_period() {
        assert_eq!(drain_secs(30), 20);
        assert_eq!(drain_secs(60), 50);
        assert_eq!(drain_secs(12), 8);
        assert_eq!(drain_secs(1), 1);
        let input =
            workload("Pod", "p").replace("spec: {", "spec: { terminationGracePeriodSeconds: 60, ");
        let out = docs(&inject(&input, &opts()).expect("injects").yaml);
        let spec = pod_spec(&out[1]);
        let sidecar = nth(spec, "initContainers", 0);
        let env = at(sidecar, &["env"]).and_then(|e| e.as_vec()).expect("env");
        let timeout = env
            .iter()
            .find(|e| str_at(e, &["name"]) == Some("SIDELOG_SHUTDOWN_TIMEOUT_MS"))
            .and_then(|e| str_at(e, &["value"]));
        assert_eq!(timeout, Some("50000"));
    }

    #[test]
    fn errors_name_the_document_and_print_nothing() {
        let cases = [
            (
                "apiVersion: v1\nkind: Pod\nmetadata: { name: empty }\nspec: { containers: [] }\n",
                "Pod empty (document 2): has no containers",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: { name: two }\nspec: { containers: [{ name: a, image: a }, { name: b, image: b }] }\n",
                "several containers (a, b)",
            ),
            (
                "apiVersion: v1\nkind: ReplicationController\nmetadata: { name: rc }\nspec: { template: { spec: { containers: [{ name: a, image: a }] } } }\n",
                "ReplicationController rc (document 2): sidelog cannot be injected into this kind",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: { name: cm }\nspec:\n  containers: [{ name: a, image: a, volumeMounts: [{ name: c, mountPath: /var/log/app }] }]\n  volumes: [{ name: c, configMap: { name: x } }]\n",
                "not an emptyDir",
            ),
        ];
        for (bad, expected) in cases {
            let input = format!("{}---\n{bad}", workload("Pod", "good"));
            let err = inject(&input, &opts()).expect_err("refused").to_string();
            assert!(err.contains(expected), "{err}");
        }
        let err = inject(
            &workload("Pod", "p").replace("name: app", "name: a"),
            &Options {
                container: Some("web".into()),
                ..opts()
            },
        )
        .expect_err("no such container")
        .to_string();
        assert!(
            err.contains("has no container named web (it has: a)"),
            "{err}"
        );
        assert!(matches!(inject("a: [", &opts()), Err(InjectError::Yaml(_))));
    }

    #[test]
    fn the_generated_configuration_is_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sidelog.toml");
        std::fs::write(&path, config_toml(&opts())).expect("write");
        let env: Vec<(String, String)> = ["POD_NAME", "POD_NAMESPACE"]
            .iter()
            .map(|k| (k.to_string(), "x".to_string()))
            .collect();
        let config =
            sidelog_shipper::config::Config::load_with_env(&path, &env).expect("valid config");
        assert_eq!(config.inputs[0].include, ["/var/log/app/*.log"]);
        assert!(config.kubernetes.labels_file.is_some());
    }
}
