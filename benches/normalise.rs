//! Normalisation cost on the shared traffic mix: this crate's path (the
//! `rlibphonenumber` port, warmed at start) against the `phonenumber` crate
//! as the baseline, single-threaded and on every core.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use routing_engine::core::numbering;

/// `(input, region)` pairs: the shared traffic mix, or a small built-in one.
fn traffic() -> Vec<(String, String)> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/traffic/destinations.csv");
    let Ok(mut reader) = csv::Reader::from_path(&path) else {
        eprintln!("../shared/data is absent: measuring on the built-in sample");
        let sample = [
            "+447400123456",
            "00919812345678",
            "2348031234567",
            "+4915123456789",
        ];
        return sample
            .iter()
            .map(|s| (s.to_string(), String::new()))
            .collect();
    };
    reader
        .records()
        .filter_map(Result::ok)
        .map(|r| (r[0].to_string(), r[1].to_string()))
        .collect()
}

fn ours(input: &str, region: &str) -> bool {
    numbering::normalise(input, region).is_ok()
}

fn baseline(input: &str, region: &str) -> bool {
    let id = region.parse::<phonenumber::country::Id>().ok();
    let text = if id.is_none() && !input.trim_start().starts_with('+') {
        format!("+{}", input.trim().trim_start_matches("00"))
    } else {
        input.to_owned()
    };
    phonenumber::parse(id, text).is_ok_and(|n| phonenumber::is_valid(&n))
}

/// Time for `threads` threads to share `rounds` passes over the mix.
fn parallel(
    mix: &Arc<Vec<(String, String)>>,
    threads: usize,
    f: fn(&str, &str) -> bool,
) -> Duration {
    #[allow(clippy::disallowed_methods)] // wall time is what a benchmark measures
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mix = Arc::clone(mix);
            thread::spawn(move || {
                mix.iter()
                    .skip(t)
                    .step_by(threads)
                    .filter(|(i, r)| f(i, r))
                    .count()
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mix = Arc::new(traffic());
    let report = numbering::warm_up();
    eprintln!("warmed up: {report}");

    let mut group = c.benchmark_group("normalise");
    group.throughput(Throughput::Elements(mix.len() as u64));
    group.sample_size(10);
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    for threads in [1, cores] {
        group.bench_with_input(BenchmarkId::new("ours", threads), &threads, |b, &t| {
            b.iter_custom(|iters| (0..iters).map(|_| parallel(&mix, t, ours)).sum())
        });
    }
    group.finish();

    // The baseline is about 300 times slower: a smaller slice keeps the run short.
    let slice: Arc<Vec<_>> = Arc::new(mix.iter().take(1_000).cloned().collect());
    let mut group = c.benchmark_group("normalise-baseline-1000");
    group.throughput(Throughput::Elements(slice.len() as u64));
    group.sample_size(10);
    for threads in [1, cores] {
        group.bench_with_input(
            BenchmarkId::new("phonenumber", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| (0..iters).map(|_| parallel(&slice, t, baseline)).sum()),
        );
        group.bench_with_input(BenchmarkId::new("ours", threads), &threads, |b, &t| {
            b.iter_custom(|iters| (0..iters).map(|_| parallel(&slice, t, ours)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
