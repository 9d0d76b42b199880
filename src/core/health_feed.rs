//! Feeds operator health from a bus into the router's health book, and tells
//! an observer (the service's metrics) what was applied and what was dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::health::{HealthEvent, HealthStatus};
use super::ports::{BusMessage, HealthBus};
use super::router::Router;

/// What the feed reports as it goes; the service's metrics implement it.
pub trait HealthObserver: Send + Sync + 'static {
    /// An event was applied to the book.
    fn accepted(&self, operator_id: &str, status: HealthStatus);

    /// A message changed nothing. `reason` is one of `duplicate`,
    /// `out_of_order`, `unknown_operator`, `malformed`, `oversized`,
    /// `subject_mismatch`.
    fn dropped(&self, reason: &'static str);

    /// The bus connected (`true`) or lost its connection (`false`).
    fn bus_connected(&self, connected: bool);
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl HealthObserver for NoopObserver {
    fn accepted(&self, _operator_id: &str, _status: HealthStatus) {}

    fn dropped(&self, _reason: &'static str) {}

    fn bus_connected(&self, _connected: bool) {}
}

/// An observer that counts what it is told, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct CountingObserver {
    accepted: AtomicU64,
    dropped: Mutex<Vec<&'static str>>,
    connected: AtomicBool,
    connects: AtomicU64,
    disconnects: AtomicU64,
}

impl CountingObserver {
    /// Events applied so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Messages dropped so far for `reason`.
    pub fn dropped_total(&self, reason: &str) -> usize {
        let dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        dropped.iter().filter(|r| **r == reason).count()
    }

    /// Messages dropped so far, whatever the reason.
    pub fn dropped_all(&self) -> usize {
        self.dropped.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the bus was connected when it last said.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// How many times the bus reported (re)connecting.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }

    /// How many times the bus reported losing its connection.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::SeqCst)
    }
}

impl HealthObserver for CountingObserver {
    fn accepted(&self, _operator_id: &str, _status: HealthStatus) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
    }

    fn dropped(&self, reason: &'static str) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        dropped.push(reason);
    }

    fn bus_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
        let counter = if connected {
            &self.connects
        } else {
            &self.disconnects
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// Applies everything `bus` delivers to `router`'s health book until the bus
/// closes for good.
pub async fn run(router: Arc<Router>, mut bus: impl HealthBus, observer: Arc<dyn HealthObserver>) {
    while let Some(message) = bus.next().await {
        match message {
            BusMessage::Event(event) => apply(&router, &event, observer.as_ref()),
            BusMessage::Rejected(why) => {
                tracing::debug!(reason = why.as_str(), "health message rejected");
                observer.dropped(why.as_str());
            }
            BusMessage::Connected => {
                tracing::info!("health bus connected");
                observer.bus_connected(true);
            }
            BusMessage::Disconnected => {
                tracing::warn!("health bus disconnected; health ages to unknown until it is back");
                observer.bus_connected(false);
            }
        }
    }
    tracing::info!("health bus closed");
}

/// Applies one event if its operator is in the current table and it is newer
/// than what the book holds.
///
/// Before the first table is installed every operator counts as known: the
/// bus replays the current state of each operator when it connects, which is
/// usually before PostgreSQL has answered, and dropping that replay would
/// leave a down operator routable until its next event. Installing the first
/// table prunes the operators it does not hold. The book is bounded meanwhile
/// by the subjects only operator-management-service may publish on.
fn apply(router: &Router, event: &HealthEvent, observer: &dyn HealthObserver) {
    let id = event.operator_id.as_str();
    let table = router.table();
    let known = table
        .as_ref()
        .is_none_or(|t| t.operator_by_id(id).is_some());
    let book = router.health();
    let now_ms = router.clock().now_unix_ms();
    let before = book.health(id, now_ms);

    if let Err(drop) = book.apply(event, known, now_ms) {
        tracing::debug!(
            operator.id = %id,
            sequence = event.sequence,
            reason = drop.as_str(),
            "health event dropped"
        );
        observer.dropped(drop.as_str());
        return;
    }

    forget_if_removed_meanwhile(router, table.as_ref(), id);
    observer.accepted(id, event.status);
    let after = book.health(id, now_ms);
    if after != before {
        tracing::info!(
            operator.id = %id,
            from = before.as_str(),
            to = after.as_str(),
            sequence = event.sequence,
            reason = %event.reason,
            "operator health changed"
        );
    }
}

/// A table installed between reading the table and applying the event may
/// have removed the operator; drop its entry again so that a removed operator
/// never keeps health state. `Router::install` stores the new table before it
/// prunes the book, so one of the two always sees the other.
fn forget_if_removed_meanwhile(
    router: &Router,
    seen: Option<&Arc<super::table::RoutingTable>>,
    id: &str,
) {
    let Some(current) = router.table() else {
        return;
    };
    let unchanged = seen.is_some_and(|seen| Arc::ptr_eq(seen, &current));
    if !unchanged && current.operator_by_id(id).is_none() {
        router
            .health()
            .retain(|kept| current.operator_by_id(kept).is_some());
    }
}

#[cfg(test)]
#[path = "health_feed_tests.rs"]
mod tests;
