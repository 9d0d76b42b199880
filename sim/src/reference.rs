//! A plain reference of the routing rules, written apart from the router's
//! indexed fast path: a linear walk over the rules of one table version.
//! It says which operators may carry a message and in which tier, or which
//! refusal the rules call for.

use std::collections::BTreeMap;

use routing_engine::core::model::{
    Rule, RuleMatch, RuleTarget, SenderFilter, SenderKind, TableSource,
};

/// What the reference needs to know about one message.
pub struct Query<'a> {
    pub account: &'a str,
    /// E.164 digits without `+`.
    pub digits: &'a str,
    pub country_code: u16,
    pub network: &'a str,
    pub sender: SenderKind,
    pub minute: u16,
    pub excluded: &'a [String],
}

/// One operator the rules allow: its best tier and its weight there.
#[derive(Clone, Debug, PartialEq)]
pub struct Allowed {
    pub tier: u32,
    pub weight: u32,
    pub tps_limit: u32,
}

/// The reference's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Expected {
    /// Operator id to where it may go; never empty.
    Route(BTreeMap<String, Allowed>),
    Refused(&'static str),
}

impl Expected {
    /// The lowest tier with an operator, if any.
    pub fn best_tier(&self) -> Option<u32> {
        match self {
            Expected::Route(ops) => ops.values().map(|a| a.tier).min(),
            Expected::Refused(_) => None,
        }
    }
}

/// Applies the rules of `table` to `q`, dropping operators `down` names.
pub fn expect(table: &TableSource, q: &Query<'_>, down: &dyn Fn(&str) -> bool) -> Expected {
    let kept = winning_rules(table, q);
    if kept.is_empty() {
        return Expected::Refused("NO_ROUTE");
    }
    if kept.iter().any(|r| r.target == RuleTarget::Block) {
        return Expected::Refused("DESTINATION_BLOCKED");
    }

    let mut allowed: BTreeMap<String, Allowed> = BTreeMap::new();
    let mut any_down = false;
    let mut by_tier: Vec<&&Rule> = kept.iter().collect();
    by_tier.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.id.cmp(&b.id)));
    let mut seen = Vec::new();
    for rule in by_tier {
        let RuleTarget::Operator(id) = &rule.target else {
            continue;
        };
        if seen.contains(id) {
            continue;
        }
        seen.push(id.clone());
        let Some(op) = table.operators.iter().find(|o| &o.id == id) else {
            continue;
        };
        let rejects_sender = q.sender == SenderKind::Alphanumeric && !op.alphanumeric_sender;
        if !op.enabled || q.excluded.contains(id) || rejects_sender {
            continue;
        }
        if down(id) {
            any_down = true;
            continue;
        }
        let entry = Allowed {
            tier: rule.priority,
            weight: rule.weight,
            tps_limit: op.tps_limit,
        };
        allowed.insert(id.clone(), entry);
    }

    match (allowed.is_empty(), any_down) {
        (false, _) => Expected::Route(allowed),
        (true, true) => Expected::Refused("NO_HEALTHY_OPERATOR"),
        (true, false) => Expected::Refused("NO_OPERATOR_AVAILABLE"),
    }
}

/// The account's rules if any fits, else the `*` rules; of those the most
/// specific kind: longest prefix, then network, country, default.
fn winning_rules<'t>(table: &'t TableSource, q: &Query<'_>) -> Vec<&'t Rule> {
    let fits = |r: &&Rule| {
        let sender_ok = match r.sender {
            SenderFilter::Any => true,
            SenderFilter::Only(kind) => kind == q.sender,
        };
        sender_ok
            && r.window
                .is_none_or(|w| in_window(w.start_minute, w.end_minute, q.minute))
    };
    let of_account = |account: Option<&str>| -> Vec<&'t Rule> {
        let rules: Vec<&Rule> = table
            .rules
            .iter()
            .filter(|r| r.account.as_deref() == account)
            .filter(fits)
            .collect();
        most_specific(rules, q)
    };

    if !q.account.is_empty() {
        let own = of_account(Some(q.account));
        if !own.is_empty() {
            return own;
        }
    }
    of_account(None)
}

fn most_specific<'t>(rules: Vec<&'t Rule>, q: &Query<'_>) -> Vec<&'t Rule> {
    let prefix_len = |r: &Rule| match &r.matcher {
        RuleMatch::Prefix(p) if q.digits.starts_with(p.as_str()) => Some(p.len()),
        _ => None,
    };
    if let Some(longest) = rules.iter().filter_map(|r| prefix_len(r)).max() {
        return rules
            .into_iter()
            .filter(|r| prefix_len(r) == Some(longest))
            .collect();
    }
    let kinds: [&dyn Fn(&RuleMatch) -> bool; 3] = [
        &|m| matches!(m, RuleMatch::Network(n) if !q.network.is_empty() && n == q.network),
        &|m| matches!(m, RuleMatch::Country(c) if *c == q.country_code),
        &|m| matches!(m, RuleMatch::Default),
    ];
    for kind in kinds {
        let found: Vec<&Rule> = rules.iter().copied().filter(|r| kind(&r.matcher)).collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// Start included, end excluded, wrapping midnight when `end <= start`.
fn in_window(start: u16, end: u16, minute: u16) -> bool {
    if start < end {
        start <= minute && minute < end
    } else {
        minute >= start || minute < end
    }
}
