//! Monotonic counters for `/metrics` (never reset, unlike the original's).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use styxy_proto::api::{ErrorCode, MetricCounters, MetricGauges, MetricsResponse};

#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub allocations: AtomicU64,
    pub releases: AtomicU64,
    pub reclaimed: AtomicU64,
    pub auto_allocations: AtomicU64,
    pub errors: AtomicU64,
    pub client_errors: AtomicU64,
}

impl Metrics {
    pub fn count_error(&self, code: ErrorCode) {
        let counter = if code.http_status() >= 500 { &self.errors } else { &self.client_errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn counters(&self) -> MetricCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricCounters {
            http_requests_total: g(&self.requests),
            allocations_total: g(&self.allocations),
            releases_total: g(&self.releases),
            reclaimed_total: g(&self.reclaimed),
            auto_allocations_total: g(&self.auto_allocations),
            client_errors_total: g(&self.client_errors),
            server_errors_total: g(&self.errors),
        }
    }

    /// The counters and `gauges` as Prometheus text: the JSON answer's
    /// names, prefixed with `styxy_`, with their help lines.
    pub fn prometheus(&self, gauges: &MetricGauges) -> String {
        let c = self.counters();
        let counters = [
            ("http_requests_total", "HTTP requests served.", c.http_requests_total),
            ("allocations_total", "Ports allocated.", c.allocations_total),
            ("releases_total", "Ports released by their owners.", c.releases_total),
            ("reclaimed_total", "Ports freed because their holder died or expired.", c.reclaimed_total),
            ("auto_allocations_total", "Service types carved by auto-allocation.", c.auto_allocations_total),
            ("client_errors_total", "Requests refused with a 4xx answer.", c.client_errors_total),
            ("server_errors_total", "Requests failed with a 5xx answer.", c.server_errors_total),
        ];
        let gauges = [
            ("allocations", "Live allocations.", gauges.allocations),
            ("instances", "Registered instances.", gauges.instances),
            ("uptime_seconds", "Seconds since the allocator started.", gauges.uptime_seconds),
            ("resident_memory_bytes", "Resident set size.", gauges.resident_memory_bytes),
            ("open_connections", "Open client connections.", gauges.open_connections),
        ];
        let mut out = String::new();
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP styxy_{name} {help}\n# TYPE styxy_{name} counter\nstyxy_{name} {v}");
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP styxy_{name} {help}\n# TYPE styxy_{name} gauge\nstyxy_{name} {v}");
        }
        out
    }

    pub fn json(&self, gauges: MetricGauges) -> MetricsResponse {
        MetricsResponse { counters: self.counters(), gauges }
    }
}

/// Resident set size from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus and JSON name the same figures alike.
    #[test]
    fn prometheus_text_names_every_json_figure() {
        let metrics = Metrics::default();
        let gauges = MetricGauges::default();
        let text = metrics.prometheus(&gauges);
        let json = serde_json::to_value(metrics.json(gauges)).unwrap();
        let mut names = Vec::new();
        for (kind, figures) in json.as_object().unwrap() {
            for name in figures.as_object().unwrap().keys() {
                let line = format!("# TYPE styxy_{name} {}\n", kind.trim_end_matches('s'));
                assert!(text.contains(&line), "{line:?} missing from\n{text}");
                names.push(name.clone());
            }
        }
        assert_eq!(text.matches("# TYPE ").count(), names.len(), "{text}");
    }
}
