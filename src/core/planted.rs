//! Deliberate mistakes in the routing paths, switched on one at a time by
//! the simulation to prove that its invariants catch each of them. Compiled
//! only with the `planted` feature, which the service never enables.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use smallvec::SmallVec;

use super::decide::Drop;
use super::model::TableSource;
use super::router::Router;
use super::table::RoutingTable;

/// One mistake, named as the simulation's `--planted` option spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mistake {
    /// Down operators are kept as candidates.
    IgnoreHealth,
    /// Each candidate is drawn with its neighbour's weight.
    DrawOffByOne,
    /// Operators the caller excluded are kept as candidates.
    DropExclusions,
    /// Throughput limits count one part per message.
    CountMessages,
    /// Health events older than the one applied are applied.
    AcceptStaleHealth,
    /// A reload installs the table with half its rules before the rest.
    HalfBuiltTable,
}

impl Mistake {
    pub const ALL: [Mistake; 6] = [
        Mistake::IgnoreHealth,
        Mistake::DrawOffByOne,
        Mistake::DropExclusions,
        Mistake::CountMessages,
        Mistake::AcceptStaleHealth,
        Mistake::HalfBuiltTable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mistake::IgnoreHealth => "ignore-health",
            Mistake::DrawOffByOne => "draw-off-by-one",
            Mistake::DropExclusions => "drop-exclusions",
            Mistake::CountMessages => "count-messages",
            Mistake::AcceptStaleHealth => "accept-stale-health",
            Mistake::HalfBuiltTable => "half-built-table",
        }
    }

    pub fn parse(text: &str) -> Option<Mistake> {
        Mistake::ALL.into_iter().find(|m| m.as_str() == text)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The mistakes switched on, one bit each; process-wide, set before a run.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Switches `mistake` on (or every mistake off with `None`).
pub fn set(mistake: Option<Mistake>) {
    ACTIVE.store(mistake.map_or(0, Mistake::bit), Ordering::SeqCst);
}

pub fn active(mistake: Mistake) -> bool {
    ACTIVE.load(Ordering::SeqCst) & mistake.bit() != 0
}

/// Forgets the drop reasons the health and exclusion mistakes ignore.
pub fn forget_drop(reason: Option<Drop>) -> Option<Drop> {
    match reason {
        Some(Drop::Down) if active(Mistake::IgnoreHealth) => None,
        Some(Drop::Excluded) if active(Mistake::DropExclusions) => None,
        other => other,
    }
}

/// Gives each candidate the weight of the one after it.
pub fn shift_weights(mut weights: SmallVec<[u32; 8]>) -> SmallVec<[u32; 8]> {
    if active(Mistake::DrawOffByOne) && !weights.is_empty() {
        weights.rotate_left(1);
    }
    weights
}

/// One part per message, whatever the message holds.
pub fn count_parts(parts: u32) -> u32 {
    if active(Mistake::CountMessages) {
        1
    } else {
        parts
    }
}

/// Whether an event older than the applied one is applied anyway.
pub fn accept_stale() -> bool {
    active(Mistake::AcceptStaleHealth)
}

/// Installs `source` with only the first half of its rules, then takes a
/// while before the whole table follows.
pub async fn install_half_built(router: &Router, source: &TableSource) {
    if !active(Mistake::HalfBuiltTable) {
        return;
    }
    let mut half = source.clone();
    half.rules.truncate(source.rules.len() / 2);
    if let Ok(table) = RoutingTable::build(half) {
        router.install(table);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
