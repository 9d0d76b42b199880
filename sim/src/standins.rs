//! In-memory stand-ins for PostgreSQL, Redis and NATS, each serving from a
//! node of its own, and the clients a replica reaches them through, which
//! implement the core's `TableStore`, `Cache` and `HealthBus`.
//!
//! State lives on the stand-in's node and faults reach it over the
//! simulated network; the knobs add latency, errors, corruption, delay,
//! loss, duplication and late redelivery where the real systems would.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use madsim::net::Endpoint;
use madsim::rand::Rng;
use routing_engine::core::health::{HealthEvent, HealthStatus};
use routing_engine::core::limits::LocalLimiter;
use routing_engine::core::model::TableSource;
use routing_engine::core::ports::{
    Admission, BusMessage, Cache, Clock, HealthBus, PortError, TableStore,
};
use routing_engine::core::table::is_network_name;

use crate::clock::{SimClock, SimTime};
use crate::faults::Knobs;
use crate::rpc::{self, RpcClient, RpcError};

pub const DB_TAG: u64 = 1;
pub const REDIS_TAG: u64 = 2;
pub const NATS_TAG: u64 = 3;
pub const PORT: u16 = 7000;

/// How long a replica waits for PostgreSQL and NATS, and for Redis.
const DB_TIMEOUT: Duration = Duration::from_millis(500);
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How often a replica asks NATS for new health events.
pub const NATS_POLL: Duration = Duration::from_millis(100);

// === PostgreSQL ===

pub enum DbRequest {
    Load,
    Version,
    Ported(String),
    /// An administrator's change: replaces the table and bumps the version.
    Commit(TableSource),
}

pub enum DbAnswer {
    Table(TableSource),
    Version(u64),
    Ported(Option<String>),
    Committed { version: u64, at_ms: i64 },
    Failed(String),
}

struct DbState {
    source: TableSource,
}

/// Serves the routing table and ported numbers until the run ends.
pub async fn db_node(
    source: Arc<TableSource>,
    ported: Arc<HashMap<String, String>>,
    knobs: Arc<Knobs>,
    time: SimTime,
) {
    let endpoint = Endpoint::bind(("0.0.0.0", PORT)).await.expect("bind");
    let state = Arc::new(Mutex::new(DbState {
        source: (*source).clone(),
    }));
    let handler = move |request: DbRequest| {
        let (state, ported, knobs) = (state.clone(), ported.clone(), knobs.clone());
        async move { db_answer(request, &state, &ported, &knobs, time).await }
    };
    rpc::serve(endpoint, DB_TAG, handler).await;
}

async fn db_answer(
    request: DbRequest,
    state: &Mutex<DbState>,
    ported: &HashMap<String, String>,
    knobs: &Knobs,
    time: SimTime,
) -> DbAnswer {
    if let DbRequest::Commit(mut source) = request {
        let mut state = state.lock().expect("db state");
        source.version = state.source.version + 1;
        state.source = source;
        let version = state.source.version;
        return DbAnswer::Committed {
            version,
            at_ms: time.now_ms(),
        };
    }

    let latency = knobs.db_latency_ms.get();
    if latency > 0.0 {
        tokio::time::sleep(Duration::from_millis(latency as u64)).await;
    }
    if knobs.db_errors.strikes() {
        return DbAnswer::Failed("query failed: connection reset by peer".into());
    }

    let state = state.lock().expect("db state");
    match request {
        DbRequest::Load => DbAnswer::Table(state.source.clone()),
        DbRequest::Version => DbAnswer::Version(state.source.version),
        DbRequest::Ported(e164) => DbAnswer::Ported(ported.get(&e164).cloned()),
        DbRequest::Commit(_) => DbAnswer::Failed("commit handled above".into()),
    }
}

/// A replica's view of PostgreSQL.
pub struct SimStore {
    rpc: RpcClient,
}

impl SimStore {
    pub fn new(endpoint: Endpoint, server: std::net::SocketAddr) -> SimStore {
        SimStore {
            rpc: RpcClient::new(endpoint, server, DB_TIMEOUT),
        }
    }

    async fn ask(&self, request: DbRequest) -> Result<DbAnswer, PortError> {
        let answer = self
            .rpc
            .call(DB_TAG, request)
            .await
            .map_err(port_error("postgres"))?;
        match answer {
            DbAnswer::Failed(detail) => Err(PortError::Unavailable {
                what: "postgres",
                detail,
            }),
            answer => Ok(answer),
        }
    }
}

fn port_error(what: &'static str) -> impl Fn(RpcError) -> PortError {
    move |e| match e {
        RpcError::Timeout(after) => PortError::Timeout { what, after },
        other => PortError::Unavailable {
            what,
            detail: other.to_string(),
        },
    }
}

fn unexpected(what: &'static str) -> PortError {
    PortError::Corrupt {
        what,
        detail: "unexpected answer".into(),
    }
}

#[async_trait]
impl TableStore for SimStore {
    async fn load(&self) -> Result<TableSource, PortError> {
        match self.ask(DbRequest::Load).await? {
            DbAnswer::Table(source) => Ok(source),
            _ => Err(unexpected("postgres")),
        }
    }

    async fn version(&self) -> Result<u64, PortError> {
        match self.ask(DbRequest::Version).await? {
            DbAnswer::Version(v) => Ok(v),
            _ => Err(unexpected("postgres")),
        }
    }

    async fn ported_network(&self, e164: &str) -> Result<Option<String>, PortError> {
        match self.ask(DbRequest::Ported(e164.to_owned())).await? {
            DbAnswer::Ported(network) => Ok(network),
            _ => Err(unexpected("postgres")),
        }
    }
}

// === Redis ===

pub enum RedisRequest {
    Acquire {
        operator_id: String,
        limit: u32,
        parts: u32,
    },
    Get(String),
    Set(String, Vec<u8>),
}

pub enum RedisAnswer {
    Admission(Admission),
    Value(Option<Vec<u8>>),
    Done,
}

/// Serves shared limits (the core's sliding-window log on this node's
/// clock, as the Redis script keeps it) and the portability cache.
pub async fn redis_node(knobs: Arc<Knobs>, time: SimTime) {
    let endpoint = Endpoint::bind(("0.0.0.0", PORT)).await.expect("bind");
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(time, 0, Arc::new(AtomicI64::new(0))));
    let limiter = Arc::new(LocalLimiter::new(clock));
    let values = Arc::new(Mutex::new(HashMap::<String, Vec<u8>>::new()));
    let handler = move |request: RedisRequest| {
        let (limiter, values, knobs) = (limiter.clone(), values.clone(), knobs.clone());
        async move { redis_answer(request, &limiter, &values, &knobs).await }
    };
    rpc::serve(endpoint, REDIS_TAG, handler).await;
}

async fn redis_answer(
    request: RedisRequest,
    limiter: &LocalLimiter,
    values: &Mutex<HashMap<String, Vec<u8>>>,
    knobs: &Knobs,
) -> RedisAnswer {
    let latency = knobs.redis_latency_ms.get();
    if latency > 0.0 {
        tokio::time::sleep(Duration::from_millis(latency as u64)).await;
    }
    match request {
        RedisRequest::Acquire {
            operator_id,
            limit,
            parts,
        } => RedisAnswer::Admission(limiter.acquire(&operator_id, f64::from(limit), parts)),
        RedisRequest::Get(key) => {
            let value = values.lock().expect("redis values").get(&key).cloned();
            let corrupt = value.is_some() && knobs.redis_corrupt.strikes();
            RedisAnswer::Value(value.map(|v| if corrupt { corrupted(&v) } else { v }))
        }
        RedisRequest::Set(key, value) => {
            values.lock().expect("redis values").insert(key, value);
            RedisAnswer::Done
        }
    }
}

/// What a torn write looks like when read back: a cut value ending in a
/// byte that is not UTF-8.
// Limitation: a corruption that still reads as a well-formed `p:cc:Name`
// is not modelled; neither the real adapter nor this client could tell.
fn corrupted(value: &[u8]) -> Vec<u8> {
    let mut bytes: Vec<u8> = value.iter().copied().take(3).collect();
    bytes.push(0xfe);
    bytes
}

/// A replica's view of Redis; reads are validated as the real adapter does.
pub struct SimCache {
    rpc: RpcClient,
}

/// The cached form of "not ported"; a ported network is `p:cc:Name`, as
/// the real adapter writes them.
const NOT_PORTED: &[u8] = b"n";

impl SimCache {
    pub fn new(endpoint: Endpoint, server: std::net::SocketAddr) -> SimCache {
        SimCache {
            rpc: RpcClient::new(endpoint, server, REDIS_TIMEOUT),
        }
    }

    async fn ask(&self, request: RedisRequest) -> Result<RedisAnswer, PortError> {
        self.rpc
            .call(REDIS_TAG, request)
            .await
            .map_err(port_error("redis"))
    }
}

/// Reads a cached value back as the real adapter does: `n`, or `p:` and a
/// network name the core accepts; anything else is corrupt.
fn parse_cached(raw: &[u8]) -> Result<Option<String>, PortError> {
    if raw == NOT_PORTED {
        return Ok(None);
    }
    let network = std::str::from_utf8(raw)
        .ok()
        .and_then(|text| text.strip_prefix("p:"))
        .filter(|net| is_network_name(net));
    match network {
        Some(net) => Ok(Some(net.to_owned())),
        None => Err(PortError::Corrupt {
            what: "redis",
            detail: "cached network is not p:cc:Name".into(),
        }),
    }
}

#[async_trait]
impl Cache for SimCache {
    async fn acquire(
        &self,
        operator_id: &str,
        limit: u32,
        parts: u32,
    ) -> Result<Admission, PortError> {
        let request = RedisRequest::Acquire {
            operator_id: operator_id.to_owned(),
            limit,
            parts,
        };
        match self.ask(request).await? {
            RedisAnswer::Admission(a) => Ok(a),
            _ => Err(unexpected("redis")),
        }
    }

    async fn ported_network(&self, e164: &str) -> Result<Option<Option<String>>, PortError> {
        match self.ask(RedisRequest::Get(e164.to_owned())).await? {
            RedisAnswer::Value(None) => Ok(None),
            RedisAnswer::Value(Some(raw)) => parse_cached(&raw).map(Some),
            _ => Err(unexpected("redis")),
        }
    }

    async fn remember_ported(&self, e164: &str, network: Option<&str>) -> Result<(), PortError> {
        let value = match network {
            Some(net) => format!("p:{net}").into_bytes(),
            None => NOT_PORTED.to_vec(),
        };
        self.ask(RedisRequest::Set(e164.to_owned(), value)).await?;
        Ok(())
    }
}

// === NATS ===

pub enum NatsRequest {
    Publish {
        operator_id: String,
        status: HealthStatus,
    },
    Fetch {
        replica: usize,
        cursor: usize,
    },
}

pub enum NatsAnswer {
    Published {
        at_ms: i64,
    },
    Events {
        events: Vec<HealthEvent>,
        next: usize,
    },
}

#[derive(Default)]
struct Stream {
    /// `(published at, event)` in publication order.
    log: Vec<(i64, HealthEvent)>,
    sequences: BTreeMap<String, u64>,
    /// Older events to deliver late, per replica: `(due at, event)`.
    late: BTreeMap<usize, Vec<(i64, HealthEvent)>>,
}

/// Keeps the health stream and hands each replica what it has not seen.
pub async fn nats_node(knobs: Arc<Knobs>, time: SimTime) {
    let endpoint = Endpoint::bind(("0.0.0.0", PORT)).await.expect("bind");
    let stream = Arc::new(Mutex::new(Stream::default()));
    let handler = move |request: NatsRequest| {
        let (stream, knobs) = (stream.clone(), knobs.clone());
        async move {
            let mut stream = stream.lock().expect("nats stream");
            nats_answer(request, &mut stream, &knobs, time.now_ms())
        }
    };
    rpc::serve(endpoint, NATS_TAG, handler).await;
}

fn nats_answer(
    request: NatsRequest,
    stream: &mut Stream,
    knobs: &Knobs,
    now_ms: i64,
) -> NatsAnswer {
    match request {
        NatsRequest::Publish {
            operator_id,
            status,
        } => {
            let sequence = stream.sequences.entry(operator_id.clone()).or_insert(0);
            *sequence += 1;
            let event = HealthEvent {
                operator_id,
                status,
                sequence: *sequence,
                observed_at_ms: now_ms,
                reason: "simulated".into(),
            };
            stream.log.push((now_ms, event));
            NatsAnswer::Published { at_ms: now_ms }
        }
        NatsRequest::Fetch { replica, cursor } => fetch(stream, knobs, replica, cursor, now_ms),
    }
}

fn fetch(
    stream: &mut Stream,
    knobs: &Knobs,
    replica: usize,
    cursor: usize,
    now_ms: i64,
) -> NatsAnswer {
    let visible_until = now_ms - knobs.nats_delay_ms.get() as i64;
    let mut rng = madsim::rand::thread_rng();
    let mut events = Vec::new();
    let mut late = Vec::new();
    let mut next = cursor;
    for (i, (at_ms, event)) in stream.log.iter().enumerate().skip(cursor) {
        if *at_ms > visible_until {
            break;
        }
        next += 1;
        if knobs.nats_drop.strikes() {
            continue;
        }
        events.push(event.clone());
        if knobs.nats_duplicate.strikes() {
            events.push(event.clone());
        }
        if knobs.nats_reorder.strikes() {
            if let Some(older) = earlier_other_status(&stream.log[..i], event, now_ms) {
                let due = now_ms + rng.gen_range(200..1_500);
                late.push((due, older));
            }
        }
    }

    let mut held = stream.late.remove(&replica).unwrap_or_default();
    held.append(&mut late);
    let late = stream.late.entry(replica).or_insert(held);
    let (due, waiting): (Vec<_>, Vec<_>) = late.drain(..).partition(|(at, _)| *at <= now_ms);
    *late = waiting;
    events.extend(due.into_iter().map(|(_, e)| e));
    NatsAnswer::Events { events, next }
}

/// The last event before `event` for the same operator with another status,
/// from the last 20 s: the one whose late arrival would do harm.
fn earlier_other_status(
    log: &[(i64, HealthEvent)],
    event: &HealthEvent,
    now_ms: i64,
) -> Option<HealthEvent> {
    log.iter()
        .rev()
        .take_while(|(at, _)| *at >= now_ms - 20_000)
        .find(|(_, e)| e.operator_id == event.operator_id && e.status != event.status)
        .map(|(_, e)| e.clone())
}

/// A replica's health bus: polls NATS, reporting when it loses or regains it.
pub struct SimBus {
    rpc: RpcClient,
    replica: usize,
    cursor: usize,
    connected: bool,
    queue: VecDeque<BusMessage>,
}

impl SimBus {
    pub fn new(endpoint: Endpoint, server: std::net::SocketAddr, replica: usize) -> SimBus {
        SimBus {
            rpc: RpcClient::new(endpoint, server, DB_TIMEOUT),
            replica,
            cursor: 0,
            connected: false,
            queue: VecDeque::new(),
        }
    }
}

#[async_trait]
impl HealthBus for SimBus {
    async fn next(&mut self) -> Option<BusMessage> {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return Some(message);
            }
            let request = NatsRequest::Fetch {
                replica: self.replica,
                cursor: self.cursor,
            };
            match self.rpc.call::<_, NatsAnswer>(NATS_TAG, request).await {
                Ok(NatsAnswer::Events { events, next }) => {
                    if !self.connected {
                        self.connected = true;
                        self.queue.push_back(BusMessage::Connected);
                    }
                    self.cursor = next;
                    self.queue.extend(events.into_iter().map(BusMessage::Event));
                }
                Ok(NatsAnswer::Published { .. }) => {}
                Err(_) if self.connected => {
                    self.connected = false;
                    return Some(BusMessage::Disconnected);
                }
                Err(_) => {}
            }
            if self.queue.is_empty() {
                tokio::time::sleep(NATS_POLL).await;
            }
        }
    }
}
