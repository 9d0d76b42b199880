//! The traits through which the routing core reaches time, storage, the cache
//! and the health bus, so the same core runs in the service and in simulation.

use std::time::Duration;

use async_trait::async_trait;

use super::health::HealthEvent;
use super::model::TableSource;

/// Wall-clock time in UTC, as the routing rules see it.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch, UTC.
    fn now_unix_ms(&self) -> i64;

    /// Minute of the UTC day, 0..1440, for time-window rules.
    fn minute_of_day(&self) -> u16 {
        let minutes = self.now_unix_ms().div_euclid(60_000);
        minutes.rem_euclid(1440) as u16
    }
}

/// Why a store, cache or bus call failed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("{what} is unreachable: {detail}")]
    Unavailable { what: &'static str, detail: String },
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("{what} returned data that does not validate: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// The source of truth for the routing table.
#[async_trait]
pub trait TableStore: Send + Sync + 'static {
    /// Reads the whole table.
    async fn load(&self) -> Result<TableSource, PortError>;

    /// The current table version, cheap enough to poll.
    async fn version(&self) -> Result<u64, PortError>;

    /// The network (`cc:Name`) a ported number now belongs to, or `None` when
    /// the number was not ported. Used when the table is loaded without its
    /// ported numbers.
    async fn ported_network(&self, e164: &str) -> Result<Option<String>, PortError>;
}

/// What a shared throughput limiter decided for one operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    Throttled,
}

/// Shared state across replicas: throughput limits and the portability cache.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Admits `parts` if the parts the operator admitted in the last second,
    /// plus `parts`, stay within `limit`, atomically for every replica: no
    /// window of one second (aligned or not) holds more than `limit` parts,
    /// and an idle operator admits `limit` parts at once.
    async fn acquire(
        &self,
        operator_id: &str,
        limit: u32,
        parts: u32,
    ) -> Result<Admission, PortError>;

    /// A cached portability answer: `Some(Some(net))` ported, `Some(None)`
    /// known not ported, `None` not cached.
    async fn ported_network(&self, e164: &str) -> Result<Option<Option<String>>, PortError>;

    /// Remembers a portability answer for a while.
    async fn remember_ported(&self, e164: &str, network: Option<&str>) -> Result<(), PortError>;

    /// Whether the cache answers, asked without traffic. The default asks
    /// for a number that cannot exist; a cache with a cheaper question
    /// (and counters that should not see this one) overrides it.
    async fn ping(&self) -> Result<(), PortError> {
        self.ported_network("+0").await.map(|_| ())
    }
}

/// Why the bus refused a message before it reached the health book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not JSON, or JSON that does not match the `HealthEvent` schema.
    #[error("not a valid health event")]
    Malformed,
    /// Larger than the 4 KiB a health event may take.
    #[error("larger than a health event may be")]
    Oversized,
    /// The subject names another operator than the event's `operator_id`.
    #[error("subject names another operator than the event")]
    SubjectMismatch,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Oversized => "oversized",
            Rejection::SubjectMismatch => "subject_mismatch",
        }
    }
}

/// What the health bus hands the core, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusMessage {
    /// A well-formed event, not yet checked against the book.
    Event(HealthEvent),
    /// A message that could not be an event.
    Rejected(Rejection),
    /// The bus (re)connected; events follow.
    Connected,
    /// The bus lost its connection and is trying to get it back by itself.
    Disconnected,
}

/// A stream of operator health events.
#[async_trait]
pub trait HealthBus: Send + 'static {
    /// The next message, or `None` when the bus has closed for good. A source
    /// delivers the current state of every operator first, then live events.
    async fn next(&mut self) -> Option<BusMessage>;
}
