//! Operator health over real NATS JetStream: the machine's server for plain
//! behaviour, and a nats-server started here, with NKey users holding exactly
//! the permissions of `docs/HEALTH_EVENTS.md`, for authorisation and outages.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use async_nats::jetstream;
use tokio::time::Instant;

use routing_engine::adapters::nats::{HealthSubjects, NatsBusSettings, NatsHealthBus};
use routing_engine::core::clock::SystemClock;
use routing_engine::core::health::{Health, HealthEvent, HealthStatus};
use routing_engine::core::health_feed::{self, CountingObserver};
use routing_engine::core::model::*;
use routing_engine::core::ports::Clock;
use routing_engine::core::router::{RouteRequest, Router, RouterSettings};
use routing_engine::core::table::RoutingTable;
use routing_engine::tools::publish_health::HealthPublisher;

/// The service user's permissions, as documented.
const SERVICE_PUBLISH: &[&str] = &[
    "$JS.API.CONSUMER.CREATE.OPERATOR_HEALTH.>",
    "$JS.API.CONSUMER.MSG.NEXT.OPERATOR_HEALTH.*",
];
const SERVICE_SUBSCRIBE: &[&str] = &["_INBOX_routing_engine.>"];

/// The publisher user's permissions, as documented, stream creation included.
const PUBLISHER_PUBLISH: &[&str] = &[
    "operator.health.>",
    "$JS.API.STREAM.INFO.OPERATOR_HEALTH",
    "$JS.API.STREAM.CREATE.OPERATOR_HEALTH",
];
const PUBLISHER_SUBSCRIBE: &[&str] = &["_INBOX_operator_health_pub.>"];

const WAIT: Duration = Duration::from_secs(10);

/// The machine's nats-server 2.9 can fail a stream create that races with the
/// delete of the account's last stream, so tests on it take turns.
static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn machine_url() -> String {
    common::services::nats_url()
}

/// A stream and subject prefix no other test run uses.
fn unique_subjects() -> HealthSubjects {
    static N: AtomicU32 = AtomicU32::new(0);
    let tag = format!(
        "{}x{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        SystemClock.now_unix_ms()
    );
    HealthSubjects {
        stream: format!("OPERATOR_HEALTH_T{tag}"),
        prefix: format!("test{tag}.operator.health"),
    }
}

fn operator(id: &str) -> Operator {
    Operator {
        id: id.into(),
        name: id.into(),
        system_id: format!("sys-{id}"),
        smpp_host: "smpp.example".into(),
        smpp_port: 2775,
        tps_limit: 100,
        alphanumeric_sender: true,
        enabled: true,
    }
}

/// op-a is preferred, then op-b, then op-c, for every destination.
fn router(stale_after_ms: i64) -> Arc<Router> {
    let ids = ["op-a", "op-b", "op-c"];
    let rules = ids
        .iter()
        .zip(1..)
        .map(|(id, priority)| Rule {
            id: format!("r-{id}"),
            account: None,
            matcher: RuleMatch::Default,
            priority,
            target: RuleTarget::Operator((*id).into()),
            weight: 100,
            cost_micros: 1_000,
            sender: SenderFilter::Any,
            window: None,
        })
        .collect();
    let source = TableSource {
        version: 1,
        operators: ids.iter().map(|id| operator(id)).collect(),
        rules,
        ..TableSource::default()
    };
    let settings = RouterSettings {
        health_stale_after_ms: stale_after_ms,
        ..RouterSettings::default()
    };
    let router = Router::new(Arc::new(SystemClock), settings);
    router.install(RoutingTable::build(source).unwrap());
    Arc::new(router)
}

fn event(id: &str, status: HealthStatus, sequence: u64) -> HealthEvent {
    HealthEvent {
        operator_id: id.into(),
        status,
        sequence,
        observed_at_ms: SystemClock.now_unix_ms(),
        reason: "probe".into(),
    }
}

fn health(router: &Router, id: &str) -> Health {
    router.health().health(id, router.clock().now_unix_ms())
}

async fn chosen(router: &Router, n: u64) -> String {
    let req = RouteRequest {
        message_id: format!("m-{n}"),
        destination: "+447400123456".into(),
        sender: "+15551234".into(),
        ..RouteRequest::default()
    };
    router.route(&req).await.unwrap().operator.id
}

/// Polls `done` every few milliseconds until it holds or `within` passes.
async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Starts the bus and a feed into `router`.
async fn start_feed(
    router: &Arc<Router>,
    url: &str,
    creds: Option<PathBuf>,
    subjects: &HealthSubjects,
) -> Arc<CountingObserver> {
    let settings = NatsBusSettings {
        url: url.into(),
        creds,
        subjects: subjects.clone(),
        client_name: "routing-engine-test".into(),
    };
    let bus = NatsHealthBus::connect(&settings).await.unwrap();
    let observer = Arc::new(CountingObserver::default());
    tokio::spawn(health_feed::run(router.clone(), bus, observer.clone()));
    observer
}

async fn admin(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.unwrap())
}

/// A nats-server of our own with JetStream and NKey users; killed on drop.
struct OwnServer {
    child: Option<Child>,
    config: PathBuf,
    port: u16,
}

struct Users {
    service_creds: PathBuf,
    publisher_creds: PathBuf,
    dir: tempfile::TempDir,
}

fn quoted(subjects: &[&str]) -> String {
    let quoted: Vec<String> = subjects.iter().map(|s| format!("\"{s}\"")).collect();
    quoted.join(", ")
}

fn user_block(seed: &nkeys::KeyPair, publish: &[&str], subscribe: &[&str]) -> String {
    format!(
        "    {{ nkey: {}, permissions: {{ publish: {{ allow: [{}] }}, \
         subscribe: {{ allow: [{}] }} }} }}\n",
        seed.public_key(),
        quoted(publish),
        quoted(subscribe)
    )
}

fn write_seed(dir: &Path, name: &str, key: &nkeys::KeyPair) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", key.seed().unwrap())).unwrap();
    path
}

impl OwnServer {
    /// Writes users and a config into a fresh directory and starts the server.
    async fn start() -> (OwnServer, Users) {
        let dir = tempfile::tempdir().unwrap();
        let service = nkeys::KeyPair::new_user();
        let publisher = nkeys::KeyPair::new_user();
        let port = free_port();
        let config = format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
             authorization {{\n  users = [\n{}{}  ]\n}}\n",
            dir.path().join("js").display(),
            user_block(&service, SERVICE_PUBLISH, SERVICE_SUBSCRIBE),
            user_block(&publisher, PUBLISHER_PUBLISH, PUBLISHER_SUBSCRIBE),
        );
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, config).unwrap();

        let users = Users {
            service_creds: write_seed(dir.path(), "service.creds", &service),
            publisher_creds: write_seed(dir.path(), "publisher.creds", &publisher),
            dir,
        };
        let mut server = OwnServer {
            child: None,
            config: config_path,
            port,
        };
        server.restart().await;
        (server, users)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server on the same port and store, and waits until it listens.
    async fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);

        let deadline = Instant::now() + WAIT;
        let addr = format!("127.0.0.1:{}", self.port);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Publishes with retries while a just-started server's JetStream comes up.
async fn publisher_ready(url: &str, creds: &Path) -> anyhow::Result<HealthPublisher> {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let publisher =
                HealthPublisher::connect(url, Some(creds), HealthSubjects::default()).await?;
            publisher.ensure_stream().await?;
            anyhow::Ok(publisher)
        };
        match attempt.await {
            Ok(publisher) => return Ok(publisher),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_user_consumes_but_cannot_publish_and_strangers_cannot_connect() {
    // Goal: the documented permissions are enough to consume and no more.
    // Method: consume with the service user, try to inject with it, and try
    // to connect with a key the server does not know.
    let (server, users) = OwnServer::start().await;
    let url = server.url();
    let publisher = publisher_ready(&url, &users.publisher_creds).await.unwrap();
    publisher
        .publish(&event("op-a", HealthStatus::Down, 1))
        .await
        .unwrap();

    let router = router(60_000);
    let creds = Some(users.service_creds.clone());
    let observer = start_feed(&router, &url, creds, &HealthSubjects::default()).await;
    wait_until("op-a down", WAIT, || {
        health(&router, "op-a") == Health::Down
    })
    .await;

    // The service user publishing an `up` for op-a is refused by the server.
    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let injector = async_nats::ConnectOptions::with_nkey(
        std::fs::read_to_string(&users.service_creds)
            .unwrap()
            .trim()
            .into(),
    )
    .event_callback(move |event| {
        let errors_tx = errors_tx.clone();
        async move {
            if let async_nats::Event::ServerError(e) = event {
                errors_tx.send(e.to_string()).ok();
            }
        }
    })
    .connect(url.as_str())
    .await
    .unwrap();
    let forged = serde_json::to_vec(&event("op-a", HealthStatus::Up, 99)).unwrap();
    injector
        .publish("operator.health.op-a", forged.into())
        .await
        .unwrap();
    injector.flush().await.unwrap();
    let refusal = tokio::time::timeout(WAIT, errors.recv()).await.unwrap();
    let refusal = refusal.unwrap().to_lowercase();
    assert!(refusal.contains("permissions violation"), "{refusal}");

    // A later genuine event arrives and the forged one never did.
    publisher
        .publish(&event("op-b", HealthStatus::Degraded, 1))
        .await
        .unwrap();
    wait_until("op-b degraded", WAIT, || {
        health(&router, "op-b") == Health::Degraded
    })
    .await;
    assert_eq!(health(&router, "op-a"), Health::Down);
    assert_eq!(observer.accepted_total(), 2);

    // A key the server does not know cannot connect.
    let stranger = write_seed(users.dir.path(), "stranger", &nkeys::KeyPair::new_user());
    let settings = NatsBusSettings {
        url: url.clone(),
        creds: Some(stranger),
        ..NatsBusSettings::default()
    };
    let refused = NatsHealthBus::connect(&settings).await.unwrap_err();
    let text = refused.to_string().to_lowercase();
    assert!(text.contains("authorization violation"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_starting_late_learns_every_operator_at_once() {
    // Goal: a replica starting after events were published knows every
    // operator's latest state at once. Method: publish a history for three
    // operators, more than the stream keeps for one, then start the bus and
    // check that exactly the three latest events arrive first.
    let _turn = MACHINE.lock().await;
    let url = machine_url();
    let subjects = unique_subjects();
    let publisher = HealthPublisher::connect(&url, None, subjects.clone())
        .await
        .unwrap();
    publisher.ensure_stream().await.unwrap();
    for sequence in 1..=8 {
        let status = [HealthStatus::Down, HealthStatus::Up][sequence as usize % 2];
        publisher
            .publish(&event("op-a", status, sequence))
            .await
            .unwrap();
    }
    let history = [
        ("op-b", HealthStatus::Down, 1),
        ("op-b", HealthStatus::Degraded, 2),
        ("op-c", HealthStatus::Up, 1),
        ("op-c", HealthStatus::Down, 2),
    ];
    for (id, status, sequence) in history {
        publisher
            .publish(&event(id, status, sequence))
            .await
            .unwrap();
    }

    let router = router(60_000);
    let observer = start_feed(&router, &url, None, &subjects).await;
    wait_until("three operators learned", WAIT, || {
        observer.accepted_total() >= 3
    })
    .await;
    assert_eq!(
        health(&router, "op-a"),
        Health::Down,
        "op-a's last was seq 8"
    );
    assert_eq!(health(&router, "op-b"), Health::Degraded);
    assert_eq!(health(&router, "op-c"), Health::Down);

    // A live event follows, and nothing older came before it.
    publisher
        .publish(&event("op-a", HealthStatus::Up, 9))
        .await
        .unwrap();
    wait_until("live event", WAIT, || health(&router, "op-a") == Health::Up).await;
    assert_eq!(observer.accepted_total(), 4);
    assert_eq!(observer.dropped_all(), 0);

    admin(&url)
        .await
        .delete_stream(&subjects.stream)
        .await
        .unwrap();
}

/// Time from publishing `status` for op-a to the first decision that shows it.
async fn time_to_effect(
    router: &Arc<Router>,
    publisher: &Arc<HealthPublisher>,
    status: HealthStatus,
    sequence: u64,
) -> Duration {
    let wanted = if status == HealthStatus::Down {
        "op-b"
    } else {
        "op-a"
    };
    let publisher = publisher.clone();
    let started = Instant::now();
    let publish =
        tokio::spawn(async move { publisher.publish(&event("op-a", status, sequence)).await });

    let mut n = 0;
    while chosen(router, n).await != wanted {
        n += 1;
        assert!(started.elapsed() < WAIT, "{status:?} never took effect");
        tokio::task::yield_now().await;
    }
    let elapsed = started.elapsed();
    publish.await.unwrap().unwrap();
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_stops_new_decisions_fast_and_up_brings_the_operator_back() {
    // Goal: measure how soon a published `down` stops decisions to an
    // operator and an `up` brings it back. Method: route in a loop while
    // publishing, twenty times each way; report the figures.
    let _turn = MACHINE.lock().await;
    let url = machine_url();
    let subjects = unique_subjects();
    let publisher = HealthPublisher::connect(&url, None, subjects.clone())
        .await
        .unwrap();
    publisher.ensure_stream().await.unwrap();
    let publisher = Arc::new(publisher);
    let router = router(60_000);
    start_feed(&router, &url, None, &subjects).await;
    assert_eq!(chosen(&router, 0).await, "op-a");

    let (mut downs, mut ups) = (Vec::new(), Vec::new());
    for round in 0..20 {
        let sequence = round * 2 + 1;
        downs.push(time_to_effect(&router, &publisher, HealthStatus::Down, sequence).await);
        ups.push(time_to_effect(&router, &publisher, HealthStatus::Up, sequence + 1).await);
    }

    for (what, times) in [("down", &mut downs), ("up", &mut ups)] {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "publish {what} to first decision showing it: min {:.2} ms, \
             median {:.2} ms, max {:.2} ms over {} rounds",
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            times.len()
        );
    }

    admin(&url)
        .await
        .delete_stream(&subjects.stream)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_are_dropped_counted_and_change_nothing() {
    // Goal: every kind of bad event is dropped, counted under its reason,
    // and leaves health as it was. Method: publish raw messages into a stream
    // that admits larger ones than production, so the bus's own size check
    // is what stops the oversized one; then show production refuses it too.
    let _turn = MACHINE.lock().await;
    let url = machine_url();
    let subjects = unique_subjects();
    let js = admin(&url).await;
    js.create_stream(jetstream::stream::Config {
        max_message_size: 64 * 1024,
        ..subjects.stream_config()
    })
    .await
    .unwrap();
    let raw = |id: &str, body: Vec<u8>| {
        let js = js.clone();
        let subject = subjects.subject(id);
        async move {
            js.publish(subject, body.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let json = |e: HealthEvent| serde_json::to_vec(&e).unwrap();

    raw("op-a", json(event("op-a", HealthStatus::Down, 5))).await;
    let router = router(60_000);
    let observer = start_feed(&router, &url, None, &subjects).await;
    wait_until("op-a down", WAIT, || {
        health(&router, "op-a") == Health::Down
    })
    .await;

    raw("op-a", json(event("op-a", HealthStatus::Up, 5))).await;
    raw("op-a", json(event("op-a", HealthStatus::Up, 4))).await;
    raw("op-ghost", json(event("op-ghost", HealthStatus::Up, 1))).await;
    raw("op-a", b"op-a is up".to_vec()).await;
    raw(
        "op-a",
        br#"{"operator_id":"op-a","status":"up","sequence":6,"observed_at_ms":1,"x":1}"#.to_vec(),
    )
    .await;
    let mut big = event("op-a", HealthStatus::Up, 7);
    big.reason = "x".repeat(5_000);
    raw("op-a", json(big.clone())).await;
    raw("op-a", json(event("op-b", HealthStatus::Down, 1))).await;
    raw("op-c", json(event("op-c", HealthStatus::Degraded, 1))).await;

    wait_until("sentinel", WAIT, || {
        health(&router, "op-c") == Health::Degraded
    })
    .await;
    for reason in [
        "duplicate",
        "out_of_order",
        "unknown_operator",
        "subject_mismatch",
        "oversized",
    ] {
        assert_eq!(observer.dropped_total(reason), 1, "{reason}");
    }
    assert_eq!(observer.dropped_total("malformed"), 2);
    assert_eq!(observer.accepted_total(), 2);
    assert_eq!(health(&router, "op-a"), Health::Down);
    assert_eq!(health(&router, "op-b"), Health::Unknown);
    js.delete_stream(&subjects.stream).await.unwrap();

    // The production settings refuse the oversized event at the server.
    let production = unique_subjects();
    js.create_stream(production.stream_config()).await.unwrap();
    let stored = async {
        let ack = js
            .publish(production.subject("op-a"), json(big).into())
            .await?;
        ack.await?;
        anyhow::Ok(())
    };
    assert!(stored.await.is_err(), "a 5 KB event was stored");
    js.delete_stream(&production.stream).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_ages_health_to_unknown_and_the_consumer_resumes() -> anyhow::Result<()> {
    // Goal: without NATS, health ages to unknown; when NATS returns, the bus
    // resumes by itself and applies only what is newer. Method: stop our own
    // server, watch staleness, restart it on the same port and store.
    let (mut server, users) = OwnServer::start().await;
    let url = server.url();
    let publisher = publisher_ready(&url, &users.publisher_creds).await?;
    publisher
        .publish(&event("op-a", HealthStatus::Down, 10))
        .await?;
    publisher
        .publish(&event("op-b", HealthStatus::Up, 10))
        .await?;

    let router = router(1_500);
    let creds = Some(users.service_creds.clone());
    let observer = start_feed(&router, &url, creds, &HealthSubjects::default()).await;
    wait_until("state learned", WAIT, || observer.accepted_total() == 2).await;
    assert_eq!(health(&router, "op-a"), Health::Down);
    assert_eq!(health(&router, "op-b"), Health::Up);
    drop(publisher);

    server.stop();
    wait_until("disconnect seen", WAIT, || observer.disconnects() >= 1).await;
    let stopped = Instant::now();
    wait_until("health aged", WAIT, || {
        health(&router, "op-a") == Health::Unknown && health(&router, "op-b") == Health::Unknown
    })
    .await;
    println!("health unknown {:?} after NATS stopped", stopped.elapsed());

    server.restart().await;
    let restarted = Instant::now();
    wait_until("reconnect seen", Duration::from_secs(20), || {
        observer.connected()
    })
    .await;
    println!("bus reconnected {:?} after restart", restarted.elapsed());

    let publisher = publisher_ready(&url, &users.publisher_creds).await?;
    publisher
        .publish(&event("op-a", HealthStatus::Up, 9))
        .await?;
    publisher
        .publish(&event("op-a", HealthStatus::Degraded, 11))
        .await?;
    publisher
        .publish(&event("op-b", HealthStatus::Down, 11))
        .await?;
    wait_until("new state learned", WAIT, || {
        health(&router, "op-a") == Health::Degraded && health(&router, "op-b") == Health::Down
    })
    .await;
    println!("state re-learned {:?} after restart", restarted.elapsed());

    // Nothing from before the outage was replayed; the older event was not
    // applied.
    assert_eq!(observer.dropped_total("duplicate"), 0);
    assert_eq!(observer.dropped_total("out_of_order"), 1);
    assert_eq!(observer.accepted_total(), 4);
    if observer.connects() < 2 {
        bail!("expected a reconnect, saw {} connects", observer.connects());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_reads_as_the_bus_down_until_it_exists() {
    // Goal: a server that answers but holds no health stream gives no
    // health, so the bus must read as down (for `/ready` and the metric),
    // and as up once the stream appears and events flow. Method: start the
    // feed on a stream nobody created, then create it and publish.
    let _turn = MACHINE.lock().await;
    let url = machine_url();
    let subjects = unique_subjects();
    let router = router(60_000);
    let observer = start_feed(&router, &url, None, &subjects).await;
    wait_until("bus down", WAIT, || {
        observer.disconnects() >= 1 && !observer.connected()
    })
    .await;
    // Past the retries and the connection's own events, it stays down.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!observer.connected(), "no stream, yet the bus reads as up");

    let publisher = HealthPublisher::connect(&url, None, subjects.clone())
        .await
        .unwrap();
    publisher.ensure_stream().await.unwrap();
    wait_until("bus up", Duration::from_secs(20), || observer.connected()).await;
    publisher
        .publish(&event("op-a", HealthStatus::Down, 1))
        .await
        .unwrap();
    wait_until("event applied", WAIT, || {
        health(&router, "op-a") == Health::Down
    })
    .await;

    admin(&url)
        .await
        .delete_stream(&subjects.stream)
        .await
        .unwrap();
}
