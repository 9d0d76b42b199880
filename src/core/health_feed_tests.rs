//! Tests of the health feed on a real router and book, driven by a bus that
//! replays a fixed list of messages.

use std::collections::VecDeque;

use async_trait::async_trait;

use super::*;
use crate::core::clock::ManualClock;
use crate::core::health::Health;
use crate::core::model::*;
use crate::core::ports::Rejection;
use crate::core::router::{RouteRequest, RouterSettings};
use crate::core::table::RoutingTable;

/// A bus that hands out a fixed list of messages, then closes.
struct ScriptBus(VecDeque<BusMessage>);

#[async_trait]
impl HealthBus for ScriptBus {
    async fn next(&mut self) -> Option<BusMessage> {
        self.0.pop_front()
    }
}

fn operator(id: &str, enabled: bool) -> Operator {
    Operator {
        id: id.into(),
        name: id.into(),
        system_id: format!("sys-{id}"),
        smpp_host: "smpp.example".into(),
        smpp_port: 2775,
        tps_limit: 100,
        alphanumeric_sender: true,
        enabled,
    }
}

fn default_rule(id: &str, operator: &str, priority: u32) -> Rule {
    Rule {
        id: id.into(),
        account: None,
        matcher: RuleMatch::Default,
        priority,
        target: RuleTarget::Operator(operator.into()),
        weight: 100,
        cost_micros: 1_000,
        sender: SenderFilter::Any,
        window: None,
    }
}

/// `op-off` (disabled) is the first choice, then `op-a`, then `op-b`.
fn table(with_b: bool) -> RoutingTable {
    let mut source = TableSource {
        version: 1,
        operators: vec![operator("op-off", false), operator("op-a", true)],
        rules: vec![
            default_rule("r-off", "op-off", 0),
            default_rule("r-a", "op-a", 1),
        ],
        ..TableSource::default()
    };
    if with_b {
        source.operators.push(operator("op-b", true));
        source.rules.push(default_rule("r-b", "op-b", 2));
    }
    RoutingTable::build(source).unwrap()
}

fn router() -> Arc<Router> {
    let clock = Arc::new(ManualClock::at_utc(12, 0));
    let router = Router::new(clock, RouterSettings::default());
    router.install(table(true));
    Arc::new(router)
}

fn event(id: &str, status: HealthStatus, sequence: u64) -> BusMessage {
    BusMessage::Event(HealthEvent {
        operator_id: id.into(),
        status,
        sequence,
        observed_at_ms: 0,
        reason: "probe".into(),
    })
}

async fn chosen(router: &Router) -> String {
    let req = RouteRequest {
        message_id: "m-1".into(),
        destination: "+447400123456".into(),
        sender: "+15551234".into(),
        ..RouteRequest::default()
    };
    router.route(&req).await.unwrap().operator.id
}

async fn feed(router: &Arc<Router>, script: Vec<BusMessage>) -> Arc<CountingObserver> {
    let observer = Arc::new(CountingObserver::default());
    let bus = ScriptBus(script.into());
    run(router.clone(), bus, observer.clone()).await;
    observer
}

#[tokio::test]
async fn an_up_event_does_not_bring_a_disabled_operator_back() {
    // The disabled operator is the first choice by rule; health must not
    // override the table's `enabled=false`.
    let router = router();
    let script = vec![
        event("op-off", HealthStatus::Up, 1),
        event("op-a", HealthStatus::Down, 1),
    ];
    let observer = feed(&router, script).await;

    let now = router.clock().now_unix_ms();
    assert_eq!(observer.accepted_total(), 2);
    assert_eq!(router.health().health("op-off", now), Health::Up);
    assert_eq!(chosen(&router).await, "op-b");
}

#[tokio::test]
async fn health_replayed_before_the_first_table_is_kept() {
    // The bus replays every operator's state on connect, often before the
    // first table has loaded: a down operator must stay down once it does,
    // and an operator the table does not hold must leave no state.
    let clock = Arc::new(ManualClock::at_utc(12, 0));
    let router = Arc::new(Router::new(clock, RouterSettings::default()));
    let script = vec![
        event("op-a", HealthStatus::Down, 3),
        event("op-gone", HealthStatus::Up, 1),
    ];
    let observer = feed(&router, script).await;
    assert_eq!(observer.accepted_total(), 2);

    router.install(table(true));
    let now = router.clock().now_unix_ms();
    assert_eq!(router.health().health("op-a", now), Health::Down);
    assert_eq!(router.health().health("op-gone", now), Health::Unknown);
    assert_eq!(chosen(&router).await, "op-b");
}

#[tokio::test]
async fn events_for_removed_operators_do_not_bring_them_back() {
    // op-b leaves the table; a later `down` for it is refused, and when it
    // returns it starts from unknown, not from the refused event.
    let router = router();
    feed(&router, vec![event("op-a", HealthStatus::Down, 1)]).await;
    assert_eq!(chosen(&router).await, "op-b");

    router.install(table(false));
    let observer = feed(&router, vec![event("op-b", HealthStatus::Down, 5)]).await;
    assert_eq!(observer.dropped_total("unknown_operator"), 1);

    router.install(table(true));
    let now = router.clock().now_unix_ms();
    assert_eq!(router.health().health("op-b", now), Health::Unknown);
    assert_eq!(chosen(&router).await, "op-b");
}

#[tokio::test]
async fn drops_are_counted_by_reason_and_change_nothing() {
    let router = router();
    let script = vec![
        BusMessage::Connected,
        event("op-a", HealthStatus::Down, 10),
        event("op-a", HealthStatus::Up, 10),
        event("op-a", HealthStatus::Up, 9),
        event("op-ghost", HealthStatus::Up, 1),
        BusMessage::Rejected(Rejection::Malformed),
        BusMessage::Rejected(Rejection::Oversized),
        BusMessage::Disconnected,
    ];
    let observer = feed(&router, script).await;

    let now = router.clock().now_unix_ms();
    assert_eq!(router.health().health("op-a", now), Health::Down);
    assert_eq!(observer.accepted_total(), 1);
    for reason in [
        "duplicate",
        "out_of_order",
        "unknown_operator",
        "malformed",
        "oversized",
    ] {
        assert_eq!(observer.dropped_total(reason), 1, "{reason}");
    }
    assert_eq!((observer.connects(), observer.disconnects()), (1, 1));
    assert!(!observer.connected());
}
