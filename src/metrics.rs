//! The service's Prometheus metrics, in a registry the application owns so
//! that tests and several instances in one process never share counters.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::core::health::{Health, HealthStatus};
use crate::core::health_feed::HealthObserver;
use crate::core::reload::ReloadObserver;
use crate::core::router::Router;
use crate::core::table::TableError;

/// Decision latency buckets in seconds, from 10µs to 100ms.
const DECISION_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// Health states as the `state` label spells them.
const HEALTH_STATES: [Health; 4] = [Health::Up, Health::Unknown, Health::Degraded, Health::Down];

/// Why the metrics could not be registered or rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("register or encode metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("metrics text is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// Counters read from a component at scrape time: the portability cache's
/// hits, misses and corrupt values.
pub trait CacheCounters: Send + Sync + 'static {
    fn hits_misses_corrupt(&self) -> (u64, u64, u64);
}

/// A dependency whose state is read at scrape time.
pub trait DependencyProbe: Send + Sync + 'static {
    fn is_up(&self) -> bool;
}

/// Every metric the service records. Labels take bounded values only:
/// outcomes are `ok` or a fixed reason, operators are ids from the table.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    decision_seconds: Histogram,
    table_version: IntGauge,
    reloads: IntCounterVec,
    operator_health: IntGaugeVec,
    health_events: IntCounterVec,
    throttled: IntCounterVec,
    portability: IntCounterVec,
    dependency_up: IntGaugeVec,
    tls_handshake_failures: IntCounter,
    tls_reloads: IntCounterVec,
    sources: Arc<std::sync::RwLock<Sources>>,
}

/// What is read at scrape time rather than pushed as it happens.
#[derive(Default)]
struct Sources {
    router: Option<Arc<Router>>,
    cache: Option<Arc<dyn CacheCounters>>,
    probes: Vec<(&'static str, Arc<dyn DependencyProbe>)>,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let metrics = Metrics {
            registry: Registry::new(),
            decisions: counter_vec(
                "routing_engine_decisions_total",
                "SelectOperator calls answered, by outcome (ok or the error reason) \
                 and chosen operator (empty when none was chosen).",
                &["outcome", "operator"],
            )?,
            decision_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "routing_engine_decision_duration_seconds",
                    "Time spent deciding one SelectOperator call, in seconds.",
                )
                .buckets(DECISION_BUCKETS.to_vec()),
            )?,
            table_version: IntGauge::new(
                "routing_engine_table_version",
                "Version of the routing table in use; 0 until one is installed.",
            )?,
            reloads: counter_vec(
                "routing_engine_table_reloads_total",
                "Routing tables read from the store, by result: applied or refused.",
                &["result"],
            )?,
            operator_health: gauge_vec(
                "routing_engine_operator_health",
                "1 for each operator's current health state (up, unknown, degraded, down).",
                &["operator", "state"],
            )?,
            health_events: counter_vec(
                "routing_engine_health_events_total",
                "Operator health events, by result: accepted or why they were dropped.",
                &["result"],
            )?,
            throttled: counter_vec(
                "routing_engine_throttled_total",
                "Candidates skipped because they were at their throughput limit.",
                &["operator"],
            )?,
            portability: counter_vec(
                "routing_engine_portability_cache_total",
                "Portability cache lookups, by result: hit, miss or corrupt.",
                &["result"],
            )?,
            dependency_up: gauge_vec(
                "routing_engine_dependency_up",
                "1 while a dependency (postgres, redis, nats) answers, else 0.",
                &["dependency"],
            )?,
            tls_handshake_failures: IntCounter::new(
                "routing_engine_tls_handshake_failures_total",
                "Incoming gRPC connections refused during the TLS handshake.",
            )?,
            tls_reloads: counter_vec(
                "routing_engine_tls_reloads_total",
                "Changed certificate, key or CA files read from TLS_DIR, by result: \
                 applied or refused (the previous ones stay in use).",
                &["result"],
            )?,
            sources: Arc::default(),
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> prometheus::Result<()> {
        let r = &self.registry;
        r.register(Box::new(self.decisions.clone()))?;
        r.register(Box::new(self.decision_seconds.clone()))?;
        r.register(Box::new(self.table_version.clone()))?;
        r.register(Box::new(self.reloads.clone()))?;
        r.register(Box::new(self.operator_health.clone()))?;
        r.register(Box::new(self.health_events.clone()))?;
        r.register(Box::new(self.throttled.clone()))?;
        r.register(Box::new(self.portability.clone()))?;
        r.register(Box::new(self.dependency_up.clone()))?;
        r.register(Box::new(self.tls_handshake_failures.clone()))?;
        r.register(Box::new(self.tls_reloads.clone()))
    }

    /// Reads operator health from `router` at every scrape.
    pub fn watch_router(&self, router: Arc<Router>) {
        self.sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .router = Some(router);
    }

    /// Reads the portability cache's counters at every scrape.
    pub fn watch_cache(&self, cache: Arc<dyn CacheCounters>) {
        self.sources
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .cache = Some(cache);
    }

    /// Reads whether `dependency` is up at every scrape.
    pub fn watch_dependency(&self, dependency: &'static str, probe: Arc<dyn DependencyProbe>) {
        let mut sources = self.sources.write().unwrap_or_else(|p| p.into_inner());
        sources.probes.push((dependency, probe));
    }

    /// Counts one answered call and its latency.
    pub fn record_decision(&self, outcome: &str, operator: &str, seconds: f64) {
        self.decisions.with_label_values(&[outcome, operator]).inc();
        self.decision_seconds.observe(seconds);
    }

    /// Counts a candidate skipped at its throughput limit.
    pub fn record_throttled(&self, operator: &str) {
        self.throttled.with_label_values(&[operator]).inc();
    }

    pub fn set_table_version(&self, version: u64) {
        self.table_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
    }

    pub fn set_dependency(&self, dependency: &str, up: bool) {
        self.dependency_up
            .with_label_values(&[dependency])
            .set(i64::from(up));
    }

    /// Counts one changed set of TLS files, `applied` or `refused`.
    pub fn record_tls_reload(&self, result: &str) {
        self.tls_reloads.with_label_values(&[result]).inc();
    }

    pub fn tls_reloads(&self, result: &str) -> u64 {
        self.tls_reloads.with_label_values(&[result]).get()
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// Handshakes refused so far.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.get()
    }

    /// Each dependency's last known state, for `/ready`.
    pub fn dependencies(&self) -> Vec<(String, bool)> {
        self.refresh();
        let families = self.registry.gather();
        let Some(family) = families
            .iter()
            .find(|f| f.name() == "routing_engine_dependency_up")
        else {
            return Vec::new();
        };
        family
            .get_metric()
            .iter()
            .filter_map(|m| {
                let name = m.get_label().first()?.value().to_owned();
                Some((name, m.get_gauge().value() > 0.5))
            })
            .collect()
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> Result<String, MetricsError> {
        self.refresh();
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8(buffer)?)
    }

    /// Brings the values read at scrape time up to date.
    fn refresh(&self) {
        let sources = self.sources.read().unwrap_or_else(|p| p.into_inner());
        if let Some(router) = &sources.router {
            self.refresh_health(router);
        }
        if let Some(cache) = &sources.cache {
            let (hits, misses, corrupt) = cache.hits_misses_corrupt();
            for (result, total) in [("hit", hits), ("miss", misses), ("corrupt", corrupt)] {
                let counter = self.portability.with_label_values(&[result]);
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        for (dependency, probe) in &sources.probes {
            self.set_dependency(dependency, probe.is_up());
        }
    }

    fn refresh_health(&self, router: &Router) {
        let Some(table) = router.table() else { return };
        let now = router.clock().now_unix_ms();
        self.operator_health.reset();
        for operator in table.operators() {
            let current = router.health().health(&operator.id, now);
            for state in HEALTH_STATES {
                let gauge = self
                    .operator_health
                    .with_label_values(&[&operator.id, state.as_str()]);
                gauge.set(i64::from(state == current));
            }
        }
    }
}

impl ReloadObserver for Metrics {
    fn applied(&self, version: u64) {
        self.reloads.with_label_values(&["applied"]).inc();
        self.set_table_version(version);
    }

    fn refused(&self, _error: &TableError) {
        self.reloads.with_label_values(&["refused"]).inc();
    }

    fn store_up(&self, up: bool) {
        self.set_dependency("postgres", up);
    }
}

impl HealthObserver for Metrics {
    fn accepted(&self, _operator_id: &str, _status: HealthStatus) {
        self.health_events.with_label_values(&["accepted"]).inc();
    }

    fn dropped(&self, reason: &'static str) {
        self.health_events.with_label_values(&[reason]).inc();
    }

    fn bus_connected(&self, connected: bool) {
        self.set_dependency("nats", connected);
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
        metrics.record_throttled("op-a");
        ReloadObserver::applied(&metrics, 8);
        HealthObserver::dropped(&metrics, "duplicate");
        HealthObserver::bus_connected(&metrics, true);

        let text = metrics.render().unwrap();
        for line in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(line.starts_with("# HELP routing_engine_"), "{line}");
        }
        assert!(text.contains(r#"routing_engine_decisions_total{operator="op-a",outcome="ok"} 1"#));
        assert!(text.contains("routing_engine_table_version 8"));
        assert!(text.contains(r#"routing_engine_table_reloads_total{result="applied"} 1"#));
        assert!(text.contains(r#"routing_engine_health_events_total{result="duplicate"} 1"#));
        assert!(text.contains(r#"routing_engine_throttled_total{operator="op-a"} 1"#));
        assert!(text.contains(r#"routing_engine_dependency_up{dependency="nats"} 1"#));
        assert!(text.contains("routing_engine_tls_handshake_failures_total 1"));
        assert_eq!(metrics.tls_handshake_failures(), 1);
    }
}
