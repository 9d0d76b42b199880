//! The simulated world of one run: the stand-in nodes, the replicas running
//! the service's real router and gRPC service, the sms-orchestrator
//! clients, and the controller that injects the planned faults.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::{Endpoint, NetSim};
use madsim::rand::Rng;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use routing_engine::core::health::HealthStatus;
use routing_engine::core::health_feed;
use routing_engine::core::limits::{ResilientCache, ResilientSettings};
use routing_engine::core::model::{RuleTarget, TableSource};
use routing_engine::core::ports::{Clock, TableStore};
use routing_engine::core::reload::{self, ReloadSettings};
use routing_engine::core::router::{Router, RouterSettings};
use routing_engine::metrics::Metrics;
use routing_engine::proto::routing_engine_client::RoutingEngineClient;
use routing_engine::proto::routing_engine_server::RoutingEngineServer;
use routing_engine::proto::{SelectOperatorRequest, SelectOperatorResponse};
use routing_engine::server::grpc::RoutingService;
use tokio::sync::Notify;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::checker::{Answer, Checker, Record, Routed, TableEntry, Truth, HEARTBEAT_MS};
use crate::clock::{SimClock, SimTime};
use crate::data::Data;
use crate::faults::{Fault, FaultSet, Knobs, Window};
use crate::rpc::RpcClient;
use crate::standins::{
    self, DbAnswer, DbRequest, NatsAnswer, NatsRequest, SimBus, SimCache, SimStore,
};

const GRPC_PORT: u16 = 50051;
/// A client's wait for one replica, and for the whole request.
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(1);
/// Clients stop sending this long before the end, so every request ends.
const DRAIN_MS: i64 = 4_000;

/// What a run is made of.
pub struct Setup {
    pub duration_ms: i64,
    pub heal_ms: i64,
    pub replicas: usize,
    pub clients: usize,
    pub rate: u32,
    pub base_unix_ms: i64,
    pub faults: FaultSet,
    pub data: Arc<Data>,
    pub burst_rows: Arc<Vec<usize>>,
}

/// What a run leaves behind.
pub struct Output {
    pub truth: Truth,
    pub checker: Checker,
    pub events: Vec<String>,
}

/// Everything the nodes of one run share: the harness's bookkeeping, never
/// the service's state.
struct World {
    setup: Arc<Setup>,
    time: SimTime,
    knobs: Arc<Knobs>,
    offsets: Vec<Arc<AtomicI64>>,
    truth: Mutex<Truth>,
    checker: Mutex<Checker>,
    events: Mutex<Vec<String>>,
}

impl World {
    fn log(&self, line: String) {
        let at = self.time.now_ms();
        self.events
            .lock()
            .expect("events")
            .push(format!("{at:>6} {line}"));
    }
}

fn ip(group: u8, index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, group, index as u8 + 1))
}

const DB: (u8, usize) = (0, 1);
const REDIS: (u8, usize) = (0, 2);
const NATS: (u8, usize) = (0, 3);
const OPS: (u8, usize) = (0, 4);

fn standin_addr(at: (u8, usize)) -> SocketAddr {
    SocketAddr::new(ip(at.0, at.1), standins::PORT)
}

/// The node ids the controller acts on.
#[derive(Clone)]
struct Nodes {
    db: NodeId,
    redis: NodeId,
    nats: NodeId,
    replicas: Vec<NodeId>,
    clients: Vec<NodeId>,
}

/// Runs one simulation to its end.
pub async fn run(setup: Arc<Setup>) -> Output {
    let time = SimTime::start_now();
    let data = setup.data.clone();
    let mut truth = Truth {
        base_unix_ms: setup.base_unix_ms,
        offsets: vec![Vec::new(); setup.replicas],
        windows: crate::faults::plan(&setup.faults, setup.heal_ms, setup.replicas, setup.clients),
        heal_ms: setup.heal_ms,
        ..Truth::default()
    };
    let entry = TableEntry {
        source: data.source.clone(),
        valid: true,
        at_ms: 0,
    };
    truth.tables.insert(data.source.version, entry);
    let world = Arc::new(World {
        setup: setup.clone(),
        time,
        knobs: Arc::new(Knobs::default()),
        offsets: (0..setup.replicas)
            .map(|_| Arc::new(AtomicI64::new(0)))
            .collect(),
        truth: Mutex::new(truth),
        checker: Mutex::new(Checker::new(
            Arc::new(data.rows.clone()),
            data.passwords.clone(),
        )),
        events: Mutex::new(Vec::new()),
    });

    let nodes = start_nodes(&world);
    let ops = Handle::current()
        .create_node()
        .name("operations")
        .ip(ip(OPS.0, OPS.1))
        .init({
            let (world, nodes) = (world.clone(), nodes.clone());
            move || control(world.clone(), nodes.clone())
        })
        .build();
    tokio::time::sleep(Duration::from_millis(setup.duration_ms as u64)).await;
    drop(ops);

    let truth = std::mem::take(&mut *world.truth.lock().expect("truth"));
    let checker = std::mem::replace(
        &mut *world.checker.lock().expect("checker"),
        Checker::new(Arc::new(Vec::new()), Vec::new()),
    );
    let events = std::mem::take(&mut *world.events.lock().expect("events"));
    Output {
        truth,
        checker,
        events,
    }
}

fn start_nodes(world: &Arc<World>) -> Nodes {
    let handle = Handle::current();
    let (knobs, time, data) = (world.knobs.clone(), world.time, world.setup.data.clone());

    let db = handle
        .create_node()
        .name("postgres")
        .ip(ip(DB.0, DB.1))
        .init({
            let (knobs, data) = (knobs.clone(), data.clone());
            move || {
                standins::db_node(
                    data.source.clone(),
                    data.ported.clone(),
                    knobs.clone(),
                    time,
                )
            }
        })
        .build();
    let redis = handle
        .create_node()
        .name("redis")
        .ip(ip(REDIS.0, REDIS.1))
        .init({
            let knobs = knobs.clone();
            move || standins::redis_node(knobs.clone(), time)
        })
        .build();
    let nats = handle
        .create_node()
        .name("nats")
        .ip(ip(NATS.0, NATS.1))
        .init(move || standins::nats_node(knobs.clone(), time))
        .build();

    let replicas = (0..world.setup.replicas)
        .map(|r| {
            let world = world.clone();
            let node = handle
                .create_node()
                .name(format!("replica-{r}"))
                .ip(ip(1, r));
            node.init(move || replica(world.clone(), r)).build().id()
        })
        .collect();
    let clients = (0..world.setup.clients)
        .map(|c| {
            let world = world.clone();
            let node = handle
                .create_node()
                .name(format!("orchestrator-{c}"))
                .ip(ip(2, c));
            node.init(move || client(world.clone(), c)).build().id()
        })
        .collect();
    Nodes {
        db: db.id(),
        redis: redis.id(),
        nats: nats.id(),
        replicas,
        clients,
    }
}

// === routing-engine replica ===

/// One replica: the service's router, reloader, health feed and gRPC
/// service, over the stand-ins' clients. A restart runs this again.
async fn replica(world: Arc<World>, r: usize) {
    let setup = &world.setup;
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(
        world.time,
        setup.base_unix_ms,
        world.offsets[r].clone(),
    ));
    let endpoint = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let store = Arc::new(SimStore::new(endpoint.clone(), standin_addr(DB)));
    let shared = Arc::new(SimCache::new(endpoint.clone(), standin_addr(REDIS)));
    let limits = ResilientSettings {
        replicas: setup.replicas as u32,
        probe_interval_ms: 1_000,
    };
    let cache = Arc::new(ResilientCache::new(shared, clock.clone(), limits));
    let settings = RouterSettings {
        health_stale_after_ms: 10_000,
        store_lookup_timeout: Duration::from_millis(100),
    };
    let router = Router::new(clock, settings)
        .with_cache(cache)
        .with_store(store.clone());
    let router = Arc::new(router);
    let metrics = Arc::new(Metrics::new().expect("metrics registry"));

    let bus = SimBus::new(endpoint, standin_addr(NATS), r);
    tokio::spawn(health_feed::run(router.clone(), bus, metrics.clone()));
    let service = RoutingEngineServer::new(RoutingService::new(router.clone(), metrics.clone()));
    tokio::spawn(async move {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), GRPC_PORT);
        let server = tonic::transport::Server::builder().add_service(service);
        if let Err(error) = server.serve(addr).await {
            tracing::error!(%error, "grpc server stopped");
        }
    });

    let reload = ReloadSettings {
        poll_every: Duration::from_millis(500),
        first_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
    };
    let store: Arc<dyn TableStore> = store;
    reload::first_load(&router, store.as_ref(), metrics.as_ref(), &reload).await;
    reload::watch(router, store, metrics, Arc::new(Notify::new()), reload).await;
}

// === sms-orchestrator client ===

/// One message as a client decides to send it.
#[derive(Clone)]
struct Send {
    row: usize,
    message_id: String,
    account: String,
    alphanumeric: bool,
    parts: u32,
    excluded: Vec<String>,
}

async fn client(world: Arc<World>, c: usize) {
    let setup = world.setup.clone();
    let channels: Vec<Channel> = (0..setup.replicas)
        .map(|r| {
            let uri = format!("http://{}:{GRPC_PORT}", ip(1, r));
            tonic::transport::Endpoint::from_shared(uri)
                .expect("replica uri")
                .connect_lazy()
        })
        .collect();
    let base_rate = f64::from(setup.rate) / setup.clients as f64;
    let mut n = 0u64;
    while world.time.now_ms() < setup.duration_ms - DRAIN_MS {
        let burst_rate = world.knobs.burst_rate.get() / setup.clients as f64;
        let total = base_rate + burst_rate;
        let (gap, send) = {
            let mut rng = madsim::rand::thread_rng();
            let gap = -(1.0 - rng.gen::<f64>()).ln() / total;
            let burst = rng.gen_bool((burst_rate / total).clamp(0.0, 1.0));
            (gap, pick(&setup, &mut rng, c, n, burst))
        };
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        tokio::spawn(request(world.clone(), channels.clone(), c, send));
        n += 1;
    }
}

fn pick(setup: &Setup, rng: &mut impl Rng, c: usize, n: u64, burst: bool) -> Send {
    let rows = &setup.data.rows;
    let row = if burst && !setup.burst_rows.is_empty() {
        setup.burst_rows[rng.gen_range(0..setup.burst_rows.len())]
    } else {
        rng.gen_range(0..rows.len())
    };
    let account = match rng.gen_range(0..100) {
        0..=79 => "",
        80..=91 => "acme-bank",
        _ => "promo-co",
    };
    let parts = match rng.gen_range(0..100) {
        0..=59 => 1,
        60..=79 => 2,
        80..=91 => 3,
        _ => 4,
    };
    Send {
        row,
        message_id: format!("c{c}-m{n}"),
        account: account.into(),
        alphanumeric: rng.gen_bool(0.5),
        parts,
        excluded: Vec::new(),
    }
}

/// Sends one message, trying each replica in turn until one answers, and
/// hands the answer to the checker. Some answers are retried with the
/// chosen operator excluded, as a client does when the operator fails.
async fn request(world: Arc<World>, channels: Vec<Channel>, c: usize, send: Send) {
    let row = &world.setup.data.rows[send.row];
    let message = SelectOperatorRequest {
        message_id: send.message_id.clone(),
        account_id: send.account.clone(),
        destination: row.input.clone(),
        destination_region: row.region.clone(),
        sender: if send.alphanumeric {
            "ACMEBANK"
        } else {
            "+15551234567"
        }
        .into(),
        parts: send.parts,
        exclude_operator_ids: send.excluded.clone(),
        explain: true,
    };
    let t_send = world.time.now_ms();
    let first = madsim::rand::thread_rng().gen_range(0..channels.len());
    let mut tries = Vec::new();
    let mut answer = None;
    let mut replica = first;
    for k in 0..channels.len() {
        replica = (first + k) % channels.len();
        let mut client = RoutingEngineClient::new(channels[replica].clone());
        match tokio::time::timeout(ATTEMPT_DEADLINE, client.select_operator(message.clone())).await
        {
            Ok(Ok(response)) => {
                answer = Some(Answer::Routed(routed(response.into_inner())));
                break;
            }
            Ok(Err(status)) => match status.get_details_error_info() {
                Some(info) => {
                    let text = format!("{status:?}");
                    answer = Some(Answer::Refused {
                        reason: info.reason,
                        text,
                    });
                    break;
                }
                None => tries.push((replica, format!("{:?}", status.code()))),
            },
            Err(_) => tries.push((replica, "deadline".into())),
        }
    }
    let answer = answer.unwrap_or(Answer::Unanswered(tries));

    let record = Record {
        client: c,
        message_id: send.message_id.clone(),
        row: send.row,
        account: send.account.clone(),
        alphanumeric: send.alphanumeric,
        parts: send.parts,
        excluded: send.excluded.clone(),
        t_send,
        t_recv: world.time.now_ms(),
        replica,
        answer: answer.clone(),
    };
    world.log(describe(&record));
    {
        let mut truth = world.truth.lock().expect("truth");
        let has_table = match &record.answer {
            Answer::Routed(_) => true,
            Answer::Refused { reason, .. } => reason != "NOT_READY",
            Answer::Unanswered(_) => false,
        };
        if has_table {
            truth.note_ready(record.replica, record.t_recv);
        }
        world.checker.lock().expect("checker").check(&truth, record);
    }

    let retry = send.excluded.is_empty() && madsim::rand::thread_rng().gen_bool(0.15);
    if let (Answer::Routed(d), true) = (answer, retry) {
        let mut again = send;
        again.excluded.push(d.operator);
        Box::pin(request(world, channels, c, again)).await;
    }
}

fn routed(response: SelectOperatorResponse) -> Routed {
    let text = format!("{response:?}");
    Routed {
        operator: response.operator.map(|o| o.operator_id).unwrap_or_default(),
        fallbacks: response
            .fallbacks
            .into_iter()
            .map(|o| o.operator_id)
            .collect(),
        tier: response.tier,
        version: response.routing_table_version,
        network: response.network,
        network_source: response.network_source,
        e164: response.destination_e164,
        explain: response
            .explain
            .into_iter()
            .map(|t| (t.operator_id, t.outcome, t.reason))
            .collect(),
        text,
    }
}

fn describe(record: &Record) -> String {
    let outcome = match &record.answer {
        Answer::Routed(d) => format!("{} v{} t{}", d.operator, d.version, d.tier),
        Answer::Refused { reason, .. } => reason.clone(),
        Answer::Unanswered(tries) => format!("unanswered {tries:?}"),
    };
    format!(
        "c{} {} r{} x{:?} -> {outcome}",
        record.client, record.message_id, record.replica, record.excluded
    )
}

// === the fault controller ===

/// Publishes operator health, commits table changes and applies each
/// planned fault at its time, from a node no fault reaches.
async fn control(world: Arc<World>, nodes: Nodes) {
    let endpoint = Endpoint::bind("0.0.0.0:0").await.expect("bind");
    let nats = RpcClient::new(endpoint.clone(), standin_addr(NATS), Duration::from_secs(2));
    let db = RpcClient::new(endpoint, standin_addr(DB), Duration::from_secs(5));
    let ops: Vec<String> = world
        .setup
        .data
        .source
        .operators
        .iter()
        .map(|o| o.id.clone())
        .collect();
    let status: Shared = Arc::new(tokio::sync::Mutex::new(
        ops.iter()
            .map(|id| (id.clone(), HealthStatus::Up))
            .collect(),
    ));

    skew_clocks(&world);
    tokio::spawn(heartbeat(world.clone(), nats.clone(), status.clone()));
    if let Some(mean) = world.setup.faults.knob(Fault::OperatorFlap) {
        tokio::spawn(flap(world.clone(), nats.clone(), status.clone(), mean));
    }
    let windows = world.truth.lock().expect("truth").windows.clone();
    let faults = Arc::new(Faults::new(world.clone(), nodes, db));
    for window in windows {
        tokio::spawn(faults.clone().strike(window));
    }
    std::future::pending::<()>().await;
}

fn skew_clocks(world: &World) {
    let Some(max_s) = world.setup.faults.knob(Fault::ClockSkew) else {
        return;
    };
    let mut rng = madsim::rand::thread_rng();
    let max_ms = (max_s * 1000.0) as i64;
    for (r, offset) in world.offsets.iter().enumerate() {
        let skew = if max_ms > 0 {
            rng.gen_range(-max_ms..=max_ms)
        } else {
            0
        };
        offset.store(skew, Ordering::SeqCst);
        world.truth.lock().expect("truth").offsets[r].push((0, skew));
        world.log(format!("clock-skew replica-{r} {skew} ms"));
    }
}

async fn publish(
    world: &World,
    nats: &RpcClient,
    operator: &str,
    status: HealthStatus,
) -> Option<i64> {
    let request = NatsRequest::Publish {
        operator_id: operator.to_owned(),
        status,
    };
    match nats
        .call::<_, NatsAnswer>(standins::NATS_TAG, request)
        .await
    {
        Ok(NatsAnswer::Published { at_ms }) => Some(at_ms),
        _ => {
            world.log(format!("publish {operator} {status:?} failed"));
            None
        }
    }
}

/// Every operator's current health, as the publisher last published it.
type Shared = Arc<tokio::sync::Mutex<BTreeMap<String, HealthStatus>>>;

/// Publishes every operator's current state again, as the operator
/// management service does, so a replica that missed an event catches up.
async fn heartbeat(world: Arc<World>, nats: RpcClient, status: Shared) {
    let ops: Vec<String> = status.lock().await.keys().cloned().collect();
    loop {
        for op in &ops {
            // Held while publishing, so a flip cannot slip in between the
            // read and the publication and be overtaken by a stale state.
            let held = status.lock().await;
            publish(&world, &nats, op, held[op]).await;
        }
        tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS as u64)).await;
    }
}

/// Flips a random operator between up, degraded and down until the heal.
async fn flap(world: Arc<World>, nats: RpcClient, status: Shared, mean_s: f64) {
    let ops: Vec<String> = status.lock().await.keys().cloned().collect();
    loop {
        let (gap, op, next) = {
            let mut rng = madsim::rand::thread_rng();
            let gap = -(1.0 - rng.gen::<f64>()).ln() * mean_s.max(0.1);
            let op = ops[rng.gen_range(0..ops.len())].clone();
            let next = match rng.gen_range(0..5) {
                0 | 1 => HealthStatus::Down,
                2 => HealthStatus::Degraded,
                _ => HealthStatus::Up,
            };
            (gap, op, next)
        };
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        if world.time.now_ms() >= world.setup.heal_ms {
            return;
        }
        let mut held = status.lock().await;
        held.insert(op.clone(), next);
        if let Some(at_ms) = publish(&world, &nats, &op, next).await {
            world
                .truth
                .lock()
                .expect("truth")
                .health
                .entry(op.clone())
                .or_default()
                .push((at_ms, next));
            world.log(format!("health {op} {next:?}"));
        }
    }
}

/// Applies planned faults; overlapping windows of one kind are counted so
/// the first to end does not heal the other.
struct Faults {
    world: Arc<World>,
    nodes: Nodes,
    db: RpcClient,
    active: Mutex<BTreeMap<(Fault, Option<usize>), u32>>,
    table: Mutex<TableSource>,
}

impl Faults {
    fn new(world: Arc<World>, nodes: Nodes, db: RpcClient) -> Faults {
        let table = (*world.setup.data.source).clone();
        Faults {
            world,
            nodes,
            db,
            active: Mutex::new(BTreeMap::new()),
            table: Mutex::new(table),
        }
    }

    async fn strike(self: Arc<Self>, w: Window) {
        sleep_until(&self.world, w.start_ms).await;
        let key = (w.fault, w.target);
        let first = {
            let mut active = self.active.lock().expect("active");
            let count = active.entry(key).or_insert(0);
            *count += 1;
            *count == 1
        };
        self.world.log(format!(
            "fault {} {:?} starts, knob {}",
            w.fault.name(),
            w.target,
            w.knob
        ));
        if first {
            self.begin(&w).await;
        }

        sleep_until(&self.world, w.end_ms).await;
        let last = {
            let mut active = self.active.lock().expect("active");
            let count = active.entry(key).or_insert(1);
            *count -= 1;
            *count == 0
        };
        if last {
            self.end(&w).await;
            self.world
                .log(format!("fault {} {:?} heals", w.fault.name(), w.target));
        }
    }

    async fn begin(&self, w: &Window) {
        let nodes = &self.nodes;
        match w.fault {
            Fault::DbOutage => cut(nodes.db, &nodes.replicas, true),
            Fault::RedisOutage => cut(nodes.redis, &nodes.replicas, true),
            Fault::NatsPartition => cut(nodes.nats, &nodes.replicas, true),
            Fault::ClientPartition => {
                cut(nodes.clients[w.target.unwrap_or(0)], &nodes.replicas, true)
            }
            Fault::ReplicaCrash => Handle::current().kill(nodes.replicas[w.target.unwrap_or(0)]),
            Fault::ClockJump => self.jump(w),
            Fault::RuleChange => self.change_table(true).await,
            Fault::RuleInvalid => self.change_table(false).await,
            fault => {
                if let Some(knob) = self.world.knobs.of(fault) {
                    knob.set(w.knob);
                }
            }
        }
    }

    async fn end(&self, w: &Window) {
        let nodes = &self.nodes;
        match w.fault {
            Fault::DbOutage => cut(nodes.db, &nodes.replicas, false),
            Fault::RedisOutage => cut(nodes.redis, &nodes.replicas, false),
            Fault::NatsPartition => cut(nodes.nats, &nodes.replicas, false),
            Fault::ClientPartition => {
                cut(nodes.clients[w.target.unwrap_or(0)], &nodes.replicas, false)
            }
            Fault::ReplicaCrash => {
                Handle::current().restart(nodes.replicas[w.target.unwrap_or(0)]);
            }
            Fault::RuleInvalid => self.repair_table().await,
            fault => {
                if let Some(knob) = self.world.knobs.of(fault) {
                    knob.set(0.0);
                }
            }
        }
    }

    fn jump(&self, w: &Window) {
        let r = w.target.unwrap_or(0);
        let forward = madsim::rand::thread_rng().gen_bool(0.5);
        let by_ms = (w.knob * 60_000.0) as i64 * if forward { 1 } else { -1 };
        let offset = self.world.offsets[r].fetch_add(by_ms, Ordering::SeqCst) + by_ms;
        let at = self.world.time.now_ms();
        self.world.truth.lock().expect("truth").offsets[r].push((at, offset));
        self.world
            .log(format!("clock-jump replica-{r} by {by_ms} ms"));
    }

    /// Commits the last valid table again, as a new version.
    async fn repair_table(&self) {
        let source = self.table.lock().expect("table").clone();
        self.commit(source, true, "repaired".into()).await;
    }

    /// Commits a valid change (an operator switched on or off, a weight
    /// changed, a rule removed) or an invalid one the service must refuse.
    async fn change_table(&self, valid: bool) {
        let (source, what) = {
            let mut table = self.table.lock().expect("table");
            let mut rng = madsim::rand::thread_rng();
            if valid {
                let what = mutate(&mut table, &mut rng);
                (table.clone(), what)
            } else {
                let mut broken = table.clone();
                let what = corrupt_table(&mut broken, &mut rng);
                (broken, what)
            }
        };
        self.commit(source, valid, what).await;
    }

    async fn commit(&self, source: TableSource, valid: bool, what: String) {
        let request = DbRequest::Commit(source.clone());
        let answer = self.db.call::<_, DbAnswer>(standins::DB_TAG, request).await;
        if let Ok(DbAnswer::Committed { version, at_ms }) = answer {
            let mut source = source;
            source.version = version;
            let entry = TableEntry {
                source: Arc::new(source),
                valid,
                at_ms,
            };
            self.world
                .truth
                .lock()
                .expect("truth")
                .tables
                .insert(version, entry);
            self.world
                .log(format!("table v{version} committed: {what}"));
        }
    }
}

fn mutate(table: &mut TableSource, rng: &mut impl Rng) -> String {
    match rng.gen_range(0..3) {
        0 => {
            let i = rng.gen_range(0..table.operators.len());
            let op = &mut table.operators[i];
            op.enabled = !op.enabled;
            format!("{} enabled={}", op.id, op.enabled)
        }
        1 => {
            let routed: Vec<usize> = (0..table.rules.len())
                .filter(|i| matches!(table.rules[*i].target, RuleTarget::Operator(_)))
                .collect();
            let i = routed[rng.gen_range(0..routed.len())];
            table.rules[i].weight = rng.gen_range(1..=100);
            format!("{} weight={}", table.rules[i].id, table.rules[i].weight)
        }
        _ => {
            let i = rng.gen_range(0..table.rules.len());
            let rule = table.rules.remove(i);
            format!("{} removed", rule.id)
        }
    }
}

/// Breaks a copy of the table the way a bad edit would.
fn corrupt_table(table: &mut TableSource, rng: &mut impl Rng) -> String {
    let routed: Vec<usize> = (0..table.rules.len())
        .filter(|i| matches!(table.rules[*i].target, RuleTarget::Operator(_)))
        .collect();
    let i = routed[rng.gen_range(0..routed.len())];
    let rule = &mut table.rules[i];
    if rng.gen_bool(0.5) {
        rule.target = RuleTarget::Operator("op-unknown".into());
        format!("invalid: {} names an unknown operator", rule.id)
    } else {
        rule.weight = 0;
        format!("invalid: {} weight 0", rule.id)
    }
}

fn cut(node: NodeId, others: &[NodeId], on: bool) {
    let net = NetSim::current();
    for other in others {
        if on {
            net.clog_link(node, *other);
            net.clog_link(*other, node);
        } else {
            net.unclog_link(node, *other);
            net.unclog_link(*other, node);
        }
    }
}

async fn sleep_until(world: &World, at_ms: i64) {
    let wait = at_ms - world.time.now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}
