//! Proves the PostgreSQL degraded modes against the real server behind a
//! proxy the test cuts: down at start the replica is not ready and retries;
//! down later it keeps serving the last table, answers ported numbers from
//! the Redis cache, else from the prefix network and says so; and it
//! recovers by itself, picking up changes committed during the outage.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::proxy::Proxy;
use common::{repo_root, TestDb};
use routing_engine::adapters::postgres::{forward_changes, PgStore};
use routing_engine::adapters::redis::{RedisCache, RedisSettings, RedisUrl};
use routing_engine::core::clock::SystemClock;
use routing_engine::core::error::RouteError;
use routing_engine::core::ports::TableStore;
use routing_engine::core::reload::{self, NoopReloadObserver, ReloadSettings};
use routing_engine::core::router::{NetworkSource, RouteRequest, Router, RouterSettings};
use routing_engine::loader::run_load;
use routing_engine::source::files::DataDirs;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing_subscriber::layer::SubscriberExt;

fn request(destination: &str) -> RouteRequest {
    RouteRequest {
        message_id: "m-1".into(),
        destination: destination.into(),
        sender: "+15551234".into(),
        ..RouteRequest::default()
    }
}

/// The messages the reloader logs, in order.
#[derive(Clone, Default)]
struct Said(Arc<std::sync::Mutex<Vec<String>>>);

impl Said {
    fn count(&self, message: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|m| *m == message)
            .count()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Said {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if event.metadata().target() == "routing_engine::core::reload" {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
}

const STORE_LOST: &str = "routing table store unreachable, serving the table in hand";
const STORE_BACK: &str = "routing table store answers again";

/// Two numbers the sample lists as ported, with their prefix networks.
const PORTED_CACHED: &str = "+447400123456";
const PORTED_UNCACHED: &str = "+447400999999";

async fn wait_until(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{what} after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outages_degrade_and_recover() {
    // The replica's tasks run on the runtime's workers: the only test of
    // this binary installs its listener for every thread.
    let said = Said::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(said.clone()))
        .unwrap();
    let db = TestDb::create("degraded_pg").await;
    let sample = DataDirs::sample(&repo_root());
    run_load(&db.admin_url(), &sample.carrier, &sample.routing)
        .await
        .unwrap();
    let admin = db.admin_pool().await;
    for (e164, network) in [(PORTED_CACHED, "44:EE"), (PORTED_UNCACHED, "44:Vodafone")] {
        sqlx::query(
            "INSERT INTO ported_numbers VALUES ($1, $2) ON CONFLICT (e164) DO UPDATE \
                     SET network = EXCLUDED.network",
        )
        .bind(e164)
        .bind(network)
        .execute(&admin)
        .await
        .unwrap();
    }

    // PostgreSQL is unreachable when the replica starts.
    let proxy = Proxy::start(common::services::postgres_addr(), false).await;
    let options = db
        .read_only_options()
        .host("127.0.0.1")
        .port(proxy.addr.port());
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy_with(options);
    let store = Arc::new(PgStore::new(pool.clone()).without_ported_in_snapshot());
    let mut redis = RedisSettings::new(RedisUrl::new(common::services::redis_url()));
    redis.key_prefix = format!("routing-engine-test:{}:degraded", std::process::id());
    let cache = Arc::new(RedisCache::connect(redis).await.unwrap());
    let router = Arc::new(
        Router::new(Arc::new(SystemClock), RouterSettings::default())
            .with_store(store.clone())
            .with_cache(cache),
    );

    let settings = ReloadSettings {
        poll_every: Duration::from_millis(200),
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(300),
    };
    let loader = {
        let (router, store, settings) = (router.clone(), store.clone(), settings.clone());
        tokio::spawn(async move {
            reload::first_load(&router, store.as_ref(), &NoopReloadObserver, &settings).await;
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        router.table().is_none(),
        "a table appeared while PostgreSQL was down"
    );
    let not_ready = router.route(&request(PORTED_CACHED)).await.unwrap_err();
    assert_eq!(not_ready, RouteError::NotReady);

    // It comes back: the replica becomes ready by itself.
    proxy.set_up(true);
    wait_until(
        "ready once PostgreSQL is back",
        Duration::from_secs(5),
        async || router.table().is_some(),
    )
    .await;
    loader.await.unwrap();
    let changed = Arc::new(Notify::new());
    let dyn_store: Arc<dyn TableStore> = store.clone();
    let watcher = tokio::spawn(reload::watch(
        router.clone(),
        dyn_store,
        Arc::new(NoopReloadObserver),
        changed.clone(),
        settings,
    ));
    let notifications = tokio::spawn(forward_changes(pool, changed));

    let cached = router.route(&request(PORTED_CACHED)).await.unwrap();
    assert_eq!(cached.network.as_deref(), Some("44:EE"));
    assert_eq!(cached.network_source, NetworkSource::Ported);

    // Down again: the last table keeps serving; portability comes from Redis
    // where it was cached, else from the prefix, and the answer says which.
    proxy.set_up(false);
    let version = router.table().unwrap().version();
    let cached = router.route(&request(PORTED_CACHED)).await.unwrap();
    assert_eq!(cached.network_source, NetworkSource::Ported);
    assert_eq!(cached.network.as_deref(), Some("44:EE"));
    let uncached = router.route(&request(PORTED_UNCACHED)).await.unwrap();
    assert_eq!(uncached.network_source, NetworkSource::PrefixFallback);
    assert_eq!(uncached.network.as_deref(), Some("44:Three"));
    assert_eq!(uncached.table_version, version);

    // A change committed during the outage is picked up after it.
    sqlx::query("UPDATE rules SET cost_micros = cost_micros + 1 WHERE id = 'r-44-eu'")
        .execute(&admin)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(router.table().unwrap().version(), version);
    proxy.set_up(true);
    wait_until(
        "the change made during the outage is live",
        Duration::from_secs(5),
        async || router.table().unwrap().version() > version,
    )
    .await;
    let recovered = router.route(&request(PORTED_UNCACHED)).await.unwrap();
    assert_eq!(recovered.network_source, NetworkSource::Ported);
    assert_eq!(recovered.network.as_deref(), Some("44:Vodafone"));

    // The outage spanned several polls; it was said once, and so was the return.
    assert_eq!(said.count(STORE_LOST), 1, "{:?}", said.0.lock().unwrap());
    assert_eq!(said.count(STORE_BACK), 1, "{:?}", said.0.lock().unwrap());

    watcher.abort();
    notifications.abort();
}
