//! Throughput limits that survive a shared-cache outage: an in-process token
//! bucket per operator, and a cache wrapper that falls back to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::ports::{Admission, Cache, Clock, PortError};

/// One operator's bucket, in message parts.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Token buckets held by this process alone, one per operator: capacity
/// `rate` parts, refilled at `rate` parts per second.
pub struct LocalLimiter {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl LocalLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> LocalLimiter {
        LocalLimiter {
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `parts` tokens from the operator's bucket if it holds them.
    ///
    /// A bucket seen for the first time starts full. A rate of zero or less
    /// admits nothing.
    // Limitation: a message of more parts than `rate` is never admitted, as a
    // bucket never holds more than `rate` tokens.
    pub fn acquire(&self, operator_id: &str, rate: f64, parts: u32) -> Admission {
        if rate.is_nan() || rate <= 0.0 {
            return Admission::Throttled;
        }
        let now_ms = self.clock.now_unix_ms();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(operator_id.to_owned()).or_insert(Bucket {
            tokens: rate,
            at_ms: now_ms,
        });

        // A clock that went back refills nothing; a lowered rate caps the bucket.
        let elapsed_ms = (now_ms - bucket.at_ms).max(0) as f64;
        bucket.tokens = (bucket.tokens + elapsed_ms * rate / 1000.0).min(rate);
        bucket.at_ms = bucket.at_ms.max(now_ms);

        let wanted = f64::from(parts);
        if wanted <= bucket.tokens {
            bucket.tokens -= wanted;
            Admission::Admitted
        } else {
            Admission::Throttled
        }
    }
}

/// Tunables of [`ResilientCache`].
#[derive(Clone, Debug)]
pub struct ResilientSettings {
    /// Replicas sharing each operator's limit; each enforces `limit /
    /// replicas` on its own while the shared cache is unreachable.
    pub replicas: u32,
    /// While degraded, how often one request tries the shared cache again;
    /// every other request goes straight to the local limits.
    pub probe_interval_ms: i64,
}

impl Default for ResilientSettings {
    fn default() -> Self {
        ResilientSettings {
            replicas: 1,
            probe_interval_ms: 1_000,
        }
    }
}

/// A [`Cache`] that keeps enforcing throughput limits when the shared cache
/// fails: each replica then admits its share of the limit locally.
///
/// While degraded, portability calls fail at once (the router falls back to
/// the store, then the prefix) instead of each waiting out the shared
/// cache's timeout; one acquire per probe interval checks whether the shared
/// cache answers again.
pub struct ResilientCache {
    shared: Arc<dyn Cache>,
    local: LocalLimiter,
    clock: Arc<dyn Clock>,
    replicas: u32,
    probe_interval_ms: i64,
    degraded: AtomicBool,
    next_probe_ms: AtomicI64,
    degradations: AtomicU64,
}

impl ResilientCache {
    pub fn new(
        shared: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
        settings: ResilientSettings,
    ) -> ResilientCache {
        ResilientCache {
            shared,
            local: LocalLimiter::new(clock.clone()),
            clock,
            replicas: settings.replicas.max(1),
            probe_interval_ms: settings.probe_interval_ms.max(1),
            degraded: AtomicBool::new(false),
            next_probe_ms: AtomicI64::new(0),
            degradations: AtomicU64::new(0),
        }
    }

    /// Whether limits are enforced locally because the shared cache failed.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::SeqCst)
    }

    /// How many times limits switched from shared to local.
    pub fn degradations_total(&self) -> u64 {
        self.degradations.load(Ordering::Relaxed)
    }

    /// This replica's share of `limit`, at least one part per second.
    pub fn local_rate(&self, limit: u32) -> f64 {
        if limit == 0 {
            return 0.0;
        }
        (f64::from(limit) / f64::from(self.replicas)).max(1.0)
    }

    /// Whether this call should try the shared cache: always when healthy,
    /// once per probe interval (one caller wins the slot) when degraded.
    fn should_try_shared(&self) -> bool {
        if !self.is_degraded() {
            return true;
        }
        let now_ms = self.clock.now_unix_ms();
        let next = self.next_probe_ms.load(Ordering::SeqCst);
        now_ms >= next
            && self
                .next_probe_ms
                .compare_exchange(
                    next,
                    now_ms + self.probe_interval_ms,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
    }

    fn shared_failed(&self, error: &PortError) {
        let now_ms = self.clock.now_unix_ms();
        self.next_probe_ms
            .store(now_ms + self.probe_interval_ms, Ordering::SeqCst);
        if !self.degraded.swap(true, Ordering::SeqCst) {
            self.degradations.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error = %error,
                replicas = self.replicas,
                "shared throughput limits unavailable, enforcing limit / replicas locally"
            );
        }
    }

    fn shared_answered(&self) {
        if self.degraded.swap(false, Ordering::SeqCst) {
            tracing::info!("shared throughput limits answer again");
        }
    }

    fn degraded_error() -> PortError {
        PortError::Unavailable {
            what: "shared cache",
            detail: "skipped while limits are enforced locally".into(),
        }
    }
}

#[async_trait]
impl Cache for ResilientCache {
    async fn acquire(
        &self,
        operator_id: &str,
        limit: u32,
        parts: u32,
    ) -> Result<Admission, PortError> {
        if self.should_try_shared() {
            match self.shared.acquire(operator_id, limit, parts).await {
                Ok(admission) => {
                    self.shared_answered();
                    return Ok(admission);
                }
                Err(e) => self.shared_failed(&e),
            }
        }

        let rate = self.local_rate(limit);
        Ok(self.local.acquire(operator_id, rate, parts))
    }

    async fn ported_network(&self, e164: &str) -> Result<Option<Option<String>>, PortError> {
        if self.is_degraded() {
            return Err(Self::degraded_error());
        }
        self.shared.ported_network(e164).await
    }

    async fn remember_ported(&self, e164: &str, network: Option<&str>) -> Result<(), PortError> {
        if self.is_degraded() {
            return Err(Self::degraded_error());
        }
        self.shared.remember_ported(e164, network).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::clock::ManualClock;

    fn admitted(limiter: &LocalLimiter, rate: f64, parts: u32, tries: u32) -> u32 {
        (0..tries)
            .filter(|_| limiter.acquire("op-a", rate, parts) == Admission::Admitted)
            .count() as u32
    }

    #[test]
    fn local_bucket_bursts_to_capacity_then_refills_at_rate() {
        // A full bucket admits `rate` parts at once, then `rate` per second.
        let clock = ManualClock::at_unix_ms(1_000_000);
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 10);

        clock.advance_ms(300);
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 3);

        clock.advance_ms(10_000);
        assert_eq!(
            admitted(&limiter, 10.0, 1, 50),
            10,
            "refill caps at capacity"
        );
    }

    #[test]
    fn local_bucket_counts_parts_and_keeps_operators_apart() {
        // A three-part message takes three tokens; another operator's bucket
        // is untouched.
        let clock = ManualClock::at_unix_ms(0);
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        assert_eq!(admitted(&limiter, 10.0, 3, 10), 3);
        assert_eq!(limiter.acquire("op-a", 10.0, 1), Admission::Admitted);
        assert_eq!(limiter.acquire("op-a", 10.0, 1), Admission::Throttled);
        assert_eq!(limiter.acquire("op-b", 10.0, 3), Admission::Admitted);
        assert_eq!(limiter.acquire("op-a", 0.0, 1), Admission::Throttled);
    }

    #[test]
    fn local_bucket_survives_a_clock_that_goes_back() {
        // Time going backwards refills nothing and never panics.
        let clock = ManualClock::at_unix_ms(10_000);
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        assert_eq!(admitted(&limiter, 5.0, 1, 10), 5);
        clock.set_unix_ms(5_000);
        assert_eq!(admitted(&limiter, 5.0, 1, 10), 0);
        clock.set_unix_ms(10_200);
        assert_eq!(admitted(&limiter, 5.0, 1, 10), 1);
    }

    /// A shared cache that admits everything or fails, as switched.
    #[derive(Default)]
    struct Switchable {
        down: AtomicBool,
        calls: AtomicU64,
    }

    #[async_trait]
    impl Cache for Switchable {
        async fn acquire(&self, _: &str, _: u32, _: u32) -> Result<Admission, PortError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(PortError::Timeout {
                    what: "redis",
                    after: Duration::from_millis(50),
                });
            }
            Ok(Admission::Admitted)
        }

        async fn ported_network(&self, _: &str) -> Result<Option<Option<String>>, PortError> {
            Ok(Some(None))
        }

        async fn remember_ported(&self, _: &str, _: Option<&str>) -> Result<(), PortError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn falls_back_to_a_share_of_the_limit_and_recovers() {
        // With the shared cache down, 4 replicas of a 40 parts/s operator
        // each admit 10 parts/s; the shared cache is probed once per
        // interval and takes over again when it answers.
        let clock = ManualClock::at_unix_ms(0);
        let shared = Arc::new(Switchable::default());
        let settings = ResilientSettings {
            replicas: 4,
            probe_interval_ms: 500,
        };
        let cache = ResilientCache::new(shared.clone(), Arc::new(clock.clone()), settings);

        for _ in 0..100 {
            assert_eq!(
                cache.acquire("op-a", 40, 1).await.unwrap(),
                Admission::Admitted
            );
        }
        assert!(!cache.is_degraded());

        shared.down.store(true, Ordering::SeqCst);
        let mut local = 0;
        for _ in 0..100 {
            if cache.acquire("op-a", 40, 1).await.unwrap() == Admission::Admitted {
                local += 1;
            }
        }
        assert_eq!(local, 10);
        assert!(cache.is_degraded());
        assert_eq!(cache.degradations_total(), 1);
        assert_eq!(
            shared.calls.load(Ordering::SeqCst),
            101,
            "one failed call, no probes"
        );
        assert!(cache.ported_network("+447400123456").await.is_err());

        clock.advance_ms(500);
        cache.acquire("op-a", 40, 1).await.unwrap();
        cache.acquire("op-a", 40, 1).await.unwrap();
        assert_eq!(
            shared.calls.load(Ordering::SeqCst),
            102,
            "one probe per interval"
        );
        assert_eq!(
            cache.degradations_total(),
            1,
            "still down is not a new switch"
        );

        shared.down.store(false, Ordering::SeqCst);
        clock.advance_ms(500);
        assert_eq!(
            cache.acquire("op-a", 40, 1).await.unwrap(),
            Admission::Admitted
        );
        assert!(!cache.is_degraded());
        assert_eq!(
            cache.ported_network("+447400123456").await.unwrap(),
            Some(None)
        );
    }

    #[test]
    fn local_share_is_at_least_one_part_per_second() {
        let cache = ResilientCache::new(
            Arc::new(Switchable::default()),
            Arc::new(ManualClock::at_unix_ms(0)),
            ResilientSettings {
                replicas: 8,
                probe_interval_ms: 1_000,
            },
        );
        assert_eq!(cache.local_rate(4), 1.0);
        assert_eq!(cache.local_rate(80), 10.0);
        assert_eq!(cache.local_rate(0), 0.0);
    }
}
