//! The router: one routing decision from a request, on the current table
//! snapshot, health book, clock and shared limits.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::decide::{self, Candidate, Plan, Query};
use super::error::RouteError;
use super::health::HealthBook;
use super::model::Operator;
use super::numbering::{self, Destination};
use super::ports::{Admission, Cache, Clock, TableStore};
use super::sender;
use super::table::RoutingTable;

/// A request as the edges hand it to the core.
#[derive(Clone, Debug, Default)]
pub struct RouteRequest {
    pub message_id: String,
    pub account_id: String,
    pub destination: String,
    pub destination_region: String,
    pub sender: String,
    /// Message parts; 0 means 1.
    pub parts: u32,
    pub exclude_operator_ids: Vec<String>,
    pub explain: bool,
}

/// Where the destination's network came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkSource {
    Ported,
    Prefix,
    /// Portability data could not be reached; the prefix network was used.
    PrefixFallback,
}

impl NetworkSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkSource::Ported => "ported",
            NetworkSource::Prefix => "prefix",
            NetworkSource::PrefixFallback => "prefix-fallback",
        }
    }
}

/// What happened to one candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Chosen,
    Fallback,
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Chosen => "chosen",
            Outcome::Fallback => "fallback",
            Outcome::Dropped => "dropped",
        }
    }
}

/// One line of the explain trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateTrace {
    pub operator_id: String,
    pub rule_id: String,
    pub tier: u32,
    pub weight: u32,
    pub outcome: Outcome,
    pub reason: String,
}

/// A routing decision.
#[derive(Clone, Debug)]
pub struct Decision {
    pub operator: Operator,
    /// In the order to try them.
    pub fallbacks: Vec<Operator>,
    /// The winning rules; the chosen operator's rule first.
    pub rule_ids: Vec<String>,
    pub destination_e164: String,
    pub network: Option<String>,
    pub network_source: NetworkSource,
    pub tier: u32,
    pub cost_micros: u64,
    pub table_version: u64,
    /// Empty unless the request asked for it.
    pub explain: Vec<CandidateTrace>,
    /// Candidates skipped at their throughput limit, for metrics.
    pub throttled: Vec<String>,
}

/// Tunables of the router.
#[derive(Clone, Debug)]
pub struct RouterSettings {
    /// A health status older than this reads as unknown.
    pub health_stale_after_ms: i64,
    /// Longest wait for the store's portability answer on the request path;
    /// past it the prefix network is used.
    pub store_lookup_timeout: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            health_stale_after_ms: 30_000,
            store_lookup_timeout: Duration::from_millis(100),
        }
    }
}

/// Decides routes. Shared by every request as `Arc<Router>`.
pub struct Router {
    table: ArcSwapOption<RoutingTable>,
    health: HealthBook,
    clock: Arc<dyn Clock>,
    cache: Option<Arc<dyn Cache>>,
    store: Option<Arc<dyn TableStore>>,
    store_lookup_timeout: Duration,
}

impl Router {
    pub fn new(clock: Arc<dyn Clock>, settings: RouterSettings) -> Router {
        Router {
            table: ArcSwapOption::empty(),
            health: HealthBook::new(settings.health_stale_after_ms),
            clock,
            cache: None,
            store: None,
            store_lookup_timeout: settings.store_lookup_timeout,
        }
    }

    /// Shares throughput limits and the portability cache through `cache`.
    pub fn with_cache(mut self, cache: Arc<dyn Cache>) -> Router {
        self.cache = Some(cache);
        self
    }

    /// Looks up ported numbers in `store` when the snapshot does not hold them.
    pub fn with_store(mut self, store: Arc<dyn TableStore>) -> Router {
        self.store = Some(store);
        self
    }

    /// Swaps in a new snapshot; requests in flight finish on the old one.
    /// Health of operators the new snapshot no longer has is forgotten.
    pub fn install(&self, table: RoutingTable) {
        let table = Arc::new(table);

        // Store first, prune second: a health event applied against the old
        // snapshot either lands before the prune or sees the new snapshot
        // afterwards (see `health_feed`), so a removed operator keeps no state.
        self.table.store(Some(table.clone()));
        self.health.retain(|id| table.operator_by_id(id).is_some());
    }

    /// The current snapshot; `None` until one is installed.
    pub fn table(&self) -> Option<Arc<RoutingTable>> {
        self.table.load_full()
    }

    pub fn health(&self) -> &HealthBook {
        &self.health
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Decides where `req` goes.
    pub async fn route(&self, req: &RouteRequest) -> Result<Decision, RouteError> {
        let table = self.table.load_full().ok_or(RouteError::NotReady)?;
        let destination = numbering::normalise(&req.destination, &req.destination_region)?;
        let sender = sender::classify(&req.sender)?;

        let (network, network_source) = self.network_of(&table, &destination).await;
        let now_ms = self.clock.now_unix_ms();
        let parts = req.parts.max(1);
        #[cfg(feature = "planted")]
        let parts = super::planted::count_parts(parts);
        let query = Query {
            message_id: &req.message_id,
            account_id: &req.account_id,
            digits: destination.digits(),
            country_code: destination.country_code,
            network: network.as_deref(),
            sender,
            minute: self.clock.minute_of_day(),
            excluded: &req.exclude_operator_ids,
            parts,
        };
        let plan = decide::plan(&table, &query, |id| self.health.health(id, now_ms));

        check_plan(&table, &plan, &destination)?;
        let (chosen, throttled) = self.admit(&table, &plan, parts).await;
        let Some(chosen) = chosen else {
            return Err(RouteError::AllThrottled {
                destination: destination.e164,
                operator_ids: operator_ids(&table, &plan, &throttled),
            });
        };

        let trace = req
            .explain
            .then(|| explain(&table, &plan, chosen, &throttled));
        Ok(build_decision(
            &table,
            &plan,
            chosen,
            &throttled,
            destination,
            network,
            network_source,
            trace.unwrap_or_default(),
        ))
    }

    /// Ported network first, then the longest range prefix.
    async fn network_of(
        &self,
        table: &RoutingTable,
        destination: &Destination,
    ) -> (Option<String>, NetworkSource) {
        let digits = destination.digits();
        let by_prefix = || table.prefix_network(digits).map(str::to_owned);

        if table.ported_loaded() {
            return match table.ported_network(digits) {
                Some(net) => (Some(net.to_owned()), NetworkSource::Ported),
                None => (by_prefix(), NetworkSource::Prefix),
            };
        }
        match self.ported_outside(&destination.e164).await {
            Some(Some(net)) => (Some(net), NetworkSource::Ported),
            Some(None) => (by_prefix(), NetworkSource::Prefix),
            None if self.cache.is_none() && self.store.is_none() => {
                (by_prefix(), NetworkSource::Prefix)
            }
            None => (by_prefix(), NetworkSource::PrefixFallback),
        }
    }

    /// Portability through the cache, then the store. `None` when neither
    /// could answer.
    async fn ported_outside(&self, e164: &str) -> Option<Option<String>> {
        if let Some(cache) = &self.cache {
            if let Ok(Some(answer)) = cache.ported_network(e164).await {
                return Some(answer);
            }
        }
        let lookup = self.store.as_ref()?.ported_network(e164);
        let answer = tokio::time::timeout(self.store_lookup_timeout, lookup)
            .await
            .ok()?
            .ok()?;
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.remember_ported(e164, answer.as_deref()).await {
                tracing::debug!(error = %e, "portability answer not cached");
            }
        }
        Some(answer)
    }

    /// Takes throughput for the first candidate whose limit admits `parts`.
    /// Returns the chosen position in `plan.ordered` and the throttled ones.
    async fn admit(
        &self,
        table: &RoutingTable,
        plan: &Plan,
        parts: u32,
    ) -> (Option<usize>, Vec<usize>) {
        let Some(cache) = &self.cache else {
            return (Some(0), Vec::new());
        };
        let mut throttled = Vec::new();
        for (pos, c) in plan.ordered.iter().enumerate() {
            let op = table.operator(c.operator);
            match cache.acquire(&op.id, op.tps_limit, parts).await {
                Ok(Admission::Admitted) => return (Some(pos), throttled),
                Ok(Admission::Throttled) => throttled.push(pos),
                Err(e) => {
                    tracing::debug!(operator.id = %op.id, error = %e, "limiter unavailable");
                    return (Some(pos), throttled);
                }
            }
        }
        (None, throttled)
    }
}

/// Turns a plan with nothing to try into the error the rules call for.
fn check_plan(table: &RoutingTable, plan: &Plan, dest: &Destination) -> Result<(), RouteError> {
    let destination = || dest.e164.clone();
    if let Some(rule_id) = decide::block_rule_id(table, plan) {
        return Err(RouteError::Blocked {
            destination: destination(),
            rule_id: rule_id.into(),
        });
    }
    if plan.rules.is_empty() {
        return Err(RouteError::NoRoute {
            destination: destination(),
        });
    }
    if plan.ordered.is_empty() {
        let rule_ids = plan
            .rules
            .iter()
            .map(|i| table.rule(*i).rule.id.clone())
            .collect();
        let dropped = plan
            .dropped
            .iter()
            .filter(|(_, why)| *why != decide::Drop::Duplicate)
            .map(|(c, why)| format!("{} ({})", table.operator(c.operator).id, why.as_str()))
            .collect();
        return Err(if decide::all_down(plan) {
            RouteError::NoHealthyOperator {
                destination: destination(),
                rule_ids,
                dropped,
            }
        } else {
            RouteError::NoOperatorAvailable {
                destination: destination(),
                rule_ids,
                dropped,
            }
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_decision(
    table: &RoutingTable,
    plan: &Plan,
    chosen: usize,
    throttled: &[usize],
    destination: Destination,
    network: Option<String>,
    network_source: NetworkSource,
    explain: Vec<CandidateTrace>,
) -> Decision {
    let first: &Candidate = &plan.ordered[chosen];
    let first_rule = &table.rule(first.rule).rule;

    let fallbacks = plan
        .ordered
        .iter()
        .enumerate()
        .filter(|(pos, _)| *pos != chosen && !throttled.contains(pos))
        .map(|(_, c)| table.operator(c.operator).clone())
        .collect();
    let mut rule_ids = vec![first_rule.id.clone()];
    rule_ids.extend(
        plan.rules
            .iter()
            .map(|i| &table.rule(*i).rule.id)
            .filter(|id| **id != first_rule.id)
            .cloned(),
    );

    Decision {
        operator: table.operator(first.operator).clone(),
        fallbacks,
        rule_ids,
        destination_e164: destination.e164,
        network,
        network_source,
        tier: first.tier,
        cost_micros: first_rule.cost_micros,
        table_version: table.version(),
        explain,
        throttled: operator_ids(table, plan, throttled),
    }
}

/// The ids of the operators at `positions` in `plan.ordered`.
fn operator_ids(table: &RoutingTable, plan: &Plan, positions: &[usize]) -> Vec<String> {
    positions
        .iter()
        .map(|p| table.operator(plan.ordered[*p].operator).id.clone())
        .collect()
}

fn explain(
    table: &RoutingTable,
    plan: &Plan,
    chosen: usize,
    throttled: &[usize],
) -> Vec<CandidateTrace> {
    let line = |c: &Candidate, outcome: Outcome, reason: String| CandidateTrace {
        operator_id: table.operator(c.operator).id.clone(),
        rule_id: table.rule(c.rule).rule.id.clone(),
        tier: c.tier,
        weight: c.weight,
        outcome,
        reason,
    };

    let mut lines = Vec::with_capacity(plan.ordered.len() + plan.dropped.len());
    let mut fallback = 0;
    for (pos, c) in plan.ordered.iter().enumerate() {
        let health = c.health.as_str();
        lines.push(if pos == chosen {
            line(
                c,
                Outcome::Chosen,
                format!("tier {} winner by weighted draw ({health})", c.tier),
            )
        } else if throttled.contains(&pos) {
            line(c, Outcome::Dropped, "at its throughput limit".into())
        } else {
            fallback += 1;
            line(
                c,
                Outcome::Fallback,
                format!("fallback #{fallback} ({health})"),
            )
        });
    }
    for (c, why) in &plan.dropped {
        lines.push(line(c, Outcome::Dropped, why.as_str().into()));
    }
    lines
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
