//! Simulated time for the core's `Clock`: the simulation's own time plus a
//! per-machine offset the fault controller moves (skew and jumps).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use routing_engine::core::ports::Clock;
use tokio::time::Instant;

/// Milliseconds since the start of the run, in simulated time.
#[derive(Clone, Copy, Debug)]
pub struct SimTime {
    start: Instant,
}

impl SimTime {
    #[allow(clippy::disallowed_methods)] // simulated time: tokio's Instant is madsim's
    pub fn start_now() -> SimTime {
        SimTime {
            start: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.start.elapsed().as_millis() as i64
    }
}

/// A machine's UTC clock: `base + elapsed + offset`. The offset outlives a
/// restart of the process, as a machine's clock error does.
#[derive(Clone, Debug)]
pub struct SimClock {
    time: SimTime,
    base_unix_ms: i64,
    offset_ms: Arc<AtomicI64>,
}

impl SimClock {
    pub fn new(time: SimTime, base_unix_ms: i64, offset_ms: Arc<AtomicI64>) -> SimClock {
        SimClock {
            time,
            base_unix_ms,
            offset_ms,
        }
    }
}

impl Clock for SimClock {
    fn now_unix_ms(&self) -> i64 {
        self.base_unix_ms + self.time.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// The UTC minute of day a clock at `base + at_ms + offset_ms` shows.
pub fn minute_at(base_unix_ms: i64, at_ms: i64, offset_ms: i64) -> u16 {
    let minutes = (base_unix_ms + at_ms + offset_ms).div_euclid(60_000);
    minutes.rem_euclid(1440) as u16
}
