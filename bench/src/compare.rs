//! A side-by-side table of earlier `--json` reports (one column each), so
//! servers run through the same scenario can be read against each other.

use serde_json::Value;

type Cell = fn(&Value) -> String;

fn num(v: &Value, pointer: &str, decimals: usize) -> String {
    match v.pointer(pointer).and_then(Value::as_f64) {
        Some(x) => format!("{x:.decimals$}"),
        None => "-".into(),
    }
}

fn latencies(v: &Value, which: &str) -> String {
    let p = |q: &str| num(v, &format!("/{which}/{q}_ms"), 1);
    format!("{} / {} / {} / {}", p("p50"), p("p95"), p("p99"), p("max"))
}

fn scenario(v: &Value) -> String {
    let load = match (
        v.get("in_flight").and_then(Value::as_u64),
        v.get("target_rate").and_then(Value::as_f64),
    ) {
        (Some(k), _) => format!("closed, {k} in flight"),
        (_, Some(r)) => format!("{r} msg/s offered"),
        _ => "-".into(),
    };
    format!(
        "{} users / {} rooms, {load}, {} s",
        num(v, "/users", 0),
        num(v, "/rooms", 0),
        num(v, "/duration_s", 0)
    )
}

const LOAD_ROWS: &[(&str, Cell)] = &[
    ("scenario", scenario),
    // Reports from before `--sync` existed were all `/v3/sync`.
    ("sync", |v| {
        v.get("sync").and_then(Value::as_str).unwrap_or("v3").into()
    }),
    ("accepted msg/s (sent in window)", |v| {
        num(v, "/throughput/accepted_per_s", 1)
    }),
    ("answered msg/s (in window)", |v| {
        num(v, "/throughput/acknowledged_in_window_per_s", 1)
    }),
    ("deliveries/s", |v| num(v, "/throughput/delivered_per_s", 1)),
    ("send ms p50/p95/p99/max", |v| latencies(v, "send_latency")),
    ("send→seen ms p50/p95/p99/max", |v| {
        latencies(v, "seen_latency")
    }),
    ("missing / expected deliveries", |v| {
        format!(
            "{} / {}",
            num(v, "/completeness/missing", 0),
            num(v, "/completeness/expected_deliveries", 0)
        )
    }),
    ("duplicates", |v| num(v, "/completeness/duplicates", 0)),
    ("send errors (429s)", |v| {
        format!(
            "{} ({})",
            num(v, "/errors/send_failed", 0),
            num(v, "/errors/send_429", 0)
        )
    }),
    ("sync errors (429s)", |v| {
        format!(
            "{} ({})",
            num(v, "/errors/sync_failed", 0),
            num(v, "/errors/sync_429", 0)
        )
    }),
    ("sync responses/s", |v| {
        num(v, "/throughput/sync_responses_per_s", 1)
    }),
    ("server CPU (cores)", |v| num(v, "/server/cpu_cores", 2)),
    ("server CPU ms per sync response", |v| {
        num(v, "/server_cpu_ms_per_sync_response", 2)
    }),
    ("server RSS peak / end (MiB)", |v| {
        format!(
            "{} / {}",
            num(v, "/server/rss_peak_mib", 0),
            num(v, "/server/rss_end_mib", 0)
        )
    }),
    ("generator CPU (cores)", |v| {
        num(v, "/generator/cpu_cores", 2)
    }),
];

fn memory_rows(reports: &[Value]) -> Vec<(String, Vec<String>)> {
    let rounds = reports
        .iter()
        .filter_map(|r| r.get("rounds").and_then(Value::as_array).map(Vec::len))
        .max()
        .unwrap_or(0);
    let mut rows = vec![(
        "RSS before (MiB)".to_owned(),
        reports
            .iter()
            .map(|r| num(r, "/rss_before_mib", 1))
            .collect(),
    )];
    for i in 0..rounds {
        rows.push((
            format!("RSS after round {i} (MiB)"),
            reports
                .iter()
                .map(|r| num(r, &format!("/rounds/{i}/rss_mib"), 1))
                .collect(),
        ));
    }
    rows.push((
        "failed registrations + logins".to_owned(),
        reports
            .iter()
            .map(|r| {
                let failed: u64 = r
                    .get("rounds")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        x["register_failed"].as_u64().unwrap_or(0)
                            + x["login_failed"].as_u64().unwrap_or(0)
                    })
                    .sum();
                failed.to_string()
            })
            .collect(),
    ));
    rows.push((
        "VmHWM (MiB)".to_owned(),
        reports.iter().map(|r| num(r, "/rss_hwm_mib", 1)).collect(),
    ));
    rows
}

/// A Markdown table: `columns` are (label, report).
pub(crate) fn table(columns: &[(String, Value)]) -> String {
    let reports: Vec<Value> = columns.iter().map(|(_, v)| v.clone()).collect();
    let rows: Vec<(String, Vec<String>)> = if reports.iter().all(|r| r["scenario"] == "memory") {
        memory_rows(&reports)
    } else {
        LOAD_ROWS
            .iter()
            .map(|(name, cell)| (name.to_string(), reports.iter().map(cell).collect()))
            .collect()
    };
    let mut out = format!(
        "| | {} |\n|---|{}\n",
        columns
            .iter()
            .map(|(l, _)| l.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(columns.len())
    );
    for (name, cells) in rows {
        out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    }
    out
}

/// Reads `LABEL=FILE` arguments.
pub(crate) fn load(specs: &[String]) -> anyhow::Result<Vec<(String, Value)>> {
    specs
        .iter()
        .map(|spec| {
            let (label, path) = spec
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--compare wants LABEL=FILE, not {spec:?}"))?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {path}: {e}"))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{path} is not a JSON report: {e}"))?;
            Ok((label.to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn load_reports_side_by_side() {
        let a = json!({"scenario": "load", "users": 20, "rooms": 10, "in_flight": 2, "duration_s": 10.0,
            "throughput": {"accepted_per_s": 123.456},
            "send_latency": {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "max_ms": 4.0},
            "completeness": {"missing": 0, "expected_deliveries": 2468},
            "server": {"cpu_cores": 0.5}});
        let b = json!({"scenario": "load", "sync": "sliding", "target_rate": 100.0,
            "throughput": {"accepted_per_s": 99.0, "sync_responses_per_s": 512.34},
            "server_cpu_ms_per_sync_response": 0.714});
        let t = table(&[("Cloister".into(), a), ("Synapse".into(), b)]);
        assert!(t.starts_with("| | Cloister | Synapse |\n|---|---|---|\n"));
        assert!(t.contains("| accepted msg/s (sent in window) | 123.5 | 99.0 |"));
        assert!(t.contains("| send ms p50/p95/p99/max | 1.0 / 2.0 / 3.0 / 4.0 | - / - / - / - |"));
        assert!(t.contains("| missing / expected deliveries | 0 / 2468 | - / - |"));
        assert!(t.contains("closed, 2 in flight"));
        assert!(t.contains("| sync | v3 | sliding |"));
        assert!(t.contains("| sync responses/s | - | 512.3 |"));
        assert!(t.contains("| server CPU ms per sync response | - | 0.71 |"));
        assert!(t.contains("100 msg/s offered"));
    }

    #[test]
    fn memory_reports_list_rounds() {
        let a = json!({"scenario": "memory", "rss_before_mib": 30.0,
            "rounds": [{"rss_mib": 60.0, "register_failed": 1, "login_failed": 0}, {"rss_mib": 61.0}]});
        let t = table(&[("x".into(), a)]);
        assert!(t.contains("| RSS after round 1 (MiB) | 61.0 |"));
        assert!(t.contains("| failed registrations + logins | 1 |"));
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(load(&["no-equals-sign".into()]).is_err());
        assert!(load(&["x=/nonexistent/report.json".into()]).is_err());
    }
}
