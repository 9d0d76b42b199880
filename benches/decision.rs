//! The routing decision in process, without network: decisions per second
//! and heap allocations per decision, on the full real table and on a large
//! synthetic one, over the shared traffic mix.
//!
//! Two paths are measured on each table:
//! - `route`: `Router::route` on the request as the edge hands it over
//!   (normalisation, sender check, network, rules, draw, the decision value);
//! - `plan`: what follows parsing, on pre-normalised destinations: the network
//!   lookup and the rules with the weighted draw (`decide::plan`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use routing_engine::core::clock::ManualClock;
use routing_engine::core::decide::{self, Query};
use routing_engine::core::health::Health;
use routing_engine::core::model::SenderKind;
use routing_engine::core::numbering::{self, Destination};
use routing_engine::core::router::{RouteRequest, Router, RouterSettings};
use routing_engine::core::table::RoutingTable;
use routing_engine::source::files::{self, DataDirs};

/// Counts every allocation of the bench binary. Own code rather than a crate:
/// a counter around the system allocator is these few lines, and the bench
/// needs nothing else from an allocator profiler.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One table with the requests to route on it.
struct Case {
    name: &'static str,
    router: Router,
    table: Arc<RoutingTable>,
    requests: Vec<RouteRequest>,
    parsed: Vec<Destination>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Valid destinations of the traffic mix as `(input, region)`.
fn traffic(dirs: &DataDirs) -> Vec<(String, String)> {
    let path = if dirs.shared {
        repo_root().join("../shared/data/traffic/destinations.csv")
    } else {
        repo_root().join("sample/traffic/destinations.csv")
    };
    let mut reader = csv::Reader::from_path(&path).expect("the traffic file opens");
    reader
        .records()
        .filter_map(Result::ok)
        .filter(|r| &r[2] == "true")
        .map(|r| (r[0].to_string(), r[1].to_string()))
        .collect()
}

/// Requests over the mix, each with its account taken from `accounts` in
/// turn and a sender kind alternating numeric and alphanumeric.
fn requests(mix: &[(String, String)], accounts: &[String]) -> Vec<RouteRequest> {
    mix.iter()
        .enumerate()
        .map(|(n, (input, region))| RouteRequest {
            message_id: format!("bench-{n}"),
            account_id: accounts[n % accounts.len()].clone(),
            destination: input.clone(),
            destination_region: region.clone(),
            sender: if n % 2 == 0 {
                "ACMEBANK"
            } else {
                "+15551234567"
            }
            .into(),
            parts: 1,
            ..RouteRequest::default()
        })
        .collect()
}

fn case(
    name: &'static str,
    table: RoutingTable,
    mix: &[(String, String)],
    accounts: &[String],
) -> Case {
    let router = Router::new(
        Arc::new(ManualClock::at_utc(12, 0)),
        RouterSettings::default(),
    );
    router.install(table);
    let table = router.table().expect("a table is installed");
    let requests = requests(mix, accounts);
    let parsed = requests
        .iter()
        .filter_map(|r| numbering::normalise(&r.destination, &r.destination_region).ok())
        .collect();
    Case {
        name,
        router,
        table,
        requests,
        parsed,
    }
}

/// The full shared data, or the repository's sample when it is absent.
fn real_case() -> Case {
    let dirs = DataDirs::discover(&repo_root());
    if !dirs.shared {
        eprintln!("../shared/data is absent: measuring the sample table in sample/");
    }
    let source = dirs.load().expect("the routing files load").source;
    eprintln!(
        "real table: {} ranges, {} ported numbers, {} rules",
        source.ranges.len(),
        source.ported.len(),
        source.rules.len()
    );
    let table = RoutingTable::build(source).expect("the real table builds");
    let accounts = ["", "acme-bank", "promo-co", "no-rules-of-its-own"].map(String::from);
    case("real", table, &traffic(&dirs), &accounts)
}

/// The synthetic data of `benches/synthetic_data.py`, written once under
/// `target/`; `None` (and a line saying why) when it cannot be made.
fn synthetic_case(mix: &[(String, String)]) -> Option<Case> {
    let dir = repo_root().join("target/bench-data/synthetic");
    if !dir.join("routing/routes.csv").exists() {
        let made = Command::new("python3")
            .arg(repo_root().join("benches/synthetic_data.py"))
            .arg(&dir)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("python3 could not write the synthetic data: skipping that table");
            return None;
        }
    }
    let source = load_dir(&dir).source;
    eprintln!(
        "synthetic table: {} ranges, {} rules",
        source.ranges.len(),
        source.rules.len()
    );
    let table = RoutingTable::build(source).expect("the synthetic table builds");
    let accounts: Vec<String> = (0..1000).map(|a| format!("acct-{a:04}")).collect();
    Some(case("synthetic", table, mix, &accounts))
}

fn load_dir(dir: &Path) -> files::LoadedFiles {
    let carrier = dir.join("numbering/carrier");
    files::load(&carrier, &dir.join("routing")).expect("synthetic data loads")
}

/// Runs a future that never waits: without a cache or a store the router
/// finishes on its first poll, so no executor is needed (nor measured).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the router waited with no cache and no store"),
    }
}

fn route_all(case: &Case) -> usize {
    case.requests
        .iter()
        .filter(|r| ready(case.router.route(r)).is_ok())
        .count()
}

fn plan_all(case: &Case) -> usize {
    let excluded: [String; 0] = [];
    let mut chosen = 0;
    for (n, dest) in case.parsed.iter().enumerate() {
        let digits = dest.digits();
        let network = case
            .table
            .ported_network(digits)
            .or_else(|| case.table.prefix_network(digits));
        let request = &case.requests[n];
        let query = Query {
            message_id: &request.message_id,
            account_id: &request.account_id,
            digits,
            country_code: dest.country_code,
            network,
            sender: SenderKind::Numeric,
            minute: 12 * 60,
            excluded: &excluded,
            parts: request.parts.max(1),
        };
        let plan = decide::plan(&case.table, &query, |_| Health::Up);
        chosen += plan.ordered.len().min(1);
    }
    chosen
}

fn normalise_all(case: &Case) -> usize {
    case.requests
        .iter()
        .filter(|r| numbering::normalise(&r.destination, &r.destination_region).is_ok())
        .count()
}

/// Allocations and bytes per item of one pass of `f` over `items` items.
fn allocations_per(items: usize, f: impl FnOnce() -> usize) -> (f64, f64, usize) {
    let (count, bytes) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    );
    let done = f();
    let count = ALLOCATIONS.load(Ordering::Relaxed) - count;
    let bytes = ALLOCATED_BYTES.load(Ordering::Relaxed) - bytes;
    let items = items.max(1) as f64;
    (count as f64 / items, bytes as f64 / items, done)
}

fn report_allocations(case: &Case) {
    // A first pass fills lazily built state (metadata cells, the health book).
    route_all(case);
    let (count, bytes, ok) = allocations_per(case.requests.len(), || route_all(case));
    eprintln!(
        "{}: route: {count:.1} allocations ({bytes:.0} bytes) per decision over {} \
         requests ({ok} routed)",
        case.name,
        case.requests.len()
    );
    let (count, bytes, _) = allocations_per(case.requests.len(), || normalise_all(case));
    eprintln!(
        "{}: of which normalisation: {count:.1} allocations ({bytes:.0} bytes) per request",
        case.name
    );
    let (count, bytes, ok) = allocations_per(case.parsed.len(), || plan_all(case));
    eprintln!(
        "{}: plan after parsing: {count:.2} allocations ({bytes:.1} bytes) per decision \
         over {} destinations ({ok} with an operator)",
        case.name,
        case.parsed.len()
    );
}

fn bench(c: &mut Criterion) {
    numbering::warm_up();
    let real = real_case();
    let mix: Vec<(String, String)> = real
        .requests
        .iter()
        .map(|r| (r.destination.clone(), r.destination_region.clone()))
        .collect();
    let cases: Vec<Case> = std::iter::once(real).chain(synthetic_case(&mix)).collect();

    let mut group = c.benchmark_group("decision");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for case in &cases {
        report_allocations(case);
        group.throughput(Throughput::Elements(case.requests.len() as u64));
        group.bench_with_input(BenchmarkId::new("route", case.name), case, |b, case| {
            b.iter(|| route_all(case))
        });
        group.throughput(Throughput::Elements(case.parsed.len() as u64));
        group.bench_with_input(BenchmarkId::new("plan", case.name), case, |b, case| {
            b.iter(|| plan_all(case))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
