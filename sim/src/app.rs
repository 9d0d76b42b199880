//! Runs the seeds the options ask for: prints the seed and every fault
//! setting first, then each broken invariant with the command that replays
//! it, the event-log hash and a summary; writes the picture and the log.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};

use clap::Parser;
use routing_engine::core::model::SenderKind;
use routing_engine::core::planted::{self, Mistake};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::checker::CONVERGE_MS;
use crate::data::{self, Data};
use crate::faults::{Fault, FaultSet};
use crate::options::Options;
use crate::reference::{self, Expected};
use crate::report;
use crate::world::{self, Setup};

/// 2026-01-01 00:00 UTC.
const JAN_1_2026_MS: i64 = 1_767_225_600_000;
/// Faults stop this long before the end, so convergence can be checked.
const HEAL_BEFORE_END_MS: i64 = 15_000;

pub fn main() -> ExitCode {
    let options = Options::parse();
    let mut faults = match FaultSet::parse(&options.faults) {
        Ok(f) => f,
        Err(e) => return usage(&e),
    };
    let mistake = match options.planted.as_deref().map(Mistake::parse) {
        Some(None) => {
            let known: Vec<_> = Mistake::ALL.iter().map(|m| m.as_str()).collect();
            return usage(&format!(
                "unknown planted mistake; known: {}",
                known.join(", ")
            ));
        }
        Some(Some(m)) => Some(m),
        None => None,
    };
    match options.scenario.as_str() {
        "default" | "night" => {}
        "steady" => {
            faults.knobs.remove(&Fault::Burst);
        }
        other => {
            return usage(&format!(
                "unknown scenario {other:?}: default, night, steady"
            ))
        }
    }
    if options.duration < 30 || options.replicas < 2 || options.clients < 1 || options.rate < 1 {
        return usage("needs --duration >= 30, --replicas >= 2, --clients >= 1, --rate >= 1");
    }

    if options.check_determinism {
        return check_determinism(&options);
    }
    let data = match data::load() {
        Ok(d) => Arc::new(d),
        Err(e) => return usage(&format!("{e:#}")),
    };
    install_log_capture();
    planted::set(mistake);

    let mut failed = Vec::new();
    for seed in options.seed..options.seed + options.seeds {
        if !run_seed(&options, &faults, &data, seed) {
            failed.push(seed);
        }
    }
    if options.seeds > 1 {
        println!(
            "{} of {} seeds broke an invariant: {failed:?}",
            failed.len(),
            options.seeds
        );
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("routing-engine-sim: {problem}");
    ExitCode::from(2)
}

/// Runs one seed; `false` when an invariant broke.
fn run_seed(options: &Options, faults: &FaultSet, data: &Arc<Data>, seed: u64) -> bool {
    let setup = Arc::new(setup(options, faults, data, seed));
    if !options.quiet {
        print_settings(options, &setup, seed);
    }
    take_log();

    let wall = wall_clock();
    let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    let mut out = runtime.block_on(world::run(setup.clone()));
    let wall_s = wall.elapsed().as_secs_f64();
    let log = take_log();
    out.checker.finish(&out.truth, &log);

    let hash = report::hash(&out.events);
    let violations = &out.checker.violations;
    for v in violations.iter().take(10) {
        println!("VIOLATION {} at {} ms: {}", v.invariant, v.at_ms, v.detail);
    }
    if !violations.is_empty() {
        println!(
            "{} invariant violation(s) with seed {seed}; replay with:",
            violations.len()
        );
        println!("  {}", options.replay_command(seed));
    }
    println!("seed {seed}: event log hash: {hash:016x}");
    if !options.quiet {
        print!(
            "{}",
            report::summary(&out, setup.duration_ms as f64 / 1e3, wall_s)
        );
        println!("  {:<32} {:>12}", "log lines checked", log.lines().count());
    }
    write_outputs(options, seed, &out, setup.duration_ms as f64 / 1e3);
    violations.is_empty()
}

fn setup(options: &Options, faults: &FaultSet, data: &Arc<Data>, seed: u64) -> Setup {
    let minute = match options.scenario.as_str() {
        "night" => 21 * 60 + 59,
        _ => (xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes()) % 1440) as i64,
    };
    let base = if options.scenario == "night" {
        JAN_1_2026_MS + minute * 60_000 + 30_000
    } else {
        JAN_1_2026_MS + minute * 60_000
    };
    let duration_ms = options.duration as i64 * 1_000;
    Setup {
        duration_ms,
        heal_ms: duration_ms - HEAL_BEFORE_END_MS,
        replicas: options.replicas,
        clients: options.clients,
        rate: options.rate,
        base_unix_ms: base,
        faults: faults.clone(),
        data: data.clone(),
        burst_rows: Arc::new(burst_rows(data)),
    }
}

/// Rows whose winning tier holds only operators of small limits, for
/// bursts that push past them.
fn burst_rows(data: &Data) -> Vec<usize> {
    let mut rows = Vec::new();
    for (i, row) in data.rows.iter().enumerate().filter(|(_, r)| r.valid) {
        let q = reference::Query {
            account: "",
            digits: row.e164.trim_start_matches('+'),
            country_code: row.country_code,
            network: &row.network,
            sender: SenderKind::Numeric,
            minute: 12 * 60,
            excluded: &[],
        };
        let expected = reference::expect(&data.source, &q, &|_| false);
        let best = expected.best_tier();
        if let (Expected::Route(ops), Some(best)) = (expected, best) {
            if ops
                .values()
                .filter(|a| a.tier == best)
                .all(|a| a.tps_limit <= 150)
            {
                rows.push(i);
            }
        }
    }
    rows
}

fn print_settings(options: &Options, setup: &Setup, seed: u64) {
    let minute = (setup.base_unix_ms / 60_000).rem_euclid(1440);
    println!("routing-engine simulation");
    println!("  seed                {seed}");
    println!(
        "  duration            {} s (faults heal at {} s, converged by {} s)",
        options.duration,
        setup.heal_ms / 1000,
        (setup.heal_ms + CONVERGE_MS) / 1000
    );
    println!(
        "  scenario            {} (replica clocks start at {:02}:{:02} UTC)",
        options.scenario,
        minute / 60,
        minute % 60
    );
    println!(
        "  nodes               {} replicas, {} clients, postgres, redis, nats, operations",
        setup.replicas, setup.clients
    );
    println!(
        "  traffic             {} requests/s, {} rows",
        setup.rate,
        setup.data.rows.len()
    );
    println!(
        "  data                {}",
        if setup.data.shared {
            "../shared/data"
        } else {
            "sample/ (../shared/data absent)"
        }
    );
    println!(
        "  planted mistake     {}",
        options.planted.as_deref().unwrap_or("none")
    );
    println!("  faults ({}):", options.faults);
    for fault in Fault::ALL {
        let (name, meaning, _) = fault.describe();
        match setup.faults.knob(fault) {
            Some(k) => println!("    {name:<18} on   {k:<8} {meaning}"),
            None => println!("    {name:<18} off"),
        }
    }
}

fn write_outputs(options: &Options, seed: u64, out: &world::Output, duration_s: f64) {
    if let Err(e) = std::fs::create_dir_all(&options.out) {
        eprintln!("cannot create {}: {e}", options.out.display());
        return;
    }
    let picture = options.out.join(format!("seed-{seed}.svg"));
    match report::picture(&picture, out, duration_s) {
        Ok(()) if !options.quiet => println!("  picture: {}", picture.display()),
        Ok(()) => {}
        Err(e) => eprintln!("cannot draw {}: {e}", picture.display()),
    }
    let log = options.out.join(format!("seed-{seed}.events"));
    if let Err(e) = std::fs::write(&log, out.events.join("\n")) {
        eprintln!("cannot write {}: {e}", log.display());
    }
}

/// Runs every seed twice, each in a process of its own, and compares the
/// event-log hashes.
fn check_determinism(options: &Options) -> ExitCode {
    let Ok(exe) = std::env::current_exe() else {
        return usage("cannot find the simulation's own executable");
    };
    let mut ok = true;
    for seed in options.seed..options.seed + options.seeds {
        let hashes: Vec<Option<String>> = (0..2).map(|_| run_child(&exe, options, seed)).collect();
        let same = hashes[0].is_some() && hashes[0] == hashes[1];
        println!(
            "determinism seed {seed}: {} ({:?} vs {:?})",
            if same {
                "same event log"
            } else {
                "DIFFERENT event logs"
            },
            hashes[0],
            hashes[1]
        );
        ok &= same;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        println!(
            "replay with: {} --check-determinism",
            options.replay_command(options.seed)
        );
        ExitCode::FAILURE
    }
}

fn run_child(exe: &Path, options: &Options, seed: u64) -> Option<String> {
    let mut cmd = Command::new(exe);
    cmd.args(["--seed", &seed.to_string(), "--quiet"])
        .args(["--duration", &options.duration.to_string()])
        .args(["--faults", &options.faults, "--scenario", &options.scenario])
        .args(["--replicas", &options.replicas.to_string()])
        .args(["--clients", &options.clients.to_string()])
        .args(["--rate", &options.rate.to_string()])
        .arg("--out")
        .arg(&options.out);
    if let Some(p) = &options.planted {
        cmd.args(["--planted", p]);
    }
    let output = cmd.output().ok()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.lines().find_map(|l| {
        l.split_once("event log hash: ")
            .map(|(_, h)| h.trim().to_string())
    })
}

#[allow(clippy::disallowed_methods)] // wall time of the whole run, outside the simulation
fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}

// === log capture ===

/// Every log line of the run, to look for passwords in.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn install_log_capture() {
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| Capture)
        .with_ansi(false)
        .without_time();
    let filter = Targets::new()
        .with_target("routing_engine", tracing::Level::DEBUG)
        .with_default(tracing::Level::WARN);
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}

fn take_log() -> String {
    let bytes = std::mem::take(&mut *LOG.lock().unwrap_or_else(|p| p.into_inner()));
    String::from_utf8_lossy(&bytes).into_owned()
}
