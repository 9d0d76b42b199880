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

#[cfg(test)]
mod tests {
    use routing_engine::core::model::{Operator, Rule, TimeWindow};

    use super::*;

    fn operator(id: &str, alphanumeric: bool, enabled: bool) -> Operator {
        Operator {
            id: id.into(),
            name: id.into(),
            system_id: id.into(),
            smpp_host: "smpp.example".into(),
            smpp_port: 2775,
            tps_limit: 10,
            alphanumeric_sender: alphanumeric,
            enabled,
        }
    }

    fn rule(id: &str, account: Option<&str>, matcher: RuleMatch, tier: u32, op: &str) -> Rule {
        Rule {
            id: id.into(),
            account: account.map(str::to_owned),
            matcher,
            priority: tier,
            target: if op == "BLOCK" {
                RuleTarget::Block
            } else {
                RuleTarget::Operator(op.into())
            },
            weight: if op == "BLOCK" { 0 } else { 10 },
            cost_micros: 0,
            sender: SenderFilter::Any,
            window: None,
        }
    }

    fn table() -> TableSource {
        let mut night = rule("night", None, RuleMatch::Country(44), 0, "op-night");
        night.window = TimeWindow::parse("22:00-06:00");
        TableSource {
            version: 1,
            operators: vec![
                operator("op-a", true, true),
                operator("op-b", true, true),
                operator("op-numeric", false, true),
                operator("op-off", true, false),
                operator("op-night", true, true),
            ],
            rules: vec![
                rule("default", None, RuleMatch::Default, 1, "op-a"),
                rule("uk", None, RuleMatch::Country(44), 1, "op-numeric"),
                rule("uk-2", None, RuleMatch::Country(44), 2, "op-b"),
                night,
                rule("ee", None, RuleMatch::Network("44:EE".into()), 1, "op-off"),
                rule("74", None, RuleMatch::Prefix("4474".into()), 1, "op-b"),
                rule("bank", Some("bank"), RuleMatch::Country(44), 1, "BLOCK"),
            ],
            ..TableSource::default()
        }
    }

    fn query<'a>(digits: &'a str, network: &'a str, minute: u16) -> Query<'a> {
        Query {
            account: "",
            digits,
            country_code: 44,
            network,
            sender: SenderKind::Alphanumeric,
            minute,
            excluded: &[],
        }
    }

    fn ids(expected: &Expected) -> Vec<(String, u32)> {
        match expected {
            Expected::Route(ops) => ops.iter().map(|(id, a)| (id.clone(), a.tier)).collect(),
            Expected::Refused(_) => Vec::new(),
        }
    }

    #[test]
    fn the_most_specific_kind_wins_and_filters_apply() {
        // A prefix beats the country; an alphanumeric sender drops the
        // operator that rejects it; the night rule applies only at night.
        let t = table();
        let none = |_: &str| false;
        assert_eq!(
            ids(&expect(&t, &query("447400", "44:Vodafone", 720), &none)),
            [("op-b".into(), 1)]
        );
        let day = expect(&t, &query("447700", "44:Vodafone", 720), &none);
        assert_eq!(ids(&day), [("op-b".into(), 2)]);
        let night = expect(&t, &query("447700", "44:Vodafone", 23 * 60), &none);
        assert_eq!(ids(&night), [("op-b".into(), 2), ("op-night".into(), 0)]);
    }

    #[test]
    fn refusals_follow_the_rules() {
        // Only a disabled operator: no operator available; a down one: no
        // healthy operator; the account's BLOCK refuses; no rule: no route.
        let t = table();
        let none = |_: &str| false;
        let ee = expect(&t, &query("447900", "44:EE", 720), &none);
        assert_eq!(ee, Expected::Refused("NO_OPERATOR_AVAILABLE"));
        let down = |id: &str| id == "op-b";
        let prefix = expect(&t, &query("447400", "44:Vodafone", 720), &down);
        assert_eq!(prefix, Expected::Refused("NO_HEALTHY_OPERATOR"));
        let mut bank = query("447700", "44:Vodafone", 720);
        bank.account = "bank";
        assert_eq!(
            expect(&t, &bank, &none),
            Expected::Refused("DESTINATION_BLOCKED")
        );
        let mut bare = t.clone();
        bare.rules.retain(|r| r.id != "default");
        let elsewhere = Query {
            country_code: 49,
            ..query("4930", "", 720)
        };
        assert_eq!(
            expect(&bare, &elsewhere, &none),
            Expected::Refused("NO_ROUTE")
        );
    }
}
