//! Process metrics in the Prometheus text format, kept in atomics so that recording never
//! takes a lock or allocates. Only counters, gauges and one fixed-bucket histogram are needed,
//! so this is written here rather than pulling in a metrics framework.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of the merge latency buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A histogram with fixed buckets; the sum is kept in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Every metric of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_open: Gauge,
    pub connections_total: Counter,
    pub connections_rejected: Counter,
    pub auth_failures: Counter,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub malformed_messages: Counter,
    pub ephemeral_dropped: Counter,
    pub rejected_changes: Counter,
    pub oversized_messages: Counter,
    pub slow_client_disconnects: Counter,
    pub merges: Counter,
    pub merge_latency: Histogram,
    pub documents_in_memory: Gauge,
    pub documents_evicted: Counter,
    pub documents_loaded: Gauge,
    pub documents_unloaded: Counter,
    pub compactions: Counter,
    pub storage_errors: Counter,
    pub area_documents: Counter,
    pub commit_batches: Counter,
    pub commit_appends: Counter,
    pub stale_merges: Counter,
    pub announcements: Counter,
    pub listener_reconnects: Counter,
    /// 1 while this process hears other processes' announcements (always 1 on SQLite).
    pub listening: Gauge,
    /// 1 while the process is draining (shutting down, connections being moved away).
    pub draining: Gauge,
    /// This process's node ID, as the label of `lianxin_node_info`.
    pub node: String,
}

impl Metrics {
    /// Metrics of the node `node`.
    pub fn for_node(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ..Self::default()
        }
    }
}

impl Metrics {
    /// Renders all metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if !self.node.is_empty() {
            let node = self.node.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "# HELP lianxin_node_info This process's node ID.\n# TYPE lianxin_node_info gauge\nlianxin_node_info{{node=\"{node}\"}} 1"
            );
        }
        let counters: [(&str, &str, &Counter); 23] = [
            (
                "lianxin_stale_merges_total",
                "Sync messages vetted again because another process changed the document first.",
                &self.stale_merges,
            ),
            (
                "lianxin_announcements_total",
                "Change announcements heard from other processes on the same Postgres.",
                &self.announcements,
            ),
            (
                "lianxin_listener_reconnects_total",
                "Times the connection hearing announcements was lost and made again (each followed by a catch-up).",
                &self.listener_reconnects,
            ),
            (
                "lianxin_commit_batches_total",
                "Transactions written by group commit.",
                &self.commit_batches,
            ),
            (
                "lianxin_commit_appends_total",
                "Change chunks written by group commit (divide by the batches for the batch size).",
                &self.commit_appends,
            ),
            (
                "lianxin_documents_unloaded_total",
                "Documents dropped from memory to stay under limits.max_documents_in_memory.",
                &self.documents_unloaded,
            ),
            (
                "lianxin_area_documents_total",
                "Documents sent by area sync (catch-up, bootstrap and live).",
                &self.area_documents,
            ),
            (
                "lianxin_rejected_changes_total",
                "Changes refused by validation or actor binding.",
                &self.rejected_changes,
            ),
            (
                "lianxin_connections_total",
                "Websocket connections accepted.",
                &self.connections_total,
            ),
            (
                "lianxin_connections_rejected_total",
                "Websocket upgrades refused by the connection limit.",
                &self.connections_rejected,
            ),
            (
                "lianxin_auth_failures_total",
                "Requests with a missing or invalid token.",
                &self.auth_failures,
            ),
            (
                "lianxin_messages_in_total",
                "Protocol messages received.",
                &self.messages_in,
            ),
            (
                "lianxin_messages_out_total",
                "Protocol messages sent.",
                &self.messages_out,
            ),
            (
                "lianxin_bytes_in_total",
                "Websocket payload bytes received.",
                &self.bytes_in,
            ),
            (
                "lianxin_bytes_out_total",
                "Websocket payload bytes sent.",
                &self.bytes_out,
            ),
            (
                "lianxin_malformed_messages_total",
                "Messages that could not be decoded or applied.",
                &self.malformed_messages,
            ),
            (
                "lianxin_ephemeral_dropped_total",
                "Ephemeral messages dropped over a connection's rate limit.",
                &self.ephemeral_dropped,
            ),
            (
                "lianxin_oversized_messages_total",
                "Messages over the size limit.",
                &self.oversized_messages,
            ),
            (
                "lianxin_slow_client_disconnects_total",
                "Connections closed because their send queue was full.",
                &self.slow_client_disconnects,
            ),
            (
                "lianxin_merges_total",
                "Change chunks merged and committed.",
                &self.merges,
            ),
            (
                "lianxin_documents_evicted_total",
                "Idle documents dropped from memory.",
                &self.documents_evicted,
            ),
            (
                "lianxin_compactions_total",
                "Documents compacted into a new snapshot.",
                &self.compactions,
            ),
            (
                "lianxin_storage_errors_total",
                "Failed storage operations.",
                &self.storage_errors,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        let gauges: [(&str, &str, &Gauge); 5] = [
            (
                "lianxin_listening",
                "1 while this process hears other processes' change announcements.",
                &self.listening,
            ),
            (
                "lianxin_draining",
                "1 while this process is draining its connections before it stops.",
                &self.draining,
            ),
            (
                "lianxin_connections_open",
                "Websocket connections open now.",
                &self.connections_open,
            ),
            (
                "lianxin_documents_in_memory",
                "Document actors running now (each holds its sessions).",
                &self.documents_in_memory,
            ),
            (
                "lianxin_documents_loaded",
                "Automerge documents loaded in memory now (at most limits.max_documents_in_memory).",
                &self.documents_loaded,
            ),
        ];
        for (name, help, gauge) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                gauge.get()
            );
        }
        let name = "lianxin_merge_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from receiving a sync message to its commit.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.merge_latency.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.merge_latency.count();
        let sum = self.merge_latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.merge_latency.observe(Duration::from_millis(3));
        m.merge_latency.observe(Duration::from_secs(10));
        let text = m.render();
        assert!(text.contains("lianxin_merge_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("lianxin_merge_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("lianxin_merge_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("lianxin_merge_duration_seconds_count 2"));
    }
}
