//! deploy/: every metric the alert rules and the Grafana dashboard use is one wxshop emits (promtool checks the
//! rules themselves: scripts/check-deploy.sh).

use std::collections::BTreeSet;
use std::path::Path;

/// Metric names recorded in the source: the first string literal of `counter!`, `gauge!` and `histogram!`.
fn emitted() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = text[at + macro_name.len()..].trim_start();
                    if let Some(literal) = rest.strip_prefix('"') {
                        names.insert(literal.split('"').next().unwrap().to_owned());
                    }
                }
            }
        }
    }
    names
}

/// Metric names used in a PromQL-bearing file: identifiers directly followed by a `{` selector.
fn used(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices('{') {
        let start = text[..at].rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        let name = &text[start..at];
        if name.contains('_') && start > 0 && bytes[start - 1] != b'$' {
            let name = ["_bucket", "_count", "_sum"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            names.insert(name.to_owned());
        }
    }
    names
}

#[test]
fn alert_rules_and_dashboard_use_only_metrics_wxshop_emits() {
    let emitted = emitted();
    assert!(emitted.contains("http_requests_total") && emitted.contains("tokio_alive_tasks"), "{emitted:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for file in ["prometheus/alerts.yml", "grafana/wxshop.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let used = used(&text);
        assert!(used.len() >= 5, "{file}: found only {used:?}");
        let unknown: Vec<&String> = used.iter().filter(|m| !emitted.contains(*m)).collect();
        assert!(unknown.is_empty(), "{file} uses metrics wxshop does not emit: {unknown:?}");
    }
}
