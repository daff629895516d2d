//! Request latency per route as Prometheus histograms. A route is named by
//! its template from `api::routes` (`/rooms/{room_id}/send/...`), never by
//! the concrete path, which would put room and user ids into the metrics
//! and let the label set grow without bound; requests that match no route
//! share one `<unmatched>` series.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds. Long-polling `/sync` requests
/// land in the top buckets by design; their own route keeps them apart.
const BOUNDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Requests at or below each bound (not cumulative; summed on render).
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Methods a route can be matched with; any other method is pooled with the
/// unmatched requests, so a client cannot mint label values.
const METHODS: &[&str] = &["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"];

/// One histogram per (method, route template), created on a route's first
/// request: templates come only from the route table, so the set is bounded.
#[derive(Debug, Default)]
pub struct RouteLatency {
    /// By route template, then by index into [`METHODS`]. Keyed by the
    /// template alone so that a lookup borrows it instead of allocating.
    series: RwLock<Series>,
    unmatched: Histogram,
}

type Series = BTreeMap<String, Vec<(usize, Arc<Histogram>)>>;

impl RouteLatency {
    /// Records one request; `route` is the matched template, if any.
    pub fn observe(&self, method: &str, route: Option<&str>, elapsed: Duration) {
        let method = METHODS.iter().position(|m| *m == method);
        let (Some(method), Some(route)) = (method, route) else {
            self.unmatched.observe(elapsed);
            return;
        };
        let known = self
            .read()
            .get(route)
            .and_then(|by_method| by_method.iter().find(|(m, _)| *m == method))
            .map(|(_, h)| h.clone());
        let histogram = known.unwrap_or_else(|| {
            let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
            let by_method = series.entry(route.to_owned()).or_default();
            match by_method.iter().find(|(m, _)| *m == method) {
                Some((_, h)) => h.clone(),
                None => {
                    let h = Arc::new(Histogram::default());
                    by_method.push((method, h.clone()));
                    h
                }
            }
        });
        histogram.observe(elapsed);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Series> {
        // A panic while holding the lock cannot leave a histogram half
        // updated (its fields are atomics), so a poisoned lock is still good.
        self.series.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The histograms of routes that have seen requests, in the text format.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP cloister_http_request_duration_seconds Time to answer a request, by route template.\n\
             # TYPE cloister_http_request_duration_seconds histogram\n",
        );
        let series = self.read();
        let unmatched = ("ANY", "<unmatched>", &self.unmatched);
        let matched = series.iter().flat_map(|(route, by_method)| {
            by_method
                .iter()
                .map(move |(m, h)| (METHODS[*m], route.as_str(), &**h))
        });
        for (method, route, h) in matched.chain(std::iter::once(unmatched)) {
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            let mut cumulative = 0;
            for (bound, bucket) in BOUNDS.iter().zip(&h.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "cloister_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "cloister_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}\n\
                 cloister_http_request_duration_seconds_sum{{{labels}}} {sum}\n\
                 cloister_http_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
    }
}

/// Label values escape backslash, quote and newline (the text format's rule).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.contains(needle)).collect()
    }

    #[test]
    fn buckets_are_cumulative_and_routes_stay_templates() {
        let latency = RouteLatency::default();
        latency.observe("GET", Some("/a/{id}"), Duration::from_micros(800));
        latency.observe("GET", Some("/a/{id}"), Duration::from_millis(40));
        latency.observe("GET", Some("/a/{id}"), Duration::from_secs(60));
        latency.observe("POST", None, Duration::from_millis(3));
        latency.observe("BREW", Some("/a/{id}"), Duration::from_millis(3));
        let mut out = String::new();
        latency.render(&mut out);

        let get = lines_with(&out, "method=\"GET\",route=\"/a/{id}\"");
        assert!(get.contains(&"cloister_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a/{id}\",le=\"0.001\"} 1"));
        assert!(get.contains(&"cloister_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a/{id}\",le=\"0.05\"} 2"));
        assert!(get.contains(&"cloister_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a/{id}\",le=\"30\"} 2"));
        assert!(get.contains(&"cloister_http_request_duration_seconds_bucket{method=\"GET\",route=\"/a/{id}\",le=\"+Inf\"} 3"));
        assert!(get.contains(
            &"cloister_http_request_duration_seconds_count{method=\"GET\",route=\"/a/{id}\"} 3"
        ));
        // Unmatched requests and made-up methods share one series.
        assert!(out.contains("route=\"<unmatched>\",le=\"0.005\"} 2"));
        assert!(!out.contains("BREW"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
