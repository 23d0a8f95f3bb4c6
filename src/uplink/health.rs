//! The periodic health message: process footprint (RSS, CPU time), the
//! queue per stream (depth, bytes, oldest age), the uplink's rate and
//! acknowledgement latency since the last message, every counter (per
//! adapter and per function too) and the last errors.

use crate::clock::now_ms;
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Acknowledgement latencies and acknowledged records between two health messages.
#[derive(Debug)]
pub struct Window {
    since: Instant,
    acked_at_start: u64,
    latencies_ms: Vec<f64>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            since: Instant::now(),
            acked_at_start: 0,
            latencies_ms: Vec::new(),
        }
    }
}

impl Window {
    /// A batch was acknowledged `latency` after it was published.
    pub fn acked(&mut self, latency: Duration) {
        // Bounded: a window's figures need no more samples than this.
        if self.latencies_ms.len() < 100_000 {
            self.latencies_ms.push(latency.as_secs_f64() * 1e3);
        }
    }

    /// The window's figures; starts the next window.
    fn take(&mut self, acked_now: u64) -> Value {
        let secs = self.since.elapsed().as_secs_f64().max(1e-3);
        let records = acked_now.saturating_sub(self.acked_at_start);
        let mut l = std::mem::take(&mut self.latencies_ms);
        l.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            l.get(((l.len() as f64 - 1.0) * q).round() as usize)
                .copied()
        };
        let v = json!({
            "records_per_s": records as f64 / secs,
            "ack_latency_ms": { "p50": pick(0.5), "p99": pick(0.99), "max": l.last(), "samples": l.len() },
        });
        self.since = Instant::now();
        self.acked_at_start = acked_now;
        v
    }
}

/// Resident memory in bytes and CPU time (user + system) in ms of this process.
pub fn process() -> Value {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4096);
    let cpu_ms = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may hold spaces, in parentheses.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks * 10) // USER_HZ is 100 on Linux
        });
    json!({ "rss_bytes": rss, "cpu_ms": cpu_ms })
}

/// The whole health message.
pub async fn message(gateway: &str, metrics: &Metrics, queue: &Path, window: &mut Window) -> Value {
    let path = queue.to_owned();
    let streams = tokio::task::spawn_blocking(move || crate::queue::inspect::stats(&path))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let now = now_ms();
    let streams: Vec<Value> = streams
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "records": s.records,
                "bytes": s.bytes,
                "oldest_age_ms": s.oldest_ms.map(|t| (now - t).max(0)),
                "dropped": s.dropped, "rejected": s.rejected, "expired": s.expired,
            })
        })
        .collect();
    let counters = metrics.snapshot();
    let uplink = window.take(counters.uplink_records_acked);
    json!({
        "v": 2,
        "gateway": gateway,
        "version": env!("CARGO_PKG_VERSION"),
        "config_hash": metrics.config_hash(),
        "uptime_s": metrics.uptime_s(),
        "time_ms": now,
        "process": process(),
        "queue": streams,
        "uplink": uplink,
        "functions": metrics.functions(),
        "last_errors": metrics.last_errors(),
        "counters": counters,
    })
}
