//! The fault catalogue: each fault has a name, one knob and a default, and
//! a seeded plan says when each one strikes. The stand-ins read the knobs
//! the controller turns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use madsim::rand::Rng;

/// One kind of fault the simulation can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    DbOutage,
    DbLatency,
    DbErrors,
    RedisOutage,
    RedisLatency,
    RedisCorrupt,
    NatsPartition,
    NatsDelay,
    NatsDrop,
    NatsDuplicate,
    NatsReorder,
    ReplicaCrash,
    ClientPartition,
    ClockJump,
    ClockSkew,
    RuleChange,
    RuleInvalid,
    OperatorFlap,
    Burst,
}

impl Fault {
    pub const ALL: [Fault; 19] = [
        Fault::DbOutage,
        Fault::DbLatency,
        Fault::DbErrors,
        Fault::RedisOutage,
        Fault::RedisLatency,
        Fault::RedisCorrupt,
        Fault::NatsPartition,
        Fault::NatsDelay,
        Fault::NatsDrop,
        Fault::NatsDuplicate,
        Fault::NatsReorder,
        Fault::ReplicaCrash,
        Fault::ClientPartition,
        Fault::ClockJump,
        Fault::ClockSkew,
        Fault::RuleChange,
        Fault::RuleInvalid,
        Fault::OperatorFlap,
        Fault::Burst,
    ];

    /// Name, the knob's meaning and its default.
    pub fn describe(self) -> (&'static str, &'static str, f64) {
        match self {
            Fault::DbOutage => ("db-outage", "seconds PostgreSQL is cut off", 4.0),
            Fault::DbLatency => ("db-latency", "added ms per query", 300.0),
            Fault::DbErrors => ("db-errors", "share of queries that fail", 0.5),
            Fault::RedisOutage => ("redis-outage", "seconds Redis is cut off", 4.0),
            Fault::RedisLatency => ("redis-latency", "added ms per command", 400.0),
            Fault::RedisCorrupt => ("redis-corrupt", "share of values read corrupted", 0.5),
            Fault::NatsPartition => ("nats-partition", "seconds NATS is cut off", 6.0),
            Fault::NatsDelay => ("nats-delay", "ms health events are held", 800.0),
            Fault::NatsDrop => ("nats-drop", "share of health events lost", 0.3),
            Fault::NatsDuplicate => ("nats-duplicate", "share delivered twice", 0.3),
            Fault::NatsReorder => ("nats-reorder", "share followed by an older event", 0.3),
            Fault::ReplicaCrash => ("replica-crash", "seconds a crashed replica stays down", 3.0),
            Fault::ClientPartition => ("client-partition", "seconds a client is cut off", 4.0),
            Fault::ClockJump => ("clock-jump", "minutes a replica clock jumps", 30.0),
            Fault::ClockSkew => ("clock-skew", "largest replica skew in seconds", 5.0),
            Fault::RuleChange => ("rule-change", "valid table changes per run", 3.0),
            Fault::RuleInvalid => ("rule-invalid", "invalid table changes per run", 2.0),
            Fault::OperatorFlap => ("operator-flap", "mean seconds between health flips", 4.0),
            Fault::Burst => ("burst", "requests per second in a burst", 600.0),
        }
    }

    pub fn name(self) -> &'static str {
        self.describe().0
    }

    /// Faults that last a while rather than happen at an instant.
    fn windowed(self) -> bool {
        !matches!(
            self,
            Fault::ClockSkew | Fault::RuleChange | Fault::RuleInvalid | Fault::OperatorFlap
        )
    }
}

/// The faults switched on, with their knobs.
#[derive(Clone, Debug, Default)]
pub struct FaultSet {
    pub knobs: BTreeMap<Fault, f64>,
}

impl FaultSet {
    /// Reads `all`, `none` or `name[=knob],...`.
    pub fn parse(text: &str) -> Result<FaultSet, String> {
        let mut set = FaultSet::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, knob) = match item.split_once('=') {
                Some((n, k)) => (n, Some(k)),
                None => (item, None),
            };
            if name == "none" {
                continue;
            }
            if name == "all" {
                for f in Fault::ALL {
                    set.knobs.insert(f, f.describe().2);
                }
                continue;
            }
            let fault = Fault::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| format!("unknown fault {name:?}; known: {}", names()))?;
            let value = match knob {
                Some(k) => k
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("fault {name}: knob {k:?} is not a number >= 0"))?,
                None => fault.describe().2,
            };
            set.knobs.insert(fault, value);
        }
        Ok(set)
    }

    pub fn knob(&self, fault: Fault) -> Option<f64> {
        self.knobs.get(&fault).copied()
    }
}

fn names() -> String {
    let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
    names.join(", ")
}

/// One planned fault: `[start_ms, end_ms)` of simulated time; `target` is
/// the replica or client it hits, when it hits one.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub fault: Fault,
    pub start_ms: i64,
    pub end_ms: i64,
    pub target: Option<usize>,
    pub knob: f64,
}

impl Window {
    pub fn overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        self.start_ms <= to_ms && from_ms < self.end_ms
    }
}

/// When faults strike: two windows of each windowed fault and the instants
/// of table changes, all before `heal_ms`.
pub fn plan(set: &FaultSet, heal_ms: i64, replicas: usize, clients: usize) -> Vec<Window> {
    let mut rng = madsim::rand::thread_rng();
    let mut windows = Vec::new();
    let first_ms = 5_000;
    for (&fault, &knob) in &set.knobs {
        let count = match fault {
            Fault::RuleChange | Fault::RuleInvalid => knob.round() as usize,
            f if f.windowed() => 2,
            _ => 0,
        };
        for _ in 0..count {
            let length_ms = window_length_ms(fault, knob);
            let latest = (heal_ms - length_ms).max(first_ms + 1);
            let start_ms = rng.gen_range(first_ms..latest);
            let target = match fault {
                Fault::ReplicaCrash | Fault::ClockJump => Some(rng.gen_range(0..replicas)),
                Fault::ClientPartition => Some(rng.gen_range(0..clients)),
                _ => None,
            };
            windows.push(Window {
                fault,
                start_ms,
                end_ms: start_ms + length_ms,
                target,
                knob,
            });
        }
    }
    windows.sort_by(|a, b| a.start_ms.cmp(&b.start_ms).then(a.fault.cmp(&b.fault)));
    windows
}

fn window_length_ms(fault: Fault, knob: f64) -> i64 {
    match fault {
        Fault::DbOutage
        | Fault::RedisOutage
        | Fault::NatsPartition
        | Fault::ReplicaCrash
        | Fault::ClientPartition => (knob * 1000.0) as i64,
        Fault::Burst => 2_000,
        Fault::RuleChange | Fault::ClockJump => 1,
        // An invalid table stays in the database until someone repairs it.
        Fault::RuleInvalid => 5_000,
        _ => 4_000,
    }
}

/// A share or a duration the stand-ins read on every call.
#[derive(Debug, Default)]
pub struct Knob(AtomicU64);

impl Knob {
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::SeqCst);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::SeqCst))
    }

    /// Whether a draw falls inside the share this knob holds.
    pub fn strikes(&self) -> bool {
        let share = self.get();
        share > 0.0 && madsim::rand::thread_rng().gen_bool(share.min(1.0))
    }
}

/// The knobs of every fault the stand-ins apply themselves.
#[derive(Debug, Default)]
pub struct Knobs {
    pub db_latency_ms: Knob,
    pub db_errors: Knob,
    pub redis_latency_ms: Knob,
    pub redis_corrupt: Knob,
    pub nats_delay_ms: Knob,
    pub nats_drop: Knob,
    pub nats_duplicate: Knob,
    pub nats_reorder: Knob,
    pub burst_rate: Knob,
}

impl Knobs {
    /// The knob a windowed fault turns, if the stand-ins apply it.
    pub fn of(&self, fault: Fault) -> Option<&Knob> {
        Some(match fault {
            Fault::DbLatency => &self.db_latency_ms,
            Fault::DbErrors => &self.db_errors,
            Fault::RedisLatency => &self.redis_latency_ms,
            Fault::RedisCorrupt => &self.redis_corrupt,
            Fault::NatsDelay => &self.nats_delay_ms,
            Fault::NatsDrop => &self.nats_drop,
            Fault::NatsDuplicate => &self.nats_duplicate,
            Fault::NatsReorder => &self.nats_reorder,
            Fault::Burst => &self.burst_rate,
            _ => return None,
        })
    }
}
