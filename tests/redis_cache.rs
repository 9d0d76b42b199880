//! The Redis cache against a real Redis: shared limits across replicas,
//! corrupt values, authentication, an outage, and the portability cache.
//!
//! Uses `REDIS_URL_TEST` (default `redis://127.0.0.1:6379`); every test keeps
//! its keys under its own prefix, so tests run in parallel. Tests that need
//! a password or an outage start their own `redis-server`.
#![cfg(feature = "real")]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use routing_engine::adapters::redis::{RedisCache, RedisCacheError, RedisSettings, RedisUrl};
use routing_engine::core::clock::SystemClock;
use routing_engine::core::limits::{ResilientCache, ResilientSettings};
use routing_engine::core::model::*;
use routing_engine::core::ports::{Admission, Cache, PortError, TableStore};
use routing_engine::core::router::{NetworkSource, Outcome, RouteRequest, Router, RouterSettings};
use routing_engine::core::table::RoutingTable;
use tokio::time::Instant;
use tracing_subscriber::layer::SubscriberExt;

// === Fixtures ===

fn redis_url() -> String {
    std::env::var("REDIS_URL_TEST").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test or run shares.
fn unique_prefix(test: &str) -> String {
    #[allow(clippy::disallowed_methods)] // a unique name, not a time reading
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("routing-engine-test:{}:{test}:{nanos}", std::process::id())
}

fn settings(url: &str, prefix: &str) -> RedisSettings {
    let mut settings = RedisSettings::new(RedisUrl::new(url));
    settings.key_prefix = prefix.to_owned();
    settings
}

async fn cache(prefix: &str) -> Arc<RedisCache> {
    let cache = RedisCache::connect(settings(&redis_url(), prefix)).await;
    Arc::new(cache.expect("connect to the test redis"))
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

fn operator(id: &str, tps_limit: u32) -> Operator {
    Operator {
        id: id.into(),
        name: id.into(),
        system_id: format!("sys-{id}"),
        smpp_host: "smpp.example".into(),
        smpp_port: 2775,
        tps_limit,
        alphanumeric_sender: true,
        enabled: true,
    }
}

fn rule(id: &str, matcher: RuleMatch, priority: u32, operator: &str) -> Rule {
    Rule {
        id: id.into(),
        account: None,
        matcher,
        priority,
        target: RuleTarget::Operator(operator.into()),
        weight: 100,
        cost_micros: 1_000,
        sender: SenderFilter::Any,
        window: None,
    }
}

/// UK traffic goes to `op-a`, then `op-b`; numbers on 44:EE go to `op-ee`
/// first. Ported numbers are not in the snapshot, so they are looked up.
fn source(limit_a: u32, limit_b: u32) -> TableSource {
    let range = |prefix: &str, network: &str| NumberRange {
        country_code: 44,
        prefix: prefix.into(),
        network: network.into(),
    };
    TableSource {
        version: 1,
        operators: vec![
            operator("op-a", limit_a),
            operator("op-b", limit_b),
            operator("op-ee", 1_000),
        ],
        ranges: vec![range("447400", "Three"), range("447300", "EE")],
        ported: Vec::new(),
        rules: vec![
            rule("r-44-a", RuleMatch::Country(44), 1, "op-a"),
            rule("r-44-b", RuleMatch::Country(44), 2, "op-b"),
            rule("r-ee", RuleMatch::Network("44:EE".into()), 1, "op-ee"),
        ],
    }
}

/// The source of truth for portability: a map, counting its lookups.
#[derive(Default)]
struct MapStore {
    ported: HashMap<String, String>,
    lookups: AtomicU64,
}

impl MapStore {
    fn with(ported: &[(&str, &str)]) -> MapStore {
        MapStore {
            ported: ported
                .iter()
                .map(|(n, net)| ((*n).to_owned(), (*net).to_owned()))
                .collect(),
            lookups: AtomicU64::new(0),
        }
    }

    fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TableStore for MapStore {
    async fn load(&self) -> Result<TableSource, PortError> {
        Ok(source(100, 100))
    }

    async fn version(&self) -> Result<u64, PortError> {
        Ok(1)
    }

    async fn ported_network(&self, e164: &str) -> Result<Option<String>, PortError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        Ok(self.ported.get(e164).cloned())
    }
}

fn router(table: TableSource, cache: Arc<dyn Cache>, store: Arc<MapStore>) -> Router {
    let router = Router::new(Arc::new(SystemClock), RouterSettings::default())
        .with_cache(cache)
        .with_store(store);
    router.install(RoutingTable::build(table).unwrap());
    router
}

fn request(destination: &str, parts: u32) -> RouteRequest {
    RouteRequest {
        message_id: "m-1".into(),
        account_id: "acct".into(),
        destination: destination.into(),
        sender: "+15551234".into(),
        parts,
        explain: true,
        ..RouteRequest::default()
    }
}

const UK_THREE: &str = "+447400123456";

/// A `redis-server` of the test's own on a loopback port, killed on drop.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
    password: String,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start(password: &str) -> Result<OwnRedis> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut own = OwnRedis {
            child: None,
            port,
            password: password.to_owned(),
            dir: tempfile::tempdir()?,
        };
        own.restart()?;
        Ok(own)
    }

    fn url(&self, password: &str) -> String {
        format!("redis://:{password}@127.0.0.1:{}/0", self.port)
    }

    /// Starts the server on the same port and waits until it listens.
    fn restart(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--requirepass", &self.password])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start redis-server")?;
        self.child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Counts log events of the limits module by level.
#[derive(Clone, Default)]
struct LevelCount(Arc<Mutex<HashMap<tracing::Level, u32>>>);

impl LevelCount {
    fn get(&self, level: tracing::Level) -> u32 {
        self.0.lock().unwrap().get(&level).copied().unwrap_or(0)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LevelCount {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if meta.target().starts_with("routing_engine::core::limits") {
            *self.0.lock().unwrap().entry(*meta.level()).or_default() += 1;
        }
    }
}

// === Shared limits ===

/// One admitted decision: when (between `before` and `after`) and how many
/// parts, on which operator.
#[derive(Clone, Debug)]
struct Admitted {
    operator: String,
    parts: u32,
    before: Duration,
    after: Duration,
}

/// Parts admitted certainly inside some window of `width`: the largest sum
/// over windows starting at an admission, counting only admissions whose
/// whole call lies in the window.
fn max_in_window(admitted: &[&Admitted], width: Duration, not_before: Duration) -> u32 {
    admitted
        .iter()
        .filter(|a| a.before >= not_before)
        .map(|start| {
            admitted
                .iter()
                .filter(|a| a.before >= start.before && a.after <= start.before + width)
                .map(|a| a.parts)
                .sum::<u32>()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_share_each_operators_limit() {
    // Two replicas share one Redis and each get half the traffic, far above
    // the limits. Token-bucket bound: a window of w seconds never holds more
    // than limit * (1 + w) parts (a full burst plus the refill), and over
    // the whole run the rate stays at the limit.
    let (limit_a, limit_b) = (30, 15);
    let prefix = unique_prefix("two-routers");
    let store = Arc::new(MapStore::default());
    // The router admits when the limiter fails, so a timed-out call would
    // blur the bound; a generous timeout keeps this about the bucket.
    let mut caches = Vec::new();
    for _ in 0..2 {
        let mut settings = settings(&redis_url(), &prefix);
        settings.call_timeout = Duration::from_secs(2);
        caches.push(Arc::new(RedisCache::connect(settings).await.unwrap()));
    }
    let routers = caches
        .iter()
        .map(|cache| {
            Arc::new(router(
                source(limit_a, limit_b),
                cache.clone(),
                store.clone(),
            ))
        })
        .collect::<Vec<_>>();

    let start = Instant::now();
    let run_for = Duration::from_millis(3_500);
    let mut tasks = Vec::new();
    for worker in 0..4usize {
        let router = routers[worker % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut pace = tokio::time::interval(Duration::from_millis(5));
            let mut n = worker;
            while start.elapsed() < run_for {
                pace.tick().await;
                n += 1;
                let parts = [1, 3, 1, 2][n % 4];
                let before = start.elapsed();
                let outcome = router.route(&request(UK_THREE, parts)).await;
                let after = start.elapsed();
                seen.push((worker % 2, parts, before, after, outcome));
            }
            seen
        }));
    }

    let mut admitted = Vec::new();
    let mut throttled_all = 0;
    let mut by_router = [0u32; 2];
    for task in tasks {
        for (replica, parts, before, after, outcome) in task.await.unwrap() {
            match outcome {
                Ok(d) => {
                    by_router[replica] += 1;
                    admitted.push(Admitted {
                        operator: d.operator.id,
                        parts,
                        before,
                        after,
                    });
                }
                Err(e) => {
                    assert_eq!(e.reason(), "ALL_OPERATORS_THROTTLED", "{e}");
                    throttled_all += 1;
                }
            }
        }
    }
    assert!(
        by_router.iter().all(|n| *n > 0),
        "both replicas admit: {by_router:?}"
    );
    assert!(throttled_all > 0, "the offered load exceeds both limits");
    let errors: u64 = caches.iter().map(|c| c.stats().errors).sum();
    assert_eq!(errors, 0, "every limiter call answered");

    let elapsed = admitted
        .iter()
        .map(|a| a.after)
        .max()
        .unwrap()
        .as_secs_f64();
    for (op, limit) in [("op-a", limit_a), ("op-b", limit_b)] {
        let mine: Vec<&Admitted> = admitted.iter().filter(|a| a.operator == op).collect();
        let total: u32 = mine.iter().map(|a| a.parts).sum();
        let mut report = format!("{op} limit {limit}/s: {total} parts in {elapsed:.2} s");
        for width_ms in [100, 250, 500, 1_000, 2_000] {
            let width = Duration::from_millis(width_ms);
            let most = max_in_window(&mine, width, Duration::ZERO);
            let steady = max_in_window(&mine, width, Duration::from_secs(1));
            let bound = f64::from(limit) * (1.0 + width.as_secs_f64());
            report += &format!("; {width_ms} ms window max {most} (after 1 s: {steady})");
            assert!(
                f64::from(most) <= bound,
                "{op}: {most} parts in a {width_ms} ms window, bound {bound}"
            );
        }
        println!("{report}");

        let cap = f64::from(limit) * (1.0 + elapsed);
        assert!(f64::from(total) <= cap, "{op}: {total} parts, cap {cap}");
        let floor = f64::from(limit) * elapsed * 0.7;
        assert!(
            f64::from(total) >= floor,
            "{op}: only {total} parts, expected {floor}"
        );
    }
}

#[tokio::test]
async fn a_burst_is_admitted_then_candidates_are_skipped_then_all_throttled() {
    // A full bucket admits `limit` parts at once, counting every part; then
    // the router skips the operator, and with every candidate at its limit
    // the request is refused as throttled.
    let prefix = unique_prefix("burst");
    let cache = cache(&prefix).await;
    let router = router(source(4, 3), cache.clone(), Arc::new(MapStore::default()));
    routing_engine::core::numbering::normalise(UK_THREE, "").unwrap();
    let start = Instant::now();

    for parts in [3, 1] {
        let d = router.route(&request(UK_THREE, parts)).await.unwrap();
        assert_eq!(d.operator.id, "op-a", "{parts}-part message in the burst");
    }

    let d = router.route(&request(UK_THREE, 3)).await.unwrap();
    assert_eq!(d.operator.id, "op-b");
    assert!(d.fallbacks.iter().all(|op| op.id != "op-a"));
    let skipped = d.explain.iter().find(|t| t.operator_id == "op-a").unwrap();
    assert_eq!(skipped.outcome, Outcome::Dropped);
    assert_eq!(skipped.reason, "at its throughput limit");

    let refused = router.route(&request(UK_THREE, 3)).await.unwrap_err();
    assert_eq!(refused.reason(), "ALL_OPERATORS_THROTTLED");

    // Refill: op-a earns 3 tokens in 750 ms, op-b in 1 s.
    let took = start.elapsed();
    assert!(took < Duration::from_millis(700), "the burst took {took:?}");
    assert_eq!(cache.stats().corrupt, 0);
}

// === Untrusted values ===

#[tokio::test]
async fn garbage_in_bucket_keys_is_replaced_and_limits_still_hold() {
    // Whatever sits in a bucket key (wrong type, junk fields, impossible
    // numbers) is replaced by a full bucket and counted; the limit then
    // holds as usual.
    let prefix = unique_prefix("bucket-garbage");
    let cache = cache(&prefix).await;
    let mut raw = raw_connection(&redis_url()).await;
    let key = format!("{prefix}:tps:op-a");

    let garbage: Vec<redis::Cmd> = vec![
        redis::cmd("SET").arg(&key).arg("garbage").clone(),
        redis::cmd("RPUSH").arg(&key).arg("1").arg("2").clone(),
        redis::cmd("SADD").arg(&key).arg("t").clone(),
        hset(&key, &[("t", "abc"), ("c", "10"), ("at", "x")]),
        hset(&key, &[("t", "1e9"), ("c", "10"), ("at", "0")]),
        hset(&key, &[("t", "-5"), ("c", "10"), ("at", "0")]),
        hset(&key, &[("t", "nan"), ("c", "10"), ("at", "0")]),
        hset(&key, &[("t", "0"), ("c", "10"), ("at", "9e18")]),
        hset(&key, &[("t", "0"), ("c", "inf"), ("at", "0")]),
        hset(&key, &[("t", "5"), ("c", "10"), ("at", "0"), ("junk", "1")]),
        hset(&key, &[("t", "5")]),
    ];
    for (n, cmd) in garbage.iter().enumerate() {
        redis::cmd("DEL")
            .arg(&key)
            .exec_async(&mut raw)
            .await
            .unwrap();
        cmd.exec_async(&mut raw).await.unwrap();
        let admitted = cache.acquire("op-a", 10, 1).await.unwrap();
        assert_eq!(admitted, Admission::Admitted, "garbage #{n}: {cmd:?}");
        assert_eq!(cache.stats().corrupt, n as u64 + 1, "garbage #{n} counted");
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(kind, "hash", "garbage #{n} replaced");
    }

    // The repaired bucket is full: 2 parts at once, then nothing until a
    // token is earned after 500 ms.
    redis::cmd("SET")
        .arg(&key)
        .arg("garbage")
        .exec_async(&mut raw)
        .await
        .unwrap();
    let start = Instant::now();
    let mut admitted = 0;
    for _ in 0..6 {
        if cache.acquire("op-a", 2, 1).await.unwrap() == Admission::Admitted {
            admitted += 1;
        }
    }
    let took = start.elapsed();
    assert!(took < Duration::from_millis(450), "6 calls took {took:?}");
    assert_eq!(admitted, 2);

    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((1..=2_000).contains(&ttl), "bucket TTL {ttl} ms");
}

fn hset(key: &str, fields: &[(&str, &str)]) -> redis::Cmd {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    for (field, value) in fields {
        cmd.arg(*field).arg(*value);
    }
    cmd
}

#[tokio::test]
async fn garbage_in_portability_keys_is_ignored_and_the_store_answers() {
    // A portability entry that does not decode, or is not a string, is
    // counted and ignored: the store answers and the entry is rewritten.
    let prefix = unique_prefix("ported-garbage");
    let cache = cache(&prefix).await;
    let store = Arc::new(MapStore::with(&[(UK_THREE, "44:EE")]));
    let router = router(source(100, 100), cache.clone(), store.clone());
    let mut raw = raw_connection(&redis_url()).await;
    let key = format!("{prefix}:ported:{UK_THREE}");

    let junk: Vec<redis::Cmd> = ["x", "", "N", "p:", "p:EE", "p:44:", "p:4444:EE", "44:EE"]
        .into_iter()
        .map(|v| redis::cmd("SET").arg(&key).arg(v).clone())
        .chain([
            redis::cmd("RPUSH").arg(&key).arg("p:44:EE").clone(),
            hset(&key, &[("p", "44:EE")]),
        ])
        .collect();
    for (n, cmd) in junk.iter().enumerate() {
        redis::cmd("DEL")
            .arg(&key)
            .exec_async(&mut raw)
            .await
            .unwrap();
        cmd.exec_async(&mut raw).await.unwrap();

        let d = router.route(&request(UK_THREE, 1)).await.unwrap();
        assert_eq!(d.network.as_deref(), Some("44:EE"), "junk #{n}: {cmd:?}");
        assert_eq!(d.network_source, NetworkSource::Ported);
        assert_eq!(d.operator.id, "op-ee");
        assert_eq!(store.lookups(), n as u64 + 1, "junk #{n} went to the store");
        assert_eq!(cache.stats().corrupt, n as u64 + 1, "junk #{n} counted");

        let now: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(now, "p:44:EE", "junk #{n} rewritten");
    }
    assert_eq!(cache.stats().hits, 0);
}

// === Portability ===

#[tokio::test]
async fn portability_misses_go_to_the_store_and_are_remembered() {
    // A miss asks the store and caches the answer, "not ported" included,
    // with its TTL; the next lookup is a hit and leaves the store alone.
    let prefix = unique_prefix("ported");
    let cache = cache(&prefix).await;
    let ported = "+447400999999";
    let store = Arc::new(MapStore::with(&[(ported, "44:EE")]));
    let router = router(source(1_000, 1_000), cache.clone(), store.clone());
    let mut raw = raw_connection(&redis_url()).await;

    for round in 0..2u64 {
        let d = router.route(&request(ported, 1)).await.unwrap();
        assert_eq!(d.network.as_deref(), Some("44:EE"));
        assert_eq!(d.network_source, NetworkSource::Ported);
        let d = router.route(&request(UK_THREE, 1)).await.unwrap();
        assert_eq!(d.network.as_deref(), Some("44:Three"));
        assert_eq!(d.network_source, NetworkSource::Prefix);

        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (2 * round, 2), "round {round}");
        assert_eq!(store.lookups(), 2, "round {round}");
    }

    for (number, value, ttl_range) in [
        (ported, "p:44:EE", 3_500..=3_600),
        (UK_THREE, "n", 500..=600),
    ] {
        let key = format!("{prefix}:ported:{number}");
        let stored: String = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(stored, value);
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(ttl_range.contains(&ttl), "{number}: TTL {ttl}");
    }
    assert_eq!(cache.stats().corrupt, 0);
}

// === Connection ===

#[tokio::test]
async fn the_password_in_the_url_authenticates_and_a_wrong_one_is_not_shown() {
    // The password travels in REDIS_URL; a refused one gives an error that
    // names the server but never the password.
    let password = "Pw-right-7f3a91";
    let server = OwnRedis::start(password).unwrap();
    let prefix = unique_prefix("auth");

    let cache = RedisCache::connect(settings(&server.url(password), &prefix))
        .await
        .expect("the right password connects");
    assert_eq!(
        cache.acquire("op-a", 5, 1).await.unwrap(),
        Admission::Admitted
    );

    for given in ["Pw-wrong-2c81d0", ""] {
        let url = server.url(given);
        let refused = RedisCache::connect(settings(&url, &prefix)).await.err();
        let Some(error) = refused else {
            panic!("password {given:?} was accepted");
        };
        let shown = format!("{error} / {error:?}");
        println!("refused: {shown}");
        assert!(
            matches!(error, RedisCacheError::AuthenticationFailed { .. }),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("127.0.0.1:{}", server.port)),
            "{shown}"
        );
        assert!(!shown.contains(password) && (given.is_empty() || !shown.contains(given)));
    }
}

#[tokio::test]
async fn limits_fall_back_to_a_local_share_and_come_back_with_redis() {
    // With Redis gone, each of 2 replicas admits half the limit on its own
    // and says so once; when Redis is back on the same port, shared limits
    // resume by themselves and that is said once too.
    let levels = LevelCount::default();
    let _logs =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(levels.clone()));
    let mut server = OwnRedis::start("Pw-outage-51c2").unwrap();
    let shared = RedisCache::connect(settings(&server.url("Pw-outage-51c2"), "outage"))
        .await
        .unwrap();
    let resilient = ResilientCache::new(
        Arc::new(shared),
        Arc::new(SystemClock),
        ResilientSettings {
            replicas: 2,
            probe_interval_ms: 200,
        },
    );
    let burst = |n: u32| {
        let resilient = &resilient;
        async move {
            let mut admitted = 0;
            for _ in 0..n {
                if resilient.acquire("op-a", 20, 1).await.unwrap() == Admission::Admitted {
                    admitted += 1;
                }
            }
            admitted
        }
    };

    assert_eq!(burst(30).await, 20, "shared bucket of 20");
    assert!(!resilient.is_degraded());

    server.stop();
    let start = Instant::now();
    let local = burst(30).await;
    let took = start.elapsed().as_secs_f64();
    println!("redis down: {local} of 30 admitted locally in {took:.3} s");
    assert!(resilient.is_degraded());
    assert!(
        local >= 10 && f64::from(local) <= 10.0 + 10.0 * took + 1.0,
        "{local}"
    );
    assert!(burst(30).await <= 2, "the local share stays spent");
    assert_eq!(
        levels.get(tracing::Level::WARN),
        1,
        "one warning for the switch"
    );

    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while resilient.is_degraded() {
        assert!(Instant::now() < deadline, "shared limits did not come back");
        resilient.acquire("op-probe", 20, 1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        levels.get(tracing::Level::INFO),
        1,
        "one notice for the return"
    );
    assert_eq!(levels.get(tracing::Level::WARN), 1);

    // The restarted server kept nothing: a fresh shared bucket of 20.
    let back = burst(30).await;
    println!(
        "redis back after {:.2} s: {back} of 30 admitted",
        start.elapsed().as_secs_f64()
    );
    assert!((19..=21).contains(&back), "{back}");
}
