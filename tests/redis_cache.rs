//! The Redis cache against a real Redis: shared limits across replicas,
//! corrupt values, authentication, an outage, and the portability cache.
//!
//! Uses `REDIS_URL_TEST` (default `redis://127.0.0.1:6379`); every test keeps
//! its keys under its own prefix, so tests run in parallel. Tests that need
//! a password or an outage start their own `redis-server`.
#![cfg(feature = "real")]

mod common;

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
use routing_engine::core::error::RouteError;
use routing_engine::core::limits::{ResilientCache, ResilientSettings};
use routing_engine::core::model::*;
use routing_engine::core::ports::{Admission, Cache, PortError, TableStore};
use routing_engine::core::router::{NetworkSource, Outcome, RouteRequest, Router, RouterSettings};
use routing_engine::core::table::RoutingTable;
use tokio::time::Instant;
use tracing_subscriber::layer::SubscriberExt;

// === Fixtures ===

fn redis_url() -> String {
    common::services::redis_url()
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

/// Held by every test that makes the limits module log. A callsite's
/// interest is cached when a thread first reaches it; if a test without a
/// subscriber reaches it while another test is installing its counting one,
/// the cache can keep "no one listens" and the counting test misses events.
static LIMITS_LOGS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// === Shared limits ===

/// One admission the limiter logged: operator, parts and Redis time.
#[derive(Clone, Debug)]
struct Logged {
    operator: String,
    parts: u32,
    at_us: u64,
}

/// The Redis cache as the router sees it, noting the Redis time at which the
/// script logged each admission it hands out.
struct Stamped {
    redis: Arc<RedisCache>,
    logged: Mutex<Vec<Logged>>,
}

#[async_trait]
impl Cache for Stamped {
    async fn acquire(
        &self,
        operator_id: &str,
        limit: u32,
        parts: u32,
    ) -> Result<Admission, PortError> {
        let (admission, at) = self.redis.acquire_logged(operator_id, limit, parts).await?;
        if let Some(at_us) = at {
            self.logged.lock().unwrap().push(Logged {
                operator: operator_id.to_owned(),
                parts: parts.max(1),
                at_us,
            });
        }
        Ok(admission)
    }

    async fn ported_network(&self, e164: &str) -> Result<Option<Option<String>>, PortError> {
        self.redis.ported_network(e164).await
    }

    async fn remember_ported(&self, e164: &str, network: Option<&str>) -> Result<(), PortError> {
        self.redis.remember_ported(e164, network).await
    }
}

/// The most parts in any window `(t - 1 s, t]`, from admissions in time
/// order; the busiest window always ends at an admission.
fn busiest_second(logged: &[&Logged]) -> u32 {
    let mut most = 0;
    let mut first = 0;
    let mut inside = 0;
    for a in logged {
        inside += a.parts;
        while logged[first].at_us + 1_000_000 <= a.at_us {
            inside -= logged[first].parts;
            first += 1;
        }
        most = most.max(inside);
    }
    most
}

/// Parts admitted at Redis times in `[from_us, to_us)`.
fn parts_between(logged: &[&Logged], from_us: u64, to_us: u64) -> u32 {
    logged
        .iter()
        .filter(|a| (from_us..to_us).contains(&a.at_us))
        .map(|a| a.parts)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_never_exceed_a_limit_in_any_second() {
    // Two replicas share one Redis and each get half the traffic, of 1-, 2-
    // and 3-part messages, far above both limits. The script dates every
    // admission by Redis's clock, so every window (t - 1 s, t] can be
    // checked: none holds more than the limit. The idle operator's first
    // burst of its whole limit passes at once, and after it the operator
    // carries at least 90 % of its limit every second.
    let (limit_a, limit_b) = (30, 15);
    let prefix = unique_prefix("two-routers");
    let store = Arc::new(MapStore::default());
    // The router admits when the limiter fails, so a timed-out call would
    // break the bound; a generous timeout keeps this about the limiter.
    let mut caches = Vec::new();
    for _ in 0..2 {
        let mut settings = settings(&redis_url(), &prefix);
        settings.call_timeout = Duration::from_secs(2);
        let redis = Arc::new(RedisCache::connect(settings).await.unwrap());
        caches.push(Arc::new(Stamped {
            redis,
            logged: Mutex::default(),
        }));
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
    let run_for = Duration::from_millis(4_500);
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
                let outcome = router.route(&request(UK_THREE, parts)).await;
                seen.push((worker % 2, outcome));
            }
            seen
        }));
    }

    let mut decided: HashMap<String, usize> = HashMap::new();
    let mut throttled_all = 0;
    let mut by_router = [0u32; 2];
    for task in tasks {
        for (replica, outcome) in task.await.unwrap() {
            match outcome {
                Ok(d) => {
                    by_router[replica] += 1;
                    *decided.entry(d.operator.id).or_default() += 1;
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
    let stats: Vec<_> = caches.iter().map(|c| c.redis.stats()).collect();
    assert!(
        stats.iter().all(|s| s.errors == 0 && s.corrupt == 0),
        "every limiter call answered: {stats:?}"
    );

    let mut logged: Vec<Logged> = caches
        .iter()
        .flat_map(|c| c.logged.lock().unwrap().clone())
        .collect();
    logged.sort_by_key(|a| a.at_us);
    for (op, limit) in [("op-a", limit_a), ("op-b", limit_b)] {
        let mine: Vec<&Logged> = logged.iter().filter(|a| a.operator == op).collect();
        assert_eq!(
            mine.len(),
            decided.get(op).copied().unwrap_or(0),
            "{op}: every decision is a logged admission"
        );
        let first_us = mine.first().expect("some admissions").at_us;
        let last_us = mine.last().unwrap().at_us;
        let busiest = busiest_second(&mine);
        let burst = parts_between(&mine, first_us, first_us + 200_000);
        let seconds = ((last_us - first_us) / 1_000_000).saturating_sub(1);
        let steady = parts_between(
            &mine,
            first_us + 1_000_000,
            first_us + (1 + seconds) * 1_000_000,
        );
        let rate = f64::from(steady) / seconds as f64;
        println!(
            "{op} limit {limit}/s: busiest 1 s window {busiest} parts; first 200 ms {burst} \
             parts; steady {rate:.1} parts/s over {seconds} s ({:.0} %)",
            100.0 * rate / f64::from(limit)
        );

        assert!(busiest <= limit, "{op}: {busiest} parts in one second");
        assert_eq!(burst, limit, "{op}: the first burst takes the whole limit");
        assert!(seconds >= 2, "{op}: only {seconds} s of steady traffic");
        assert!(
            rate >= 0.9 * f64::from(limit),
            "{op}: {rate:.1} parts/s of {limit}"
        );
    }
}

#[tokio::test]
async fn a_burst_is_admitted_then_candidates_are_skipped_then_all_throttled() {
    // An idle operator admits its whole limit at once, counting every part;
    // then the router skips the operator, and with every candidate at its
    // limit the request is refused as throttled.
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
    let RouteError::AllThrottled { operator_ids, .. } = &refused else {
        panic!("{refused:?}");
    };
    let mut operator_ids = operator_ids.clone();
    operator_ids.sort();
    assert_eq!(
        operator_ids,
        ["op-a", "op-b"],
        "both skipped at their limit"
    );

    // Nothing leaves either window until its first admission is 1 s old.
    let took = start.elapsed();
    assert!(took < Duration::from_millis(900), "the burst took {took:?}");
    assert_eq!(cache.stats().corrupt, 0);
}

// === Untrusted values ===

/// A member of an admission log as the script writes it.
fn member(cumulative: u64, parts: u32) -> String {
    format!("{cumulative:016}:{parts}")
}

/// Redis's clock, in microseconds since the epoch.
async fn redis_now_us(raw: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(raw).await.unwrap();
    s * 1_000_000 + us
}

#[tokio::test]
async fn garbage_in_limit_keys_is_rebuilt_and_limits_still_hold() {
    // Whatever sits in an operator's log or total (wrong type, a total that
    // is not a count, members that do not decode, a total the members do
    // not add up to) is rebuilt as an empty log and counted; a valid log
    // written by hand is taken as it is, and the limit then holds as usual.
    let prefix = unique_prefix("log-garbage");
    let cache = cache(&prefix).await;
    let mut raw = raw_connection(&redis_url()).await;
    let log = format!("{prefix}:tps:{{op-a}}:log");
    let total = format!("{prefix}:tps:{{op-a}}:parts");
    let now = redis_now_us(&mut raw).await;
    let zadd =
        |score: u64, member: &str| redis::cmd("ZADD").arg(&log).arg(score).arg(member).clone();
    let set_total = |value: &str| redis::cmd("SET").arg(&total).arg(value).clone();

    let garbage: Vec<Vec<redis::Cmd>> = vec![
        vec![set_total("garbage")],
        vec![set_total("")],
        vec![set_total("-5")],
        vec![set_total("1.5")],
        vec![set_total("1e3")],
        vec![set_total("nan")],
        vec![set_total("99999999999999999999")],
        vec![set_total("7")],
        vec![redis::cmd("RPUSH").arg(&total).arg("0").clone()],
        vec![redis::cmd("SET").arg(&log).arg("garbage").clone()],
        vec![hset(&log, &[("t", "5")]), set_total("0")],
        vec![zadd(now, "junk"), set_total("1")],
        vec![zadd(now, &member(0, 0)), set_total("0")],
        vec![zadd(now, "1:1"), set_total("1")],
        vec![zadd(now, &member(1, 2)), set_total("2")],
        vec![zadd(now, &member(3, 3)), set_total("5")],
        vec![zadd(now, &member(3, 3)), set_total("2")],
        vec![zadd(now, &member(3, 3))],
        vec![zadd(now + 9_000_000_000, &member(1, 1)), set_total("1")],
        vec![zadd(now - 5_000_000, "junk"), set_total("0")],
        vec![zadd(now - 5_000_000, &member(2, 2)), set_total("1")],
    ];
    for (n, cmds) in garbage.iter().enumerate() {
        redis::cmd("DEL")
            .arg(&log)
            .arg(&total)
            .exec_async(&mut raw)
            .await
            .unwrap();
        for cmd in cmds {
            cmd.exec_async(&mut raw).await.unwrap();
        }
        let admitted = cache.acquire("op-a", 10, 1).await.unwrap();
        assert_eq!(admitted, Admission::Admitted, "garbage #{n}: {cmds:?}");
        assert_eq!(cache.stats().corrupt, n as u64 + 1, "garbage #{n} counted");

        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(&log)
            .arg(0)
            .arg(-1)
            .query_async(&mut raw)
            .await
            .unwrap();
        let parts: String = redis::cmd("GET")
            .arg(&total)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(
            (members, parts.as_str()),
            (vec![member(1, 1)], "1"),
            "garbage #{n} rebuilt"
        );
    }

    // A valid log: 3 parts 100 ms ago, 2 expired parts before them. It is
    // kept, the expired parts subtracted, and 1 part more fills a limit of 4.
    let corrupt = cache.stats().corrupt;
    let now = redis_now_us(&mut raw).await;
    redis::cmd("DEL")
        .arg(&log)
        .exec_async(&mut raw)
        .await
        .unwrap();
    zadd(now - 2_000_000, &member(2, 2))
        .exec_async(&mut raw)
        .await
        .unwrap();
    zadd(now - 100_000, &member(5, 3))
        .exec_async(&mut raw)
        .await
        .unwrap();
    set_total("5").exec_async(&mut raw).await.unwrap();
    assert_eq!(
        cache.acquire("op-a", 4, 1).await.unwrap(),
        Admission::Admitted
    );
    assert_eq!(
        cache.acquire("op-a", 4, 1).await.unwrap(),
        Admission::Throttled
    );
    assert_eq!(
        cache.stats().corrupt,
        corrupt,
        "a valid log is no corruption"
    );

    // A limit lowered below what the window holds throttles, it is not
    // corruption: replicas may briefly run different tables.
    assert_eq!(
        cache.acquire("op-a", 2, 1).await.unwrap(),
        Admission::Throttled
    );
    assert_eq!(cache.stats().corrupt, corrupt);

    // The rebuilt log is empty: 2 parts at once, then nothing within the
    // second.
    redis::cmd("SET")
        .arg(&log)
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
    assert!(took < Duration::from_millis(900), "6 calls took {took:?}");
    assert_eq!(admitted, 2);

    for key in [&log, &total] {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!((1..=2_000).contains(&ttl), "{key}: TTL {ttl} ms");
    }
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
    // A portability entry that does not decode, is not a string, names a
    // network of another country or an implausible name, is counted and
    // ignored: the store answers and the entry is rewritten.
    let prefix = unique_prefix("ported-garbage");
    let cache = cache(&prefix).await;
    let store = Arc::new(MapStore::with(&[(UK_THREE, "44:EE")]));
    let router = router(source(100, 100), cache.clone(), store.clone());
    let mut raw = raw_connection(&redis_url()).await;
    let key = format!("{prefix}:ported:{UK_THREE}");

    let junk: Vec<redis::Cmd> = [
        "x",
        "",
        "N",
        "p:",
        "p:EE",
        "p:44:",
        "p:4444:EE",
        "44:EE",
        "p:99:Nowhere",
        "p:44:E\x1bE",
        "p:44:\"EE\"",
    ]
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
    let _serial = LIMITS_LOGS.lock().await;
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

    assert_eq!(burst(30).await, 20, "shared limit of 20");
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

    // The restarted server kept nothing: a fresh shared limit of 20.
    let back = burst(30).await;
    println!(
        "redis back after {:.2} s: {back} of 30 admitted",
        start.elapsed().as_secs_f64()
    );
    assert!((19..=21).contains(&back), "{back}");
}

#[tokio::test]
async fn redis_state_is_known_without_traffic() {
    // `/ready` reads whether Redis answers: a check on a timer, with no
    // request at all, must notice both an outage and the return, and never
    // touch the cache counters that the metrics report.
    let _serial = LIMITS_LOGS.lock().await;
    let mut server = OwnRedis::start("Pw-idle-7d21").unwrap();
    let shared = Arc::new(
        RedisCache::connect(settings(&server.url("Pw-idle-7d21"), "idle"))
            .await
            .unwrap(),
    );
    let resilient = ResilientCache::new(
        shared.clone(),
        Arc::new(SystemClock),
        ResilientSettings {
            replicas: 1,
            probe_interval_ms: 100,
        },
    );

    resilient.check_shared().await;
    assert!(!resilient.is_degraded());

    server.stop();
    resilient.check_shared().await;
    assert!(resilient.is_degraded(), "an idle outage is noticed");

    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while resilient.is_degraded() {
        assert!(Instant::now() < deadline, "the return was not noticed");
        tokio::time::sleep(Duration::from_millis(150)).await;
        resilient.check_shared().await;
    }
    let stats = shared.stats();
    assert_eq!((stats.hits, stats.misses, stats.corrupt), (0, 0, 0));
}
