//! The Grafana dashboard and the Prometheus alerting rules in `docker/monitoring/` refer only
//! to metrics sidelog exports, and cover what an operator must see. (`promtool check rules`
//! and `promtool test rules` run in CI on the same files.)

use std::collections::BTreeSet;
use std::path::Path;

fn monitoring(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docker/monitoring")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `sidelog_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("sidelog_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

fn exported() -> BTreeSet<String> {
    sidelog_shipper::admin::exported_families()
        .iter()
        .map(|f| format!("sidelog_{}", f.name))
        .collect()
}

/// The metrics `text` uses, after checking that sidelog exports each of them.
fn exported_metrics_used(text: &str, what: &str) -> BTreeSet<String> {
    let used = metric_names(text);
    let exported = exported();
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "{what} use metrics sidelog does not export: {unknown:?}"
    );
    used
}

/// The PromQL of every panel of the dashboard, and of its variables.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&monitoring("sidelog-dashboard.json")).expect("dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(q) = variable["definition"].as_str() {
            queries.push(q.to_string());
        }
    }
    queries
}

#[test]
fn dashboard_queries_only_exported_metrics_and_covers_the_essentials() {
    let used = exported_metrics_used(&dashboard_queries().join("\n"), "the dashboard's queries");
    for needed in [
        "sidelog_lines_read_total",
        "sidelog_events_sent_total",
        "sidelog_file_lag_bytes",
        "sidelog_retries_total",
        "sidelog_events_dropped_total",
        "sidelog_api_key_rejected",
        "sidelog_resident_memory_bytes",
    ] {
        assert!(used.contains(needed), "the dashboard lacks {needed}");
    }
}

#[test]
fn alerting_rules_use_only_exported_metrics_and_cover_the_essentials() {
    let rules = monitoring("sidelog-alerts.yaml");
    let tests = monitoring("sidelog-alerts.test.yaml");
    exported_metrics_used(&rules, "the alerting rules");
    for alert in [
        "SidelogLagGrowing",
        "SidelogEventsDropped",
        "SidelogApiKeyRejected",
        "SidelogNothingAccepted",
        "SidelogDrainCutShort",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}")),
            "no {alert} rule"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no unit test of {alert}"
        );
    }
}
