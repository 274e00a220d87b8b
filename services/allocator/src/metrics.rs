//! Monotonic counters for `/metrics` (never reset, unlike the original's).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use styxy_proto::api::ErrorCode;

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

/// Values sampled at scrape time.
pub struct Gauges {
    pub live_allocations: usize,
    pub instances: usize,
    pub uptime_secs: f64,
    pub rss_bytes: u64,
    pub open_connections: usize,
}

impl Metrics {
    pub fn count_error(&self, code: ErrorCode) {
        let counter = if code.http_status() >= 500 { &self.errors } else { &self.client_errors };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn counters(&self) -> [(&'static str, &'static str, u64); 7] {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("http_requests_total", "HTTP requests served.", g(&self.requests)),
            ("allocations_total", "Ports allocated.", g(&self.allocations)),
            ("releases_total", "Ports released by their owners.", g(&self.releases)),
            ("reclaimed_total", "Ports freed because their holder died or expired.", g(&self.reclaimed)),
            ("auto_allocations_total", "Service types carved by auto-allocation.", g(&self.auto_allocations)),
            ("client_errors_total", "Requests refused with a 4xx answer.", g(&self.client_errors)),
            ("server_errors_total", "Requests failed with a 5xx answer.", g(&self.errors)),
        ]
    }

    fn gauges(g: &Gauges) -> [(&'static str, &'static str, f64); 5] {
        [
            ("allocations", "Live allocations.", g.live_allocations as f64),
            ("instances", "Registered instances.", g.instances as f64),
            ("uptime_seconds", "Seconds since the allocator started.", g.uptime_secs),
            ("resident_memory_bytes", "Resident set size.", g.rss_bytes as f64),
            ("open_connections", "Open client connections.", g.open_connections as f64),
        ]
    }

    pub fn prometheus(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        for (name, help, v) in self.counters() {
            let _ = writeln!(out, "# HELP styxy_{name} {help}\n# TYPE styxy_{name} counter\nstyxy_{name} {v}");
        }
        for (name, help, v) in Self::gauges(gauges) {
            let _ = writeln!(out, "# HELP styxy_{name} {help}\n# TYPE styxy_{name} gauge\nstyxy_{name} {v}");
        }
        out
    }

    pub fn json(&self, gauges: &Gauges) -> serde_json::Value {
        let counters: serde_json::Map<String, serde_json::Value> =
            self.counters().iter().map(|(n, _, v)| (n.to_string(), (*v).into())).collect();
        let gauges: serde_json::Map<String, serde_json::Value> =
            Self::gauges(gauges).iter().map(|(n, _, v)| (n.to_string(), (*v).into())).collect();
        serde_json::json!({ "counters": counters, "gauges": gauges })
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
