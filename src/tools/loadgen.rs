//! The `loadgen` command: measures a running service over many mutual-TLS
//! connections (closed loop at the maximum, open loop at a target rate, an
//! optional latency-against-load curve and table reloads under load) beside
//! a no-op gRPC handler that this process serves behind the same TLS code,
//! as the baseline of the same run.
//!
//! It drives loopback addresses only, and every phase stops by itself at its
//! time or request bound.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::transport::{Channel, Uri};
use tonic::{Request, Response, Status};

use crate::metrics::Metrics;
use crate::proto::routing_engine_client::RoutingEngineClient;
use crate::proto::routing_engine_server::{RoutingEngine, RoutingEngineServer};
use crate::proto::{OperatorConfig, SelectOperatorRequest, SelectOperatorResponse};
use crate::server::tls::{self, client_channel, PemFiles, ServerTls};

/// Longest wait for one answer; a request past it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Latencies are recorded in microseconds up to a minute, 3 digits precise.
const HISTOGRAM_MAX_US: u64 = 60_000_000;

/// After a reload's new version first shows, how long its window lasts: the
/// old table is dropped and caches refill in this time.
const RELOAD_TAIL: Duration = Duration::from_millis(500);

/// Flags of `loadgen`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadgenArgs {
    /// The service to measure; a loopback address only.
    #[arg(long, default_value = "https://127.0.0.1:50051")]
    pub server: String,

    /// ca.crt, client.crt and client.key for the client, tls.crt and
    /// tls.key for the baseline server (the layout `dev` writes).
    #[arg(long, default_value = crate::devmode::DEFAULT_TLS_DIR)]
    pub tls_dir: PathBuf,

    /// Traffic mix (destinations.csv); ../shared/data's, else sample/'s.
    #[arg(long)]
    pub traffic: Option<PathBuf>,

    /// Account of every request.
    #[arg(long, default_value = "")]
    pub account: String,

    /// Mutual-TLS connections to each server.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,

    /// Requests in flight on each connection in the closed loop.
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,

    /// Length of each phase, in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,

    /// Closed-loop rounds per server, taken in turn; the best of each
    /// counts, as other load on the machine only ever slows a round down.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,

    /// Most requests sent in one phase.
    #[arg(long, default_value_t = 500_000)]
    pub max_requests: u64,

    /// Open-loop rate in requests per second; half the measured maximum if
    /// omitted.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Fractions of the maximum to measure open-loop latency at, e.g.
    /// 0.1,0.25,0.5,0.75,0.9 (for the service and the baseline).
    #[arg(long, value_delimiter = ',')]
    pub curve: Vec<f64>,

    /// Where to write the curve as CSV.
    #[arg(long)]
    pub curve_csv: Option<PathBuf>,

    /// An administrator's PostgreSQL URL (loopback): measure while the
    /// service reloads its table, triggered by a no-op change every
    /// --reload-every seconds during an open-loop phase.
    #[arg(long, env = "LOADGEN_RELOAD_DATABASE_URL", hide_env_values = true)]
    pub reload_database_url: Option<String>,

    #[arg(long, default_value_t = 3)]
    pub reload_every: u64,

    /// Length of the reload phase, in seconds.
    #[arg(long, default_value_t = 15)]
    pub reload_seconds: u64,
}

/// Bounds of one phase.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    time: Duration,
    requests: u64,
}

/// What one phase measured.
struct Phase {
    latency: Histogram<u64>,
    answered: u64,
    failed: u64,
    elapsed: Duration,
}

impl Phase {
    fn throughput(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn us(&self, quantile: f64) -> u64 {
        self.latency.value_at_quantile(quantile)
    }

    /// Latency only, for a subset of a phase whose rate means nothing.
    fn latency_line(&self, label: &str) -> String {
        format!(
            "{label:<34} p50 {:>6} us  p99 {:>6} us  p999 {:>6} us  requests {}",
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.answered + self.failed
        )
    }

    fn line(&self, label: &str) -> String {
        format!(
            "{label:<34} {:>9.0}/s  p50 {:>6} us  p99 {:>6} us  p999 {:>6} us  \
             answered {} failed {}",
            self.throughput(),
            self.us(0.5),
            self.us(0.99),
            self.us(0.999),
            self.answered,
            self.failed
        )
    }
}

/// One answered request of an open-loop phase.
#[derive(Clone, Copy)]
struct Record {
    /// When it was sent, from the start of the phase.
    sent: Duration,
    latency_us: u64,
    /// The answer's table version; 0 for a refusal or a failure.
    version: u64,
    answered: bool,
}

/// Connections to one server.
#[derive(Clone)]
struct Target {
    name: &'static str,
    clients: Vec<RoutingEngineClient<Channel>>,
}

impl LoadgenArgs {
    /// Runs every phase and returns the report.
    pub async fn run(&self) -> anyhow::Result<String> {
        ensure!(
            self.connections > 0 && self.in_flight > 0,
            "connections and in-flight > 0"
        );
        ensure_loopback(&self.server).await?;
        let requests = Arc::new(read_traffic(self)?);
        let files = PemFiles::read(&self.tls_dir, "client.crt", "client.key")?;
        let baseline = Baseline::start(&self.tls_dir)?;
        let bounds = Bounds {
            time: Duration::from_secs(self.seconds.max(1)),
            requests: self.max_requests.max(1),
        };

        let service = connect("service", &self.server, &files, self.connections).await?;
        let noop = connect("no-op", &baseline.uri(), &files, self.connections).await?;
        let mut out = header(self, &requests);

        let max = self
            .closed_loops(&noop, &service, &requests, bounds, &mut out)
            .await?;
        let rate = self.rate.unwrap_or(max / 2.0);
        let open = open_loop(&service, &requests, rate, bounds, None).await;
        let open = phase_of(&open, bounds, |_| true);
        let _ = writeln!(
            out,
            "{}",
            open.line(&format!("service open loop {rate:.0}/s"))
        );
        let _ = writeln!(
            out,
            "  p99 at {rate:.0}/s: {} us (target < 2000 us: {})",
            open.us(0.99),
            if open.us(0.99) < 2000 {
                "met"
            } else {
                "missed"
            }
        );

        if !self.curve.is_empty() {
            self.curve(&noop, &service, &requests, max, bounds, &mut out)
                .await?;
        }
        if let Some(url) = &self.reload_database_url {
            self.reloads(url, &service, &requests, rate, &mut out)
                .await?;
        }
        baseline.stop();
        Ok(out)
    }

    /// The maximum of each server, rounds in turn so that both see the
    /// machine's other load alike; returns the service's best throughput.
    async fn closed_loops(
        &self,
        noop: &Target,
        service: &Target,
        requests: &Arc<Vec<SelectOperatorRequest>>,
        bounds: Bounds,
        out: &mut String,
    ) -> anyhow::Result<f64> {
        let mut best = (0.0f64, 0.0f64);
        for round in 1..=self.rounds.max(1) {
            let base = closed_loop(noop, requests, self.in_flight, bounds).await;
            let real = closed_loop(service, requests, self.in_flight, bounds).await;
            ensure!(base.answered > 0, "the no-op baseline answered nothing");
            ensure!(real.answered > 0, "the service answered nothing");
            let _ = writeln!(out, "{}", base.line(&format!("no-op closed loop #{round}")));
            let _ = writeln!(
                out,
                "{}",
                real.line(&format!("service closed loop #{round}"))
            );
            best = (best.0.max(base.throughput()), best.1.max(real.throughput()));
        }
        let ratio = best.1 / best.0;
        let _ = writeln!(
            out,
            "  max throughput: service {:.0}/s, no-op {:.0}/s, ratio {:.2} \
             (target >= 0.80: {})",
            best.1,
            best.0,
            ratio,
            if ratio >= 0.8 { "met" } else { "missed" }
        );
        Ok(best.1)
    }

    /// Open-loop latency at each fraction of `max`, for both servers.
    async fn curve(
        &self,
        noop: &Target,
        service: &Target,
        requests: &Arc<Vec<SelectOperatorRequest>>,
        max: f64,
        bounds: Bounds,
        out: &mut String,
    ) -> anyhow::Result<()> {
        let mut csv =
            String::from("server,fraction,offered_per_s,achieved_per_s,p50_us,p99_us,p999_us\n");
        for fraction in &self.curve {
            let rate = max * fraction;
            for target in [service, noop] {
                let records = open_loop(target, requests, rate, bounds, None).await;
                let phase = phase_of(&records, bounds, |_| true);
                let label = format!(
                    "{} open loop {:.0}% ({rate:.0}/s)",
                    target.name,
                    fraction * 100.0
                );
                let _ = writeln!(out, "{}", phase.line(&label));
                let _ = writeln!(
                    csv,
                    "{},{fraction},{rate:.0},{:.0},{},{},{}",
                    target.name,
                    phase.throughput(),
                    phase.us(0.5),
                    phase.us(0.99),
                    phase.us(0.999)
                );
            }
        }
        if let Some(path) = &self.curve_csv {
            std::fs::write(path, csv).with_context(|| format!("write {}", path.display()))?;
            let _ = writeln!(out, "  curve written to {}", path.display());
        }
        Ok(())
    }

    /// Open loop at `rate` while the table is changed every
    /// `reload_every` seconds; p99 inside reload windows against the rest.
    async fn reloads(
        &self,
        url: &str,
        service: &Target,
        requests: &Arc<Vec<SelectOperatorRequest>>,
        rate: f64,
        out: &mut String,
    ) -> anyhow::Result<()> {
        ensure_loopback_database(url).await?;
        let pool = sqlx::PgPool::connect(url)
            .await
            .context("connect to PostgreSQL to change the table")?;
        let bounds = Bounds {
            time: Duration::from_secs(self.reload_seconds.max(self.reload_every * 2)),
            requests: self.max_requests.max(1),
        };
        let every = Duration::from_secs(self.reload_every.max(1));
        let (tx, triggers) = oneshot::channel();
        let trigger = Reloader {
            pool,
            every,
            bounds,
            done: tx,
        };

        let records = open_loop(service, requests, rate, bounds, Some(trigger)).await;
        let triggers = triggers.await.context("reload trigger stopped")??;
        let windows = reload_windows(&records, &triggers);
        let inside = |r: &Record| {
            windows
                .iter()
                .any(|(from, to)| (*from..*to).contains(&r.sent))
        };
        let during = phase_of(&records, bounds, inside);
        let steady = phase_of(&records, bounds, |r| !inside(r));
        let _ = writeln!(
            out,
            "reloads: {} triggered, {} seen in answers",
            triggers.len(),
            windows.len()
        );
        let all = phase_of(&records, bounds, |_| true);
        let _ = writeln!(
            out,
            "{}",
            all.line(&format!("service open loop {rate:.0}/s"))
        );
        let _ = writeln!(out, "{}", steady.latency_line("  outside reload windows"));
        let _ = writeln!(out, "{}", during.latency_line("  inside reload windows"));
        let ratio = during.us(0.99) as f64 / steady.us(0.99).max(1) as f64;
        let _ = writeln!(
            out,
            "  p99 during reloads / steady: {ratio:.2} (target <= 2.00: {})",
            if ratio <= 2.0 { "met" } else { "missed" }
        );
        Ok(())
    }
}

fn header(args: &LoadgenArgs, requests: &[SelectOperatorRequest]) -> String {
    format!(
        "loadgen: {} requests in the mix, {} connections per server, {} in flight each \
         (closed loop), phases of {} s or {} requests\n",
        requests.len(),
        args.connections,
        args.in_flight,
        args.seconds,
        args.max_requests
    )
}

/// Refuses any target whose host does not resolve to loopback addresses only.
async fn ensure_loopback(server: &str) -> anyhow::Result<()> {
    let uri: Uri = server
        .parse()
        .with_context(|| format!("server {server:?} is not a URI like https://host:port"))?;
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(443);
    all_loopback(host, port, server).await
}

async fn ensure_loopback_database(url: &str) -> anyhow::Result<()> {
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .context("the reload database URL does not parse")?;
    all_loopback(
        options.get_host(),
        options.get_port(),
        "the reload database",
    )
    .await
}

async fn all_loopback(host: &str, port: u16, what: &str) -> anyhow::Result<()> {
    // A Unix socket path is local by nature.
    if host.starts_with('/') {
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolve {host}"))?
        .collect();
    if addrs.is_empty() || !addrs.iter().all(|a| a.ip().is_loopback()) {
        bail!("{what} ({host}) is not a loopback address: loadgen drives this machine only");
    }
    Ok(())
}

/// The traffic mix as requests, message ids numbered.
fn read_traffic(args: &LoadgenArgs) -> anyhow::Result<Vec<SelectOperatorRequest>> {
    let path = args.traffic.clone().unwrap_or_else(|| {
        let shared = PathBuf::from("../shared/data/traffic/destinations.csv");
        if shared.exists() {
            shared
        } else {
            eprintln!("../shared/data is absent: using sample/traffic/destinations.csv");
            PathBuf::from("sample/traffic/destinations.csv")
        }
    });
    let mut reader = csv::Reader::from_path(&path)
        .with_context(|| format!("open the traffic mix {}", path.display()))?;
    let mut requests = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("read {}", path.display()))?;
        requests.push(SelectOperatorRequest {
            message_id: format!("loadgen-{n}"),
            account_id: args.account.clone(),
            destination: record.get(0).unwrap_or_default().to_owned(),
            destination_region: record.get(1).unwrap_or_default().to_owned(),
            sender: if n % 2 == 0 {
                "ACMEBANK"
            } else {
                "+15551234567"
            }
            .to_owned(),
            parts: 1,
            ..SelectOperatorRequest::default()
        });
    }
    ensure!(!requests.is_empty(), "{} holds no request", path.display());
    Ok(requests)
}

/// `count` connections, each its own TCP connection and TLS handshake.
async fn connect(
    name: &'static str,
    server: &str,
    files: &PemFiles,
    count: usize,
) -> anyhow::Result<Target> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = client_channel(server, files)
            .await
            .with_context(|| format!("connect to the {name} server at {server}"))?;
        clients.push(RoutingEngineClient::new(channel));
    }
    Ok(Target { name, clients })
}

/// Sends one request; `(answered, table version)`. A refusal with a gRPC
/// status from the service is an answer too; a timeout or a broken
/// connection is not.
async fn send(
    client: &mut RoutingEngineClient<Channel>,
    request: SelectOperatorRequest,
) -> (bool, u64) {
    match tokio::time::timeout(REQUEST_TIMEOUT, client.select_operator(request)).await {
        Ok(Ok(response)) => (true, response.into_inner().routing_table_version),
        Ok(Err(status)) => (is_answer(&status), 0),
        Err(_) => (false, 0),
    }
}

fn is_answer(status: &Status) -> bool {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .is_some_and(|info| info.domain == crate::server::grpc::ERROR_DOMAIN)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("fixed bounds are valid")
}

/// Each connection keeps `in_flight` requests going until the phase's time
/// or request bound.
async fn closed_loop(
    target: &Target,
    requests: &Arc<Vec<SelectOperatorRequest>>,
    in_flight: usize,
    bounds: Bounds,
) -> Phase {
    let started = Instant::now();
    let deadline = started + bounds.time;
    let next = Arc::new(AtomicU64::new(0));

    let mut workers = Vec::new();
    for client in &target.clients {
        for _ in 0..in_flight {
            let (mut client, requests, next) = (client.clone(), requests.clone(), next.clone());
            workers.push(tokio::spawn(async move {
                let mut phase = (new_histogram(), 0u64, 0u64);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= bounds.requests || Instant::now() >= deadline {
                        return phase;
                    }
                    let request = requests[n as usize % requests.len()].clone();
                    let sent = Instant::now();
                    let (answered, _) = send(&mut client, request).await;
                    let _ = phase.0.record(sent.elapsed().as_micros() as u64);
                    if answered {
                        phase.1 += 1
                    } else {
                        phase.2 += 1
                    }
                }
            }));
        }
    }

    let mut phase = Phase {
        latency: new_histogram(),
        answered: 0,
        failed: 0,
        elapsed: Duration::ZERO,
    };
    for worker in workers {
        if let Ok((latency, answered, failed)) = worker.await {
            let _ = phase.latency.add(&latency);
            phase.answered += answered;
            phase.failed += failed;
        }
    }
    phase.elapsed = started.elapsed();
    phase
}

/// Sends at `rate` per second whatever the answers do, spread over the
/// connections, and records each request. Latency runs from the moment a
/// request is sent; the schedule's own lag is not the server's.
async fn open_loop(
    target: &Target,
    requests: &Arc<Vec<SelectOperatorRequest>>,
    rate: f64,
    bounds: Bounds,
    reloader: Option<Reloader>,
) -> Vec<Record> {
    let rate = rate.max(1.0);
    let count = ((bounds.time.as_secs_f64() * rate) as u64).min(bounds.requests);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let reloads = reloader.map(|r| tokio::spawn(r.run(started)));

    for n in 0..count {
        let due = started + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due).await;
        let mut client = target.clients[n as usize % target.clients.len()].clone();
        let request = requests[n as usize % requests.len()].clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            let (answered, version) = send(&mut client, request).await;
            let _ = tx.send(Record {
                sent: sent - started,
                latency_us: sent.elapsed().as_micros() as u64,
                version,
                answered,
            });
        });
    }
    drop(tx);

    let mut records = Vec::with_capacity(count as usize);
    while let Some(record) = rx.recv().await {
        records.push(record);
    }
    if let Some(reloads) = reloads {
        let _ = reloads.await;
    }
    records.sort_by_key(|r| r.sent);
    records
}

/// The records `keep` selects as a phase; its elapsed time is the phase's.
fn phase_of(records: &[Record], bounds: Bounds, keep: impl Fn(&Record) -> bool) -> Phase {
    let mut phase = Phase {
        latency: new_histogram(),
        answered: 0,
        failed: 0,
        elapsed: bounds.time,
    };
    for record in records.iter().filter(|r| keep(r)) {
        let _ = phase.latency.record(record.latency_us.max(1));
        if record.answered {
            phase.answered += 1;
        } else {
            phase.failed += 1;
        }
    }
    phase
}

/// From each trigger to [`RELOAD_TAIL`] after the first answer sent at or
/// after it that carries a newer table version.
fn reload_windows(records: &[Record], triggers: &[Duration]) -> Vec<(Duration, Duration)> {
    let mut windows = Vec::new();
    for trigger in triggers {
        let before = records
            .iter()
            .filter(|r| r.sent < *trigger && r.version > 0)
            .map(|r| r.version)
            .max()
            .unwrap_or(0);
        let seen = records
            .iter()
            .find(|r| r.sent >= *trigger && r.version > before);
        if let Some(seen) = seen {
            windows.push((*trigger, seen.sent + RELOAD_TAIL));
        }
    }
    windows
}

/// Changes the table in PostgreSQL on a schedule: each change is a no-op
/// update that the version trigger still counts, so the service reloads the
/// whole table.
struct Reloader {
    pool: sqlx::PgPool,
    every: Duration,
    bounds: Bounds,
    done: oneshot::Sender<anyhow::Result<Vec<Duration>>>,
}

impl Reloader {
    async fn run(self, started: Instant) {
        let mut triggers = Vec::new();
        let mut at = self.every;
        let outcome = loop {
            // The last window needs time to close before the phase ends.
            if at + self.every > self.bounds.time {
                break Ok(triggers);
            }
            tokio::time::sleep_until(started + at).await;
            let changed = sqlx::query("UPDATE operators SET name = name")
                .execute(&self.pool)
                .await;
            if let Err(error) = changed {
                break Err(anyhow::Error::from(error).context("change the operators table"));
            }
            triggers.push(started.elapsed());
            at += self.every;
        };
        let _ = self.done.send(outcome);
    }
}

/// The no-op gRPC handler, served on its own runtime (as the service runs in
/// its own process) on a loopback port, behind `tls::serve`.
struct Baseline {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Baseline {
    fn start(tls_dir: &std::path::Path) -> anyhow::Result<Baseline> {
        let tls = Arc::new(ServerTls::from_dir(tls_dir).context("read the baseline's TLS files")?);
        let metrics = Arc::new(Metrics::new().context("register the baseline's metrics")?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the baseline's runtime")?;
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("listen for the baseline")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();

        let routes = tonic::service::Routes::new(RoutingEngineServer::new(NoOp::new()));
        let thread = std::thread::spawn(move || {
            let served = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                let stopped = async {
                    let _ = stopped.await;
                };
                Ok::<_, anyhow::Error>(tls::serve(listener, tls, routes, metrics, stopped).await?)
            });
            if let Err(error) = served {
                eprintln!("the baseline server stopped: {error:#}");
            }
        });
        Ok(Baseline {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn uri(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers every request with the same decision, unread.
struct NoOp {
    answer: SelectOperatorResponse,
}

impl NoOp {
    /// An answer of the size a real one has: an operator, a network, a rule.
    fn new() -> NoOp {
        let answer = SelectOperatorResponse {
            operator: Some(OperatorConfig {
                operator_id: "op-noop".into(),
                name: "No-op".into(),
                system_id: "noop".into(),
                smpp_host: "smpp.noop.example".into(),
                smpp_port: 2775,
                tps_limit: 100,
                alphanumeric_sender: true,
            }),
            destination_e164: "+447400123456".into(),
            network: "44:EE".into(),
            network_source: "prefix".into(),
            rule_ids: vec!["r-noop".into()],
            ..SelectOperatorResponse::default()
        };
        NoOp { answer }
    }
}

#[tonic::async_trait]
impl RoutingEngine for NoOp {
    async fn select_operator(
        &self,
        _request: Request<SelectOperatorRequest>,
    ) -> Result<Response<SelectOperatorResponse>, Status> {
        Ok(Response::new(self.answer.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_targets_are_accepted() {
        // Resolving an address literal sends nothing anywhere.
        assert!(ensure_loopback("https://127.0.0.1:50051").await.is_ok());
        assert!(ensure_loopback("https://[::1]:50051").await.is_ok());
        for elsewhere in ["https://10.0.0.7:50051", "https://192.0.2.1:50051"] {
            let refused = ensure_loopback(elsewhere).await.unwrap_err();
            assert!(refused.to_string().contains("not a loopback"), "{refused}");
        }
        assert!(ensure_loopback_database("postgres://u@127.0.0.1/db")
            .await
            .is_ok());
        assert!(ensure_loopback_database("postgres://u@192.0.2.1/db")
            .await
            .is_err());
    }

    fn record(sent_ms: u64, version: u64) -> Record {
        Record {
            sent: Duration::from_millis(sent_ms),
            latency_us: 100,
            version,
            answered: true,
        }
    }

    #[test]
    fn a_reload_window_runs_from_the_change_past_the_first_new_version() {
        let records = [
            record(0, 1),
            record(900, 1),
            record(1_100, 1),
            record(1_400, 2),
        ];
        let windows = reload_windows(&records, &[Duration::from_millis(1_000)]);
        let end = Duration::from_millis(1_400) + RELOAD_TAIL;
        assert_eq!(windows, vec![(Duration::from_millis(1_000), end)]);

        // A change no answer reflects opens no window.
        assert!(reload_windows(&records, &[Duration::from_millis(1_500)]).is_empty());
    }
}
