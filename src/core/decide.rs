//! The routing rules as a pure function of the table, the destination, the
//! sender, the time and health: which rules win and in what order the
//! operators should be tried.

use smallvec::SmallVec;

use super::draw::draw_key;
use super::health::Health;
use super::model::{RuleTarget, SenderKind};
use super::table::{RoutingTable, RuleSet};

/// What the decision needs to know about one message.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    pub message_id: &'a str,
    pub account_id: &'a str,
    /// E.164 digits without `+`.
    pub digits: &'a str,
    pub country_code: u16,
    /// `cc:Name`, when known.
    pub network: Option<&'a str>,
    pub sender: SenderKind,
    /// Minute of the UTC day.
    pub minute: u16,
    pub excluded: &'a [String],
    /// Message parts, at least 1.
    pub parts: u32,
}

/// One operator the winning rules name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub operator: usize,
    pub rule: usize,
    pub tier: u32,
    pub weight: u32,
    pub health: Health,
}

/// Why a candidate is not tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    Disabled,
    Excluded,
    RejectsAlphanumeric,
    Down,
    /// More parts than the operator's limit per second: never admitted,
    /// however long the caller waits.
    PartsOverLimit,
    /// Also named by a better tier of the same decision.
    Duplicate,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Disabled => "disabled",
            Drop::Excluded => "excluded by caller",
            Drop::RejectsAlphanumeric => "rejects alphanumeric senders",
            Drop::Down => "down",
            Drop::PartsOverLimit => "the message's parts exceed the operator's limit per second",
            Drop::Duplicate => "already a candidate in a better tier",
        }
    }
}

/// The outcome of the rules before throughput limits.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The winning rules, by tier then id.
    pub rules: SmallVec<[usize; 8]>,
    /// The first `BLOCK` among the winning rules, if any.
    pub block: Option<usize>,
    /// Candidates in the order to try them.
    pub ordered: SmallVec<[Candidate; 8]>,
    pub dropped: SmallVec<[(Candidate, Drop); 4]>,
}

/// Applies the routing rules; `health` reports each operator's health.
pub fn plan(table: &RoutingTable, q: &Query<'_>, health: impl Fn(&str) -> Health) -> Plan {
    let mut plan = Plan {
        rules: winning_rules(table, q),
        ..Plan::default()
    };
    plan.rules.sort_by(|a, b| {
        let (ra, rb) = (&table.rule(*a).rule, &table.rule(*b).rule);
        ra.priority
            .cmp(&rb.priority)
            .then_with(|| ra.id.cmp(&rb.id))
    });
    plan.block = plan
        .rules
        .iter()
        .copied()
        .find(|i| table.rule(*i).operator.is_none());
    if plan.block.is_some() {
        return plan;
    }

    for &rule in &plan.rules {
        let compiled = table.rule(rule);
        let Some(operator) = compiled.operator else {
            continue;
        };
        let op = table.operator(operator);
        let candidate = Candidate {
            operator,
            rule,
            tier: compiled.rule.priority,
            weight: compiled.rule.weight,
            health: health(&op.id),
        };
        let reason = drop_reason(table, q, &plan, &candidate);
        #[cfg(feature = "planted")]
        let reason = super::planted::forget_drop(reason);
        match reason {
            Some(reason) => plan.dropped.push((candidate, reason)),
            None => plan.ordered.push(candidate),
        }
    }

    order_candidates(table, q.message_id, &mut plan.ordered);
    plan
}

/// The rules of the account if any of them matches, else the `*` rules;
/// of those, only the most specific kind that matches.
fn winning_rules(table: &RoutingTable, q: &Query<'_>) -> SmallVec<[usize; 8]> {
    if !q.account_id.is_empty() {
        if let Some(set) = table.account_rules(q.account_id) {
            let found = most_specific(table, set, q);
            if !found.is_empty() {
                return found;
            }
        }
    }
    most_specific(table, table.star_rules(), q)
}

fn most_specific(table: &RoutingTable, set: &RuleSet, q: &Query<'_>) -> SmallVec<[usize; 8]> {
    let fits = |i: &usize| {
        let rule = &table.rule(*i).rule;
        rule.sender.admits(q.sender) && rule.window.is_none_or(|w| w.contains(q.minute))
    };
    let keep = |rules: &[usize]| -> SmallVec<[usize; 8]> {
        rules.iter().copied().filter(|i| fits(i)).collect()
    };

    for (rules, _) in set.prefix.prefixes_of(q.digits) {
        let found = keep(rules);
        if !found.is_empty() {
            return found;
        }
    }
    let by_kind = [
        q.network.and_then(|n| set.network.get(n)),
        set.country.get(&q.country_code),
        Some(&set.default),
    ];
    for rules in by_kind.into_iter().flatten() {
        let found = keep(rules);
        if !found.is_empty() {
            return found;
        }
    }
    SmallVec::new()
}

fn drop_reason(table: &RoutingTable, q: &Query<'_>, plan: &Plan, c: &Candidate) -> Option<Drop> {
    let op = table.operator(c.operator);
    let named_before = |other: &Candidate| other.operator == c.operator;
    if plan.ordered.iter().any(named_before) || plan.dropped.iter().any(|(o, _)| named_before(o)) {
        Some(Drop::Duplicate)
    } else if !op.enabled {
        Some(Drop::Disabled)
    } else if q.excluded.contains(&op.id) {
        Some(Drop::Excluded)
    } else if q.sender == SenderKind::Alphanumeric && !op.alphanumeric_sender {
        Some(Drop::RejectsAlphanumeric)
    } else if q.parts > op.tps_limit {
        Some(Drop::PartsOverLimit)
    } else if c.health == Health::Down {
        Some(Drop::Down)
    } else {
        None
    }
}

/// Tier first; within a tier healthy, then unknown, then degraded; within
/// those the weighted draw for this message.
fn order_candidates(table: &RoutingTable, message_id: &str, ordered: &mut [Candidate]) {
    let weights: SmallVec<[u32; 8]> = ordered.iter().map(|c| c.weight).collect();
    #[cfg(feature = "planted")]
    let weights = super::planted::shift_weights(weights);

    let mut keyed: SmallVec<[(Candidate, f64); 8]> = ordered
        .iter()
        .zip(weights)
        .map(|(c, weight)| {
            let key = draw_key(message_id, &table.operator(c.operator).id, weight);
            (*c, key)
        })
        .collect();
    keyed.sort_by(|(a, ka), (b, kb)| {
        a.tier
            .cmp(&b.tier)
            .then(a.health.cmp(&b.health))
            .then(ka.total_cmp(kb))
            .then(a.operator.cmp(&b.operator))
    });
    for (slot, (c, _)) in ordered.iter_mut().zip(keyed) {
        *slot = c;
    }
}

/// Whether every candidate that was not dropped for another reason is down.
pub fn all_down(plan: &Plan) -> bool {
    plan.ordered.is_empty() && plan.dropped.iter().any(|(_, d)| *d == Drop::Down)
}

/// The id of `BLOCK` rule, for errors.
pub fn block_rule_id<'t>(table: &'t RoutingTable, plan: &Plan) -> Option<&'t str> {
    let rule = &table.rule(plan.block?).rule;
    debug_assert_eq!(rule.target, RuleTarget::Block);
    Some(&rule.id)
}
