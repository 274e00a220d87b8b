//! Monotonic counters for `/metrics` (never reset, unlike the original's),
//! and which of its two forms a client asked for.

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

/// The two forms `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// Prometheus text format 0.0.4.
    Prometheus,
    Json,
}

/// What `/metrics` sends: `format` (`prometheus` or `json`) decides when
/// given; else JSON only when `accept` prefers `application/json` to every
/// text form, so a scraper (Prometheus sends OpenMetrics and text/plain,
/// others nothing or `*/*`) gets text.
pub fn negotiate(format: Option<&str>, accept: Option<&str>) -> Result<Exposition, String> {
    match format {
        Some("prometheus") => return Ok(Exposition::Prometheus),
        Some("json") => return Ok(Exposition::Json),
        Some(other) => {
            let shown: String = other.chars().filter(|c| !c.is_control()).take(40).collect();
            return Err(format!("format must be prometheus or json, not '{shown}'"));
        }
        None => {}
    }
    let (mut json, mut text) = (0.0_f32, 0.0_f32);
    for range in accept.unwrap_or("").split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q =
            parts.filter_map(|p| p.strip_prefix("q=").and_then(|v| v.parse::<f32>().ok())).next_back().unwrap_or(1.0);
        match media.as_str() {
            "application/json" => json = json.max(q),
            "text/plain" | "application/openmetrics-text" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    Ok(if json > 0.0 && json > text { Exposition::Json } else { Exposition::Prometheus })
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

    /// What Prometheus 2.x sends when it scrapes.
    const PROMETHEUS_ACCEPT: &str =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

    #[test]
    fn scrapers_get_text_and_json_asks_get_json() {
        use Exposition::{Json, Prometheus};
        for (format, accept, expected) in [
            (None, Some(PROMETHEUS_ACCEPT), Prometheus),
            (None, Some("application/openmetrics-text; version=1.0.0"), Prometheus),
            (None, None, Prometheus),
            (None, Some("*/*"), Prometheus),
            (None, Some("application/json"), Json),
            (None, Some("application/json, */*;q=0.1"), Json),
            (None, Some("text/plain;q=0.9, application/json;q=0.5"), Prometheus),
            (None, Some("application/json;q=0"), Prometheus),
            (Some("json"), Some(PROMETHEUS_ACCEPT), Json),
            (Some("prometheus"), Some("application/json"), Prometheus),
        ] {
            assert_eq!(negotiate(format, accept), Ok(expected), "{format:?} {accept:?}");
        }
        assert!(negotiate(Some("xml"), None).unwrap_err().contains("'xml'"));
    }

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
