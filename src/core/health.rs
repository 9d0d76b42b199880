//! Operator health as the bus reports it, and the book of what each replica
//! currently believes.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// Status an operator-health event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Up,
    Degraded,
    Down,
}

/// One event on `operator.health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthEvent {
    pub operator_id: String,
    pub status: HealthStatus,
    /// Per operator, increasing; an event with a sequence not above the last
    /// one applied is a duplicate or arrived out of order.
    pub sequence: u64,
    /// When the status was observed, milliseconds since the Unix epoch.
    pub observed_at_ms: i64,
    #[serde(default)]
    pub reason: String,
}

/// The health a decision routes on. Order is preference within a tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    Up,
    /// No event, or none for longer than the staleness limit: routes like
    /// `Up` but after known-healthy operators.
    Unknown,
    Degraded,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Unknown => "unknown",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// Why an event was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventDrop {
    #[error("duplicate sequence")]
    Duplicate,
    #[error("older sequence than the one applied")]
    OutOfOrder,
    #[error("operator is not in the routing table")]
    UnknownOperator,
}

impl EventDrop {
    pub fn as_str(self) -> &'static str {
        match self {
            EventDrop::Duplicate => "duplicate",
            EventDrop::OutOfOrder => "out_of_order",
            EventDrop::UnknownOperator => "unknown_operator",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    status: HealthStatus,
    sequence: u64,
    /// Local receipt time, so that staleness does not trust remote clocks.
    received_ms: i64,
}

/// What this replica believes about each operator's health.
#[derive(Debug)]
pub struct HealthBook {
    entries: RwLock<HashMap<String, Entry>>,
    stale_after_ms: i64,
}

impl HealthBook {
    /// A book in which a status older than `stale_after_ms` reads `Unknown`.
    pub fn new(stale_after_ms: i64) -> Self {
        HealthBook {
            entries: RwLock::new(HashMap::new()),
            stale_after_ms,
        }
    }

    /// Applies `event` received at `now_ms` if it is newer than what the book
    /// holds. `known` says whether the operator is in the routing table.
    pub fn apply(&self, event: &HealthEvent, known: bool, now_ms: i64) -> Result<(), EventDrop> {
        if !known {
            return Err(EventDrop::UnknownOperator);
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = entries.get(&event.operator_id) {
            if event.sequence == held.sequence {
                return Err(EventDrop::Duplicate);
            }
            let stale = event.sequence < held.sequence;
            #[cfg(feature = "planted")]
            let stale = stale && !super::planted::accept_stale();
            if stale {
                return Err(EventDrop::OutOfOrder);
            }
        }
        let entry = Entry {
            status: event.status,
            sequence: event.sequence,
            received_ms: now_ms,
        };
        entries.insert(event.operator_id.clone(), entry);
        Ok(())
    }

    /// The health to route on at `now_ms`.
    pub fn health(&self, operator_id: &str, now_ms: i64) -> Health {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        match entries.get(operator_id) {
            None => Health::Unknown,
            Some(e) if now_ms - e.received_ms > self.stale_after_ms => Health::Unknown,
            Some(e) => match e.status {
                HealthStatus::Up => Health::Up,
                HealthStatus::Degraded => Health::Degraded,
                HealthStatus::Down => Health::Down,
            },
        }
    }

    /// Forgets operators that left the routing table, so that a later event
    /// cannot bring them back and their state does not linger.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.retain(|id, _| keep(id));
    }

    /// Every operator's health at `now_ms`, for metrics.
    pub fn snapshot(&self, now_ms: i64) -> Vec<(String, Health)> {
        let ids: Vec<String> = {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            entries.keys().cloned().collect()
        };
        ids.into_iter()
            .map(|id| {
                let h = self.health(&id, now_ms);
                (id, h)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, status: HealthStatus, sequence: u64) -> HealthEvent {
        HealthEvent {
            operator_id: id.into(),
            status,
            sequence,
            observed_at_ms: 0,
            reason: String::new(),
        }
    }

    #[test]
    fn newer_events_apply_and_stale_ones_are_dropped() {
        let book = HealthBook::new(30_000);
        assert_eq!(book.health("op", 0), Health::Unknown);
        book.apply(&event("op", HealthStatus::Down, 2), true, 0)
            .unwrap();
        assert_eq!(book.health("op", 10), Health::Down);

        let dup = book.apply(&event("op", HealthStatus::Up, 2), true, 20);
        assert_eq!(dup, Err(EventDrop::Duplicate));
        let old = book.apply(&event("op", HealthStatus::Up, 1), true, 20);
        assert_eq!(old, Err(EventDrop::OutOfOrder));
        let unknown = book.apply(&event("ghost", HealthStatus::Up, 9), false, 20);
        assert_eq!(unknown, Err(EventDrop::UnknownOperator));
        assert_eq!(book.health("op", 30), Health::Down);

        assert_eq!(book.health("op", 30_001), Health::Unknown);
    }
}
