//! Clocks for the routing core: the system clock for the service and a
//! settable one for tests and simulation.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::ports::Clock;

/// The host's UTC clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
    fn now_unix_ms(&self) -> i64 {
        let now = std::time::SystemTime::now();
        match now.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(e) => -(e.duration().as_millis() as i64),
        }
    }
}

/// A clock that stands still until it is moved; shared by clones.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn at_unix_ms(now_ms: i64) -> Self {
        ManualClock {
            now_ms: Arc::new(AtomicI64::new(now_ms)),
        }
    }

    /// A clock at `hh:mm` UTC on 2026-01-01.
    pub fn at_utc(hh: u16, mm: u16) -> Self {
        const JAN_1_2026_MS: i64 = 1_767_225_600_000;
        Self::at_unix_ms(JAN_1_2026_MS + (i64::from(hh) * 60 + i64::from(mm)) * 60_000)
    }

    pub fn set_unix_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, by_ms: i64) {
        self.now_ms.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_reports_minute_of_day() {
        let clock = ManualClock::at_utc(22, 15);
        assert_eq!(clock.minute_of_day(), 22 * 60 + 15);
        clock.advance_ms(2 * 3_600_000);
        assert_eq!(clock.minute_of_day(), 15);
    }
}
