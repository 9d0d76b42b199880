//! Table tests for each routing rule, on a small table and an injected clock.

use std::sync::Arc;

use super::*;
use crate::core::clock::ManualClock;
use crate::core::health::{HealthEvent, HealthStatus};
use crate::core::model::*;

const OPERATORS: &str = "\
op-global-a,true,true
op-global-b,true,true
op-eu-value,true,true
op-africa,true,true
op-uk-ee,true,true
op-uk-vodafone,true,true
op-ng-mtn,false,true
op-in-airtel,true,true
op-night-saver,true,true
op-legacy,true,false";

const RULES: &str = "\
r-default-a,*,default,,1,op-global-a,70,9000,any,
r-default-b,*,default,,1,op-global-b,30,9500,any,
r-44-eu,*,country,44,1,op-eu-value,100,4200,any,
r-44-hub,*,country,44,2,op-global-a,1,9000,any,
r-44-ee-direct,*,network,44:EE,1,op-uk-ee,100,2800,any,
r-44-ee-eu,*,network,44:EE,2,op-eu-value,100,4200,any,
r-44-ee-hub,*,network,44:EE,3,op-global-a,100,9000,any,
r-234-af,*,country,234,1,op-africa,100,6100,any,
r-234-mtn-direct,*,network,234:MTN,1,op-ng-mtn,100,3900,any,
r-234-mtn-af,*,network,234:MTN,2,op-africa,100,6100,any,
r-91-airtel,*,country,91,1,op-in-airtel,60,1200,any,
r-91-hub,*,country,91,1,op-global-a,40,2100,any,
r-91-night,*,country,91,0,op-night-saver,100,700,any,22:00-06:00
r-4915-eu,*,prefix,4915,1,op-eu-value,100,5100,any,
r-4915-hub,*,prefix,4915,2,op-global-a,100,9000,any,
r-27-legacy,*,country,27,1,op-legacy,100,3500,any,
r-27-af,*,country,27,2,op-africa,100,6100,any,
r-882-block,*,country,882,1,BLOCK,0,0,any,
r-bank-default,acme-bank,default,,1,op-global-b,100,9500,any,
r-bank-44-ee,acme-bank,country,44,1,op-uk-ee,50,2800,any,
r-bank-44-vf,acme-bank,country,44,1,op-uk-vodafone,50,3000,any,
r-bank-44-hub,acme-bank,country,44,2,op-global-b,100,9500,any,
r-promo-91-block,promo-co,country,91,1,BLOCK,0,0,any,
r-promo-44-num,promo-co,country,44,1,op-eu-value,100,4200,numeric,
r-promo-44-alpha,promo-co,country,44,1,op-global-a,100,9000,alphanumeric,";

/// +447400123456 is Three; +447300123456 is EE; +2348031234567 is MTN.
const RANGES: &[(u16, &str, &str)] = &[
    (44, "447400", "Three"),
    (44, "447300", "EE"),
    (234, "234803", "MTN"),
    (91, "9198", "Airtel"),
    (49, "4915", "Vodafone"),
];

fn operator(line: &str) -> Operator {
    let f: Vec<&str> = line.split(',').collect();
    Operator {
        id: f[0].into(),
        name: f[0].into(),
        system_id: format!("sys-{}", f[0]),
        smpp_host: "smpp.example".into(),
        smpp_port: 2775,
        tps_limit: 100,
        alphanumeric_sender: f[1] == "true",
        enabled: f[2] == "true",
    }
}

fn rule(line: &str) -> Rule {
    let f: Vec<&str> = line.split(',').collect();
    Rule {
        id: f[0].into(),
        account: (f[1] != "*").then(|| f[1].into()),
        matcher: match f[2] {
            "default" => RuleMatch::Default,
            "country" => RuleMatch::Country(f[3].parse().unwrap()),
            "network" => RuleMatch::Network(f[3].into()),
            _ => RuleMatch::Prefix(f[3].into()),
        },
        priority: f[4].parse().unwrap(),
        target: match f[5] {
            "BLOCK" => RuleTarget::Block,
            id => RuleTarget::Operator(id.into()),
        },
        weight: f[6].parse().unwrap(),
        cost_micros: f[7].parse().unwrap(),
        sender: match f[8] {
            "any" => SenderFilter::Any,
            "numeric" => SenderFilter::Only(SenderKind::Numeric),
            _ => SenderFilter::Only(SenderKind::Alphanumeric),
        },
        window: TimeWindow::parse(f[9]),
    }
}

fn source() -> TableSource {
    TableSource {
        version: 7,
        operators: OPERATORS.lines().map(operator).collect(),
        ranges: RANGES
            .iter()
            .map(|(cc, p, n)| NumberRange {
                country_code: *cc,
                prefix: (*p).into(),
                network: (*n).into(),
            })
            .collect(),
        ported: vec![PortedNumber {
            e164: "+447400999999".into(),
            network: "44:EE".into(),
        }],
        rules: RULES.lines().map(rule).collect(),
    }
}

fn router_at(hh: u16, mm: u16) -> Router {
    let router = Router::new(
        Arc::new(ManualClock::at_utc(hh, mm)),
        RouterSettings::default(),
    );
    router.install(RoutingTable::build(source()).unwrap());
    router
}

fn request(destination: &str, account: &str, sender: &str) -> RouteRequest {
    RouteRequest {
        message_id: "m-1".into(),
        account_id: account.into(),
        destination: destination.into(),
        sender: sender.into(),
        ..RouteRequest::default()
    }
}

async fn route(
    router: &Router,
    destination: &str,
    account: &str,
    sender: &str,
) -> Result<Decision, RouteError> {
    router.route(&request(destination, account, sender)).await
}

fn ids(ops: &[Operator]) -> Vec<&str> {
    ops.iter().map(|o| o.id.as_str()).collect()
}

#[tokio::test]
async fn account_rules_override_star_rules() {
    let router = router_at(12, 0);
    let d = route(&router, "+447400123456", "acme-bank", "ACMEBANK")
        .await
        .unwrap();
    assert!(["op-uk-ee", "op-uk-vodafone"].contains(&d.operator.id.as_str()));
    assert_eq!(d.tier, 1);
    assert_eq!(d.fallbacks.last().unwrap().id, "op-global-b");
    assert!(
        d.rule_ids.iter().all(|r| r.starts_with("r-bank-44")),
        "{:?}",
        d.rule_ids
    );

    // An account whose rules do not match falls back to the `*` rules.
    let d = route(&router, "+2348031234567", "acme-bank-ng", "+15551234")
        .await
        .unwrap();
    assert_eq!(d.operator.id, "op-ng-mtn");
}

#[tokio::test]
async fn most_specific_kind_wins() {
    let router = router_at(12, 0);

    let network = route(&router, "+447300123456", "", "+15551234")
        .await
        .unwrap();
    assert_eq!(network.operator.id, "op-uk-ee");
    assert_eq!(ids(&network.fallbacks), ["op-eu-value", "op-global-a"]);
    assert_eq!(network.network.as_deref(), Some("44:EE"));

    let country = route(&router, "+447400123456", "", "+15551234")
        .await
        .unwrap();
    assert_eq!(country.operator.id, "op-eu-value");
    assert_eq!(country.rule_ids, ["r-44-eu", "r-44-hub"]);
    assert_eq!(country.network.as_deref(), Some("44:Three"));

    let prefix = route(&router, "+4915123456789", "", "+15551234")
        .await
        .unwrap();
    assert_eq!(prefix.operator.id, "op-eu-value");
    assert_eq!(prefix.rule_ids, ["r-4915-eu", "r-4915-hub"]);

    let default = route(&router, "+12025550173", "", "+15551234")
        .await
        .unwrap();
    assert!(["op-global-a", "op-global-b"].contains(&default.operator.id.as_str()));
    assert_eq!(default.network, None);
}

#[tokio::test]
async fn ported_numbers_route_on_their_new_network() {
    let router = router_at(12, 0);
    let d = route(&router, "+447400999999", "", "+15551234")
        .await
        .unwrap();
    assert_eq!(d.network.as_deref(), Some("44:EE"));
    assert_eq!(d.network_source, NetworkSource::Ported);
    assert_eq!(d.operator.id, "op-uk-ee");
}

#[tokio::test]
async fn block_rules_refuse() {
    let router = router_at(12, 0);
    let blocked = route(&router, "+882328810228", "", "+15551234").await;
    assert!(
        matches!(&blocked, Err(RouteError::Blocked { rule_id, .. }) if rule_id == "r-882-block"),
        "{blocked:?}"
    );
    let promo = route(&router, "+919812345678", "promo-co", "PROMO").await;
    assert_eq!(promo.unwrap_err().reason(), "DESTINATION_BLOCKED");
}

#[tokio::test]
async fn disabled_operators_are_dropped() {
    let router = router_at(12, 0);
    let mut req = request("+27821234567", "", "+15551234");
    req.explain = true;
    let d = router.route(&req).await.unwrap();
    assert_eq!(d.operator.id, "op-africa");
    assert_eq!(d.tier, 2);
    let legacy = d
        .explain
        .iter()
        .find(|t| t.operator_id == "op-legacy")
        .unwrap();
    assert_eq!(
        (legacy.outcome, legacy.reason.as_str()),
        (Outcome::Dropped, "disabled")
    );
}

#[tokio::test]
async fn alphanumeric_senders_skip_operators_that_reject_them() {
    let router = router_at(12, 0);
    let numeric = route(&router, "+2348031234567", "", "+15551234")
        .await
        .unwrap();
    assert_eq!(numeric.operator.id, "op-ng-mtn");
    let alpha = route(&router, "+2348031234567", "", "ACMEBANK")
        .await
        .unwrap();
    assert_eq!(alpha.operator.id, "op-africa");
    assert!(alpha.fallbacks.is_empty());
}

#[tokio::test]
async fn sender_type_rules_apply_to_their_kind_only() {
    let router = router_at(12, 0);
    let numeric = route(&router, "+447400123456", "promo-co", "+15551234")
        .await
        .unwrap();
    assert_eq!(numeric.operator.id, "op-eu-value");
    let alpha = route(&router, "+447400123456", "promo-co", "PROMO")
        .await
        .unwrap();
    assert_eq!(alpha.operator.id, "op-global-a");
}

#[tokio::test]
async fn time_windows_wrap_midnight() {
    for (hh, mm, night) in [
        (22, 0, true),
        (23, 59, true),
        (0, 0, true),
        (5, 59, true),
        (6, 0, false),
        (12, 0, false),
        (21, 59, false),
    ] {
        let d = route(&router_at(hh, mm), "+919812345678", "", "+15551234")
            .await
            .unwrap();
        assert_eq!(d.operator.id == "op-night-saver", night, "{hh:02}:{mm:02}");
        assert_eq!(d.tier == 0, night, "{hh:02}:{mm:02}");
    }
}

#[tokio::test]
async fn exclusions_walk_down_the_fallbacks() {
    let router = router_at(12, 0);
    let mut req = request("+447300123456", "", "+15551234");
    let first = router.route(&req).await.unwrap();
    let mut expected: Vec<String> = ids(&first.fallbacks)
        .iter()
        .map(|s| s.to_string())
        .collect();
    req.exclude_operator_ids.push(first.operator.id.clone());

    while !expected.is_empty() {
        let next = router.route(&req).await.unwrap();
        assert_eq!(next.operator.id, expected.remove(0));
        assert_eq!(ids(&next.fallbacks), expected);
        req.exclude_operator_ids.push(next.operator.id.clone());
    }
    let none = router.route(&req).await.unwrap_err();
    assert_eq!(none.reason(), "NO_OPERATOR_AVAILABLE");
    // The refusal says why each operator was left out.
    let said = none.to_string();
    for id in &req.exclude_operator_ids {
        assert!(
            said.contains(&format!("{id} (excluded by caller)")),
            "{said}"
        );
    }
}

#[tokio::test]
async fn retry_within_a_tier_takes_the_next_not_a_reshuffle() {
    let router = router_at(12, 0);
    for m in 0..200 {
        let mut req = request("+447400123456", "acme-bank", "ACMEBANK");
        req.message_id = format!("m-{m}");
        let first = router.route(&req).await.unwrap();
        req.exclude_operator_ids.push(first.operator.id.clone());
        let retry = router.route(&req).await.unwrap();
        assert_eq!(retry.operator.id, first.fallbacks[0].id);
    }
}

#[tokio::test]
async fn bad_input_gets_its_reason() {
    let router = router_at(12, 0);
    let cases = [
        ("+4474", "ACME", "DESTINATION_INVALID"),
        ("not a number", "ACME", "DESTINATION_INVALID"),
        ("+447400123456", "", "SENDER_INVALID"),
        ("+447400123456", "ACMEBANKLTD12", "SENDER_INVALID"),
    ];
    for (dest, sender, reason) in cases {
        let err = route(&router, dest, "", sender).await.unwrap_err();
        assert_eq!(err.reason(), reason, "{dest} {sender}");
    }
}

#[tokio::test]
async fn no_rule_means_no_route() {
    let mut src = source();
    src.rules.retain(|r| r.matcher != RuleMatch::Default);
    let router = Router::new(
        Arc::new(ManualClock::at_utc(12, 0)),
        RouterSettings::default(),
    );
    router.install(RoutingTable::build(src).unwrap());
    let err = route(&router, "+12025550173", "", "+15551234")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NO_ROUTE");
}

#[tokio::test]
async fn not_ready_until_a_table_is_installed() {
    let router = Router::new(
        Arc::new(ManualClock::at_utc(12, 0)),
        RouterSettings::default(),
    );
    let err = route(&router, "+447400123456", "", "ACME")
        .await
        .unwrap_err();
    assert_eq!(err, RouteError::NotReady);
}

#[tokio::test]
async fn health_orders_and_drops_operators() {
    let router = router_at(12, 0);
    let now = router.clock().now_unix_ms();
    let set = |id: &str, status, sequence| {
        let event = HealthEvent {
            operator_id: id.into(),
            status,
            sequence,
            observed_at_ms: now,
            reason: String::new(),
        };
        router.health().apply(&event, true, now).unwrap();
    };

    set("op-uk-ee", HealthStatus::Down, 1);
    let d = route(&router, "+447300123456", "", "+15551234")
        .await
        .unwrap();
    assert_eq!(d.operator.id, "op-eu-value");
    assert!(!ids(&d.fallbacks).contains(&"op-uk-ee"));

    // Degraded goes after healthy and unknown in its tier.
    set("op-uk-vodafone", HealthStatus::Up, 1);
    set("op-uk-ee", HealthStatus::Degraded, 2);
    for m in 0..50 {
        let mut req = request("+447400123456", "acme-bank", "ACMEBANK");
        req.message_id = format!("m-{m}");
        let d = router.route(&req).await.unwrap();
        assert_eq!(d.operator.id, "op-uk-vodafone");
        assert_eq!(ids(&d.fallbacks), ["op-uk-ee", "op-global-b"]);
    }

    set("op-ng-mtn", HealthStatus::Down, 1);
    set("op-africa", HealthStatus::Down, 1);
    let err = route(&router, "+2348031234567", "", "+15551234")
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "NO_HEALTHY_OPERATOR");
    let said = err.to_string();
    assert!(said.contains("op-ng-mtn (down)"), "{said}");
    assert!(said.contains("op-africa (down)"), "{said}");
}

#[test]
fn invalid_tables_are_refused_with_every_problem() {
    let mut src = source();
    src.rules
        .push(rule("r-ghost,*,default,,1,op-ghost,10,1,any,"));
    src.rules
        .push(rule("r-zero,*,default,,1,op-global-a,0,1,any,"));
    src.rules
        .push(rule("r-44-eu,*,country,44,1,op-eu-value,100,4200,any,"));
    let err = RoutingTable::build(src).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown operator op-ghost"), "{text}");
    assert!(text.contains("r-zero: weight must be positive"), "{text}");
    assert!(text.contains("r-44-eu is listed twice"), "{text}");
}

#[tokio::test]
async fn weights_split_over_many_messages() {
    let router = router_at(12, 0);
    let mut counts = std::collections::HashMap::new();
    let total = 20_000;
    for m in 0..total {
        let mut req = request("+12025550173", "", "+15551234");
        req.message_id = format!("msg-{m}");
        let d = router.route(&req).await.unwrap();
        *counts.entry(d.operator.id).or_insert(0usize) += 1;
    }
    let share = counts["op-global-a"] as f64 / total as f64;
    assert!((share - 0.7).abs() < 0.015, "{share}");
}

/// Throughput limits held in this process, as `serve` enforces them when the
/// shared cache is down.
struct LocalLimits(crate::core::limits::LocalLimiter);

#[async_trait::async_trait]
impl crate::core::ports::Cache for LocalLimits {
    async fn acquire(
        &self,
        operator_id: &str,
        limit: u32,
        parts: u32,
    ) -> Result<Admission, crate::core::ports::PortError> {
        Ok(self.0.acquire(operator_id, f64::from(limit), parts))
    }

    async fn ported_network(
        &self,
        _e164: &str,
    ) -> Result<Option<Option<String>>, crate::core::ports::PortError> {
        Ok(None)
    }

    async fn remember_ported(
        &self,
        _e164: &str,
        _network: Option<&str>,
    ) -> Result<(), crate::core::ports::PortError> {
        Ok(())
    }
}

#[tokio::test]
async fn more_parts_than_an_operators_limit_drop_it_for_good() {
    // A message that no one-second window of an operator can hold is never
    // admitted there: the operator is dropped with that reason instead of
    // being reported as throttled, and when no operator is left the refusal
    // is NO_OPERATOR_AVAILABLE, which does not invite a retry.
    let clock = Arc::new(ManualClock::at_utc(12, 0));
    let mut table = source();
    for op in &mut table.operators {
        if op.id == "op-ng-mtn" {
            op.tps_limit = 3;
        }
    }
    let limits = LocalLimits(crate::core::limits::LocalLimiter::new(clock.clone()));
    let router = Router::new(clock, RouterSettings::default()).with_cache(Arc::new(limits));
    router.install(RoutingTable::build(table).unwrap());

    let mut req = request("+2348031234567", "", "+15551234");
    req.explain = true;
    req.parts = 3;
    let d = router.route(&req).await.unwrap();
    assert_eq!(d.operator.id, "op-ng-mtn", "3 parts fit a limit of 3");

    req.message_id = "m-2".into();
    req.parts = 4;
    let d = router.route(&req).await.unwrap();
    assert_eq!(d.operator.id, "op-africa");
    assert!(d.throttled.is_empty(), "{:?}", d.throttled);
    let mtn = d
        .explain
        .iter()
        .find(|t| t.operator_id == "op-ng-mtn")
        .unwrap();
    assert_eq!(
        (mtn.outcome, mtn.reason.as_str()),
        (
            Outcome::Dropped,
            "the message's parts exceed the operator's limit per second"
        )
    );

    req.parts = 101;
    let err = router.route(&req).await.unwrap_err();
    assert_eq!(err.reason(), "NO_OPERATOR_AVAILABLE", "{err}");
}
