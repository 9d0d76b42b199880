//! Assembles the live parts of `serve` around the router: the table reloader
//! over PostgreSQL, shared limits and the portability cache in Redis, and
//! operator health from NATS, each degrading on its own when its dependency
//! fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::Notify;

use crate::adapters::nats::{NatsBusSettings, NatsHealthBus};
use crate::adapters::postgres::{forward_changes, PgStore};
use crate::adapters::redis::{RedisCache, RedisSettings, RedisUrl};
use crate::core::limits::{ResilientCache, ResilientSettings};
use crate::core::ports::{Cache, Clock, TableStore};
use crate::core::reload::{self, ReloadSettings};
use crate::core::router::Router;
use crate::metrics::{CacheCounters, DependencyProbe, Metrics};
use crate::secret::Secret;

/// Settings of the live parts, each from a flag or its environment variable,
/// as given: `config::resolve` judges them with the rest, so that a wrong
/// value is one more problem in the start-up line, not a separate exit.
#[derive(clap::Args, Debug, Clone)]
pub struct LiveArgs {
    /// NATS server(s) carrying operator health, comma-separated.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Replicas sharing each operator's throughput limit (1 to 1000); while
    /// Redis is unreachable each replica admits `limit / replicas` on its own.
    #[arg(long, env = "REPLICAS", default_value = "1")]
    pub replicas: String,

    /// Seconds without a health event after which an operator is `unknown`
    /// (1 to 86400).
    #[arg(long, env = "HEALTH_STALE_AFTER_SECS", default_value = "30")]
    pub health_stale_after_secs: String,

    /// Where ported numbers are looked up: `lookup` (Redis cache in front of
    /// PostgreSQL, per destination) or `snapshot` (held in every replica).
    #[arg(long, env = "PORTABILITY", default_value = "lookup")]
    pub portability: String,

    /// Poll interval of the table version, in milliseconds (50 to 60000),
    /// behind the change notifications.
    #[arg(long, env = "RELOAD_POLL_MS", default_value = "500")]
    pub reload_poll_ms: String,
}

/// The live settings, judged.
#[derive(Debug, Clone)]
pub struct Live {
    pub nats_url: String,
    pub replicas: u32,
    pub health_stale_after_secs: u64,
    pub portability: Portability,
    pub reload_poll: Duration,
}

/// Where ported numbers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Portability {
    Lookup,
    Snapshot,
}

impl Portability {
    /// Reads `lookup` or `snapshot`, in any case.
    pub fn parse(text: &str) -> Option<Portability> {
        match text.trim().to_ascii_lowercase().as_str() {
            "lookup" => Some(Portability::Lookup),
            "snapshot" => Some(Portability::Snapshot),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Portability::Lookup => "lookup",
            Portability::Snapshot => "snapshot",
        }
    }
}

/// One eager connection at start, to say why Redis refuses if it does: the
/// lazy connection's callers only see their calls time out while it retries,
/// which hides a wrong password behind "timed out".
async fn first_redis_contact(settings: RedisSettings) {
    if let Err(error) = RedisCache::connect(settings).await {
        tracing::warn!(error = %error, "redis did not accept a connection at start");
    }
}

/// A lazily connected pool: the service starts, and reports not ready,
/// while PostgreSQL is down.
pub fn postgres_pool(url: &Secret) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(url.expose())
}

/// The store the router reads, with ported numbers in or out of the
/// snapshot as configured.
pub fn table_store(pool: PgPool, portability: Portability) -> Arc<PgStore> {
    let store = PgStore::new(pool);
    Arc::new(match portability {
        Portability::Lookup => store.without_ported_in_snapshot(),
        Portability::Snapshot => store,
    })
}

/// Redis behind local limits: throughput limits hold while Redis is down.
pub async fn shared_cache(
    url: &Secret,
    replicas: u32,
    clock: Arc<dyn Clock>,
    metrics: &Metrics,
) -> anyhow::Result<Arc<dyn Cache>> {
    let settings = RedisSettings::new(RedisUrl::new(url.expose()));
    let redis = Arc::new(RedisCache::connect_lazy(settings.clone()).await?);
    tracing::info!(redis.addr = %redis.addr(), "shared limits and portability cache in Redis");
    tokio::spawn(first_redis_contact(settings));

    let resilient = Arc::new(ResilientCache::new(
        redis.clone(),
        clock,
        ResilientSettings {
            replicas,
            ..ResilientSettings::default()
        },
    ));
    metrics.watch_cache(Arc::new(RedisCounters(redis)));
    metrics.watch_dependency("redis", Arc::new(RedisProbe(resilient.clone())));
    tokio::spawn(check_redis(resilient.clone()));
    Ok(resilient)
}

/// How often Redis is asked whether it answers, traffic or not.
const REDIS_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Keeps the Redis state that `/ready` shows current while no request runs.
async fn check_redis(cache: Arc<ResilientCache>) {
    let mut every = tokio::time::interval(REDIS_CHECK_EVERY);
    loop {
        every.tick().await;
        cache.check_shared().await;
    }
}

struct RedisCounters(Arc<RedisCache>);

impl CacheCounters for RedisCounters {
    fn hits_misses_corrupt(&self) -> (u64, u64, u64) {
        let stats = self.0.stats();
        (stats.hits, stats.misses, stats.corrupt)
    }
}

struct RedisProbe(Arc<ResilientCache>);

impl DependencyProbe for RedisProbe {
    fn is_up(&self) -> bool {
        !self.0.is_degraded()
    }
}

/// Loads the first table (retrying with backoff while PostgreSQL is down),
/// then keeps it current in the background.
pub async fn load_and_watch(
    router: Arc<Router>,
    store: Arc<PgStore>,
    metrics: Arc<Metrics>,
    poll_every: Duration,
    max_backoff: Duration,
) -> tokio::task::JoinHandle<()> {
    let settings = ReloadSettings {
        poll_every,
        max_backoff,
        ..ReloadSettings::default()
    };
    let changed = Arc::new(Notify::new());
    tokio::spawn(forward_changes(store.pool().clone(), changed.clone()));

    let dyn_store: Arc<dyn TableStore> = store;
    reload::first_load(&router, dyn_store.as_ref(), metrics.as_ref(), &settings).await;
    tokio::spawn(reload::watch(router, dyn_store, metrics, changed, settings))
}

/// Feeds operator health from NATS into the router, reconnecting with
/// backoff for as long as the service runs.
pub fn spawn_health_feed(
    router: Arc<Router>,
    nats_url: String,
    creds: PathBuf,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    let settings = NatsBusSettings {
        url: nats_url,
        creds: Some(creds),
        ..Default::default()
    };
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match NatsHealthBus::connect(&settings).await {
                Ok(bus) => {
                    backoff = Duration::from_millis(200);
                    crate::core::health_feed::run(router.clone(), bus, metrics.clone()).await;
                }
                Err(error) => {
                    metrics.set_dependency("nats", false);
                    tracing::warn!(%error, retry_in = ?backoff, "health bus unavailable");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    })
}
