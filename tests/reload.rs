//! Proves that rule changes committed in PostgreSQL reach decisions without a
//! restart: inserts and deletes are live within a second, a table that fails
//! validation is refused while the old one keeps serving, health survives a
//! reload, and concurrent requests never see a mix of two tables.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{repo_root, TestDb};
use routing_engine::adapters::postgres::{forward_changes, PgStore};
use routing_engine::core::clock::SystemClock;
use routing_engine::core::health::{HealthEvent, HealthStatus};
use routing_engine::core::ports::{Clock, TableStore};
use routing_engine::core::reload::{self, ReloadObserver, ReloadSettings};
use routing_engine::core::router::{RouteRequest, Router, RouterSettings};
use routing_engine::core::table::TableError;
use routing_engine::loader::run_load;
use routing_engine::source::files::DataDirs;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Default)]
struct Counts {
    applied: AtomicU64,
    refused: AtomicU64,
}

impl ReloadObserver for Counts {
    fn applied(&self, _: u64) {
        self.applied.fetch_add(1, Ordering::SeqCst);
    }
    fn refused(&self, _: &TableError) {
        self.refused.fetch_add(1, Ordering::SeqCst);
    }
    fn store_up(&self, _: bool) {}
}

struct Service {
    db: TestDb,
    router: Arc<Router>,
    counts: Arc<Counts>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// A router reading the sample table as the read-only role, reloading on
/// notifications and a slow poll (so a prompt reload proves the notification).
async fn start(test: &str) -> Service {
    let db = TestDb::create(test).await;
    let sample = DataDirs::sample(&repo_root());
    run_load(&db.admin_url(), &sample.carrier, &sample.routing)
        .await
        .unwrap();

    let pool = db.read_only_pool().await;
    let store: Arc<dyn TableStore> = Arc::new(PgStore::new(pool.clone()));
    let router = Arc::new(Router::new(
        Arc::new(SystemClock),
        RouterSettings::default(),
    ));
    let counts = Arc::new(Counts::default());
    let settings = ReloadSettings {
        poll_every: Duration::from_secs(30),
        ..Default::default()
    };
    reload::first_load(&router, store.as_ref(), counts.as_ref(), &settings).await;

    let changed = Arc::new(Notify::new());
    let tasks = vec![
        tokio::spawn(forward_changes(pool, changed.clone())),
        tokio::spawn(reload::watch(
            router.clone(),
            store,
            counts.clone(),
            changed,
            settings,
        )),
    ];
    Service {
        db,
        router,
        counts,
        tasks,
    }
}

fn request(account: &str) -> RouteRequest {
    RouteRequest {
        message_id: "m-1".into(),
        account_id: account.into(),
        destination: "+12025550173".into(),
        sender: "+15551234".into(),
        ..RouteRequest::default()
    }
}

/// Polls until `check` holds for a decision, returning how long it took.
async fn within(
    router: &Router,
    account: &str,
    limit: Duration,
    check: impl Fn(&[String]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let decision = router.route(&request(account)).await;
        if decision.as_ref().is_ok_and(|d| check(&d.rule_ids)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not live after {limit:?}: {decision:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn execute(db: &TestDb, sql: &str) -> Result<(), sqlx::Error> {
    let pool = db.admin_pool().await;
    sqlx::query(sql).execute(&pool).await.map(|_| ())
}

const INSERT_RULE: &str = "INSERT INTO rules (id, account, match_type, match_value, priority, \
    operator_id, weight, cost_micros, sender_type) VALUES \
    ('r-reload-co', 'reload-co', 'default', '', 1, 'op-eu-value', 10, 100, 'any')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserted_and_deleted_rules_are_live_within_a_second() {
    let svc = start("reload_live").await;
    let before = svc.router.route(&request("reload-co")).await.unwrap();
    assert!(
        before.rule_ids.iter().all(|r| r.starts_with("r-default")),
        "{before:?}"
    );

    execute(&svc.db, INSERT_RULE).await.unwrap();
    let took = within(&svc.router, "reload-co", Duration::from_secs(1), |ids| {
        ids == ["r-reload-co"]
    })
    .await;
    eprintln!("inserted rule live after {took:?}");

    execute(&svc.db, "DELETE FROM rules WHERE id = 'r-reload-co'")
        .await
        .unwrap();
    let took = within(&svc.router, "reload-co", Duration::from_secs(1), |ids| {
        ids.iter().all(|r| r.starts_with("r-default"))
    })
    .await;
    eprintln!("deleted rule gone after {took:?}");
    assert!(svc.counts.applied.load(Ordering::SeqCst) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_changes_are_refused_and_the_old_table_serves() {
    let svc = start("reload_refused").await;
    let version = svc.router.table().unwrap().version();

    // The database refuses a rule naming an unknown operator outright.
    let broken = INSERT_RULE.replace("'op-eu-value'", "'op-nowhere'");
    assert!(execute(&svc.db, &broken).await.is_err());

    // A network the database accepts but the table does not: blank name.
    execute(
        &svc.db,
        "INSERT INTO ported_numbers VALUES ('+447400123999', '44: ')",
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while svc.counts.refused.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the invalid table was not refused"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(svc.router.table().unwrap().version(), version);
    let decision = svc.router.route(&request("")).await.unwrap();
    assert_eq!(decision.table_version, version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_survives_a_reload() {
    let svc = start("reload_health").await;
    let now = SystemClock.now_unix_ms();
    let down = HealthEvent {
        operator_id: "op-global-a".into(),
        status: HealthStatus::Down,
        sequence: 1,
        observed_at_ms: now,
        reason: "test".into(),
    };
    svc.router.health().apply(&down, true, now).unwrap();

    execute(&svc.db, INSERT_RULE).await.unwrap();
    within(&svc.router, "reload-co", Duration::from_secs(1), |ids| {
        ids == ["r-reload-co"]
    })
    .await;

    for m in 0..100 {
        let mut req = request("");
        req.message_id = format!("m-{m}");
        let d = svc.router.route(&req).await.unwrap();
        assert_eq!(
            d.operator.id, "op-global-b",
            "a down operator came back after a reload"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_see_one_table_or_the_other() {
    let svc = start("reload_atomic").await;
    let base = svc.router.table().unwrap().version();

    let router = svc.router.clone();
    let reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        for m in 0..3_000 {
            let mut req = request("reload-co");
            req.message_id = format!("m-{m}");
            let d = router.route(&req).await.unwrap();
            seen.push((
                d.table_version,
                d.rule_ids.contains(&"r-reload-co".to_string()),
            ));
            tokio::task::yield_now().await;
        }
        seen
    });
    for _ in 0..5 {
        execute(&svc.db, INSERT_RULE).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        execute(&svc.db, "DELETE FROM rules WHERE id = 'r-reload-co'")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // Each insert and each delete bumps the version once, so odd steps past
    // the base version hold the rule and even ones do not.
    let seen = reader.await.unwrap();
    for (version, has_rule) in &seen {
        assert_eq!(
            (version - base) % 2 == 1,
            *has_rule,
            "version {version} mixed tables"
        );
    }
    let versions: std::collections::BTreeSet<_> = seen.iter().map(|(v, _)| *v).collect();
    eprintln!("requests saw {} table versions", versions.len());
}
