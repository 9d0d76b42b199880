//! Throughput limits that survive a shared-cache outage: an in-process
//! sliding-window log per operator, and a cache wrapper that falls back to it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::ports::{Admission, Cache, Clock, PortError};

/// Length of the window every limit is counted over.
pub const LIMIT_WINDOW_MS: i64 = 1_000;

/// One operator's admissions still inside the window, oldest first.
#[derive(Debug, Default)]
struct Window {
    /// `(admitted at, parts)`, times never decreasing.
    log: VecDeque<(i64, u32)>,
    /// Sum of the parts in `log`.
    parts: u64,
}

impl Window {
    /// Forgets admissions at or before `now_ms - LIMIT_WINDOW_MS`.
    fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(LIMIT_WINDOW_MS);
        while let Some(&(at_ms, parts)) = self.log.front() {
            if at_ms > horizon {
                break;
            }
            self.log.pop_front();
            self.parts -= u64::from(parts);
        }
    }
}

/// Sliding-window logs held by this process alone, one per operator: a
/// message is admitted only if the parts admitted in the last second plus
/// its own stay within the limit.
///
/// The same semantics as the shared limiter in Redis, and for the same
/// reason: a token bucket of `limit` refilled at `limit` per second admits up
/// to twice the limit within one second, the log never more than the limit in
/// any one-second window, while an idle operator still admits the whole limit
/// at once. It costs memory for the admissions of the last second, at most
/// `limit` entries per operator.
pub struct LocalLimiter {
    clock: Arc<dyn Clock>,
    windows: Mutex<HashMap<String, Window>>,
}

impl LocalLimiter {
    pub fn new(clock: Arc<dyn Clock>) -> LocalLimiter {
        LocalLimiter {
            clock,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Admits `parts` if the operator's parts admitted in the last second
    /// plus `parts` stay within `limit`, and logs them.
    ///
    /// A fractional limit admits its whole part (7.5 admits 7 parts per
    /// window). A limit of zero or less admits nothing. A clock that goes
    /// back dates new admissions no earlier than the newest one, so they
    /// expire late rather than early.
    // A message of more parts than `limit` is never admitted, as no window
    // may hold more than `limit` parts; the router drops such an operator
    // before asking. Limitation: while degraded, a message of more parts
    // than this replica's share (`limit / replicas`) but within `limit` is
    // reported as throttled until the shared limits answer again.
    pub fn acquire(&self, operator_id: &str, limit: f64, parts: u32) -> Admission {
        if limit.is_nan() || limit <= 0.0 {
            return Admission::Throttled;
        }
        let now_ms = self.clock.now_unix_ms();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let window = windows.entry(operator_id.to_owned()).or_default();
        window.expire(now_ms);

        let wanted = window.parts + u64::from(parts);
        if wanted as f64 > limit {
            return Admission::Throttled;
        }
        let newest_ms = window.log.back().map_or(now_ms, |&(at_ms, _)| at_ms);
        window.log.push_back((now_ms.max(newest_ms), parts));
        window.parts = wanted;
        Admission::Admitted
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

    /// This replica's share of `limit` per one-second window, at least one
    /// part.
    pub fn local_rate(&self, limit: u32) -> f64 {
        if limit == 0 {
            return 0.0;
        }
        (f64::from(limit) / f64::from(self.replicas)).max(1.0)
    }

    /// Whether this call should try the shared cache: always when healthy,
    /// once per probe interval (one caller wins the slot) when degraded.
    /// A clock that went back since the last probe probes at once, so that
    /// a jump back does not keep limits local for the length of the jump.
    fn should_try_shared(&self) -> bool {
        if !self.is_degraded() {
            return true;
        }
        let now_ms = self.clock.now_unix_ms();
        let next = self.next_probe_ms.load(Ordering::SeqCst);
        let went_back = next - now_ms > self.probe_interval_ms;
        (now_ms >= next || went_back)
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

    /// Asks the shared cache one cheap question, whatever the traffic, so
    /// that an outage (or a return) is noticed and reported without waiting
    /// for a request: `/ready` and the dependency metric read this state.
    pub async fn check_shared(&self) {
        if !self.should_try_shared() {
            return;
        }
        match self.shared.ping().await {
            Ok(_) => self.shared_answered(),
            Err(error) => self.shared_failed(&error),
        }
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

    /// The most parts admitted within any window `(t - 1 s, t]`, from
    /// admissions `(at_ms, parts)` in time order.
    fn busiest_window(admissions: &[(i64, u32)]) -> u32 {
        let mut most = 0;
        let mut first = 0;
        let mut inside = 0;
        for &(at_ms, parts) in admissions {
            inside += parts;
            while admissions[first].0 <= at_ms - LIMIT_WINDOW_MS {
                inside -= admissions[first].1;
                first += 1;
            }
            most = most.max(inside);
        }
        most
    }

    #[test]
    fn an_idle_operator_admits_its_limit_at_once_then_nothing_for_a_second() {
        // The whole limit passes as one burst; the window then stays full
        // until the burst is a second old, when the limit passes again.
        let clock = ManualClock::at_unix_ms(1_000_000);
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 10);

        clock.advance_ms(300);
        assert_eq!(
            admitted(&limiter, 10.0, 1, 50),
            0,
            "a bucket would refill 3"
        );
        clock.advance_ms(699);
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 0, "999 ms after the burst");

        clock.advance_ms(1);
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 10, "the burst has left");
        clock.advance_ms(10_000);
        assert_eq!(
            admitted(&limiter, 10.0, 1, 50),
            10,
            "never more than the limit"
        );
    }

    #[test]
    fn the_window_slides_rather_than_resetting_each_second() {
        // Parts leave the window one second after they were admitted, not at
        // a second boundary: 5 at 0 ms and 5 at 500 ms leave 5 free at 1 s.
        let clock = ManualClock::at_unix_ms(0);
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        assert_eq!(admitted(&limiter, 10.0, 1, 5), 5);
        clock.advance_ms(500);
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 5);

        clock.advance_ms(500);
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 5);
        clock.advance_ms(499);
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 0);
        clock.advance_ms(1);
        assert_eq!(admitted(&limiter, 10.0, 1, 50), 5);
    }

    #[test]
    fn parts_count_and_operators_are_kept_apart() {
        // A three-part message uses three of the limit; another operator's
        // window is untouched; a fractional limit admits its whole part.
        let clock = ManualClock::at_unix_ms(0);
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        assert_eq!(admitted(&limiter, 10.0, 3, 10), 3);
        assert_eq!(limiter.acquire("op-a", 10.0, 2), Admission::Throttled);
        assert_eq!(limiter.acquire("op-a", 10.0, 1), Admission::Admitted);
        assert_eq!(limiter.acquire("op-a", 10.0, 1), Admission::Throttled);
        assert_eq!(limiter.acquire("op-b", 10.0, 3), Admission::Admitted);
        assert_eq!(limiter.acquire("op-c", 0.0, 1), Admission::Throttled);
        assert_eq!(limiter.acquire("op-c", 4.0, 5), Admission::Throttled);

        assert_eq!(admitted(&limiter, 10.0, 1, 1), 0, "op-a stays full");
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        assert_eq!(admitted(&limiter, 7.5, 1, 10), 7);
    }

    #[test]
    fn a_clock_that_goes_back_frees_nothing_early() {
        // Time going backwards expires nothing and never panics; the parts
        // leave one second after the latest time the clock showed.
        let clock = ManualClock::at_unix_ms(10_000);
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        assert_eq!(admitted(&limiter, 5.0, 1, 3), 3);
        clock.set_unix_ms(5_000);
        assert_eq!(admitted(&limiter, 5.0, 1, 10), 2);
        clock.set_unix_ms(10_999);
        assert_eq!(admitted(&limiter, 5.0, 1, 10), 0);
        clock.set_unix_ms(11_000);
        assert_eq!(admitted(&limiter, 5.0, 1, 10), 5);
    }

    proptest::proptest! {
        #[test]
        fn no_window_of_a_second_holds_more_than_the_limit(
            limit in 1u32..40,
            steps in proptest::collection::vec((0i64..300, 1u32..=3, 1u32..8), 1..200),
        ) {
            // Any schedule of arrivals, bursty or sparse, of 1 to 3 parts:
            // every window (t - 1 s, t] holds at most `limit` parts.
            let clock = ManualClock::at_unix_ms(0);
            let limiter = LocalLimiter::new(Arc::new(clock.clone()));
            let mut log = Vec::new();
            for (gap_ms, parts, tries) in steps {
                clock.advance_ms(gap_ms);
                for _ in 0..tries {
                    if limiter.acquire("op-a", f64::from(limit), parts) == Admission::Admitted {
                        log.push((clock.now_unix_ms(), parts));
                    }
                }
            }
            proptest::prop_assert!(busiest_window(&log) <= limit);
        }
    }

    #[test]
    fn steady_demand_above_the_limit_gets_the_limit_every_second() {
        // Messages of 1, 2 and 3 parts every 2 ms for 10 s: each second
        // admits between limit - 2 and limit parts, never more in any window.
        let clock = ManualClock::at_unix_ms(0);
        let limiter = LocalLimiter::new(Arc::new(clock.clone()));
        let mut log = Vec::new();
        for n in 0..5_000u32 {
            let parts = [1, 3, 2][n as usize % 3];
            if limiter.acquire("op-a", 30.0, parts) == Admission::Admitted {
                log.push((clock.now_unix_ms(), parts));
            }
            clock.advance_ms(2);
        }

        assert_eq!(busiest_window(&log), 30);
        for second in 0..10 {
            let parts: u32 = log
                .iter()
                .filter(|(at_ms, _)| at_ms / 1_000 == second)
                .map(|(_, parts)| parts)
                .sum();
            assert!((28..=30).contains(&parts), "second {second}: {parts}");
        }
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

    #[tokio::test]
    async fn a_clock_jump_back_does_not_delay_the_probe() {
        // Degraded at 100 s, the clock jumps back 30 minutes: the next
        // acquire probes the shared cache at once instead of 30 minutes on.
        let clock = ManualClock::at_unix_ms(100_000 + 1_800_000);
        let shared = Arc::new(Switchable::default());
        let settings = ResilientSettings {
            replicas: 2,
            probe_interval_ms: 1_000,
        };
        let cache = ResilientCache::new(shared.clone(), Arc::new(clock.clone()), settings);
        shared.down.store(true, Ordering::SeqCst);
        cache.acquire("op-a", 40, 1).await.unwrap();
        assert!(cache.is_degraded());

        shared.down.store(false, Ordering::SeqCst);
        clock.advance_ms(-1_800_000);
        cache.acquire("op-a", 40, 1).await.unwrap();
        assert!(
            !cache.is_degraded(),
            "the jump back must not postpone the probe"
        );
        assert_eq!(shared.calls.load(Ordering::SeqCst), 2);
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
