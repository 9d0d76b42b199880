//! The service's Prometheus metrics, in a registry the application owns so
//! that tests and several instances in one process never share counters.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Decision latency buckets in seconds, from 10µs to 100ms.
const DECISION_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// Why the metrics could not be registered or rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("register or encode metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("metrics text is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// Every metric the service records. Labels take bounded values only:
/// outcomes are `ok` or a fixed reason, operators are ids from the table.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    decision_seconds: Histogram,
    table_version: IntGauge,
    tls_handshake_failures: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();

        let decisions = IntCounterVec::new(
            Opts::new(
                "routing_engine_grpc_decisions_total",
                "SelectOperator calls answered, by outcome (ok or the error reason) \
                 and chosen operator (empty when none was chosen).",
            ),
            &["outcome", "operator"],
        )?;
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "routing_engine_grpc_decision_duration_seconds",
                "Time spent deciding one SelectOperator call, in seconds.",
            )
            .buckets(DECISION_BUCKETS.to_vec()),
        )?;
        let table_version = IntGauge::new(
            "routing_engine_table_version",
            "Version of the routing table in use; 0 until one is installed.",
        )?;
        let tls_handshake_failures = IntCounter::new(
            "routing_engine_tls_handshake_failures_total",
            "Incoming gRPC connections refused during the TLS handshake.",
        )?;

        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(decision_seconds.clone()))?;
        registry.register(Box::new(table_version.clone()))?;
        registry.register(Box::new(tls_handshake_failures.clone()))?;

        Ok(Metrics {
            registry,
            decisions,
            decision_seconds,
            table_version,
            tls_handshake_failures,
        })
    }

    /// Counts one answered call and its latency.
    pub fn record_decision(&self, outcome: &str, operator: &str, seconds: f64) {
        self.decisions.with_label_values(&[outcome, operator]).inc();
        self.decision_seconds.observe(seconds);
    }

    pub fn set_table_version(&self, version: u64) {
        self.table_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// Handshakes refused so far.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.get()
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8(buffer)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_the_service_prefix_and_help() {
        let metrics = Metrics::new().unwrap();
        metrics.record_decision("ok", "op-a", 0.000_2);
        metrics.set_table_version(7);
        metrics.tls_handshake_failed();

        let text = metrics.render().unwrap();
        for line in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(line.starts_with("# HELP routing_engine_"), "{line}");
        }
        assert!(
            text.contains(r#"routing_engine_grpc_decisions_total{operator="op-a",outcome="ok"} 1"#)
        );
        assert!(text.contains("routing_engine_table_version 7"));
        assert!(text.contains("routing_engine_tls_handshake_failures_total 1"));
        assert_eq!(metrics.tls_handshake_failures(), 1);
    }
}
