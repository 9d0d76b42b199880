//! The invariants: every answer is checked against the reference of the
//! rules on the table version it names, with the operators' true health and
//! the fault plan; throughput, weights, convergence and the log are checked
//! when the run ends.
//!
//! Bounds stated here, in simulated time:
//! - a health event reaches every replica within `HEALTH_BOUND_MS` (plus the
//!   `nats-delay` knob while it applies); until then either state is allowed;
//! - while a replica may have missed events (NATS cut off or losing events,
//!   the replica has not answered with a table since it started, its clock
//!   just jumped) anything the rules allow for some health is accepted, up
//!   to a heartbeat after that ends;
//! - after the last fault heals, health and rules converge within
//!   `CONVERGE_MS`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use routing_engine::core::health::HealthStatus;
use routing_engine::core::model::{SenderKind, TableSource};

use crate::clock::minute_at;
use crate::data::Row;
use crate::faults::{Fault, Window};
use crate::reference::{self, Expected};

/// From publication to every replica's book, with no fault in the way.
pub const HEALTH_BOUND_MS: i64 = 500;
/// Every operator's state is published again this often.
pub const HEARTBEAT_MS: i64 = 3_000;
/// A committed table is in service everywhere within this, without faults.
pub const RELOAD_BOUND_MS: i64 = 2_000;
/// After the last fault heals, health and rules agree with the truth.
pub const CONVERGE_MS: i64 = 5_000;
/// A replica's first table and first events after a (re)start.
const START_MS: i64 = 3_000;
const DB_FAULTS: [Fault; 3] = [Fault::DbOutage, Fault::DbLatency, Fault::DbErrors];

/// A table version as the database committed it.
pub struct TableEntry {
    pub source: Arc<TableSource>,
    pub valid: bool,
    pub at_ms: i64,
}

/// What really happened, as the controller made it happen.
#[derive(Default)]
pub struct Truth {
    pub base_unix_ms: i64,
    pub tables: BTreeMap<u64, TableEntry>,
    /// Per operator, each change of status and when it was published.
    pub health: BTreeMap<String, Vec<(i64, HealthStatus)>>,
    /// Per replica, each change of its clock offset.
    pub offsets: Vec<Vec<(i64, i64)>>,
    pub windows: Vec<Window>,
    pub heal_ms: i64,
    /// Per replica, its first answer with a table after each start.
    pub ready: Vec<Vec<i64>>,
}

impl Truth {
    pub fn status_at(&self, operator: &str, at_ms: i64) -> HealthStatus {
        let changes = self.health.get(operator).map(Vec::as_slice).unwrap_or(&[]);
        let mut status = HealthStatus::Up;
        for (t, s) in changes {
            if *t > at_ms {
                break;
            }
            status = *s;
        }
        status
    }

    fn down_throughout(&self, operator: &str, from_ms: i64, to_ms: i64) -> bool {
        let changes = self.health.get(operator).map(Vec::as_slice).unwrap_or(&[]);
        self.status_at(operator, from_ms) == HealthStatus::Down
            && !changes.iter().any(|(t, _)| *t > from_ms && *t <= to_ms)
    }

    fn down_sometime(&self, operator: &str, from_ms: i64, to_ms: i64) -> bool {
        let changes = self.health.get(operator).map(Vec::as_slice).unwrap_or(&[]);
        self.status_at(operator, from_ms) == HealthStatus::Down
            || changes
                .iter()
                .any(|(t, s)| *t > from_ms && *t <= to_ms && *s == HealthStatus::Down)
    }

    fn offset_at(&self, replica: usize, at_ms: i64) -> i64 {
        let mut offset = 0;
        for (t, o) in self.offsets.get(replica).map(Vec::as_slice).unwrap_or(&[]) {
            if *t > at_ms {
                break;
            }
            offset = *o;
        }
        offset
    }

    fn any(&self, faults: &[Fault], target: Option<usize>, from_ms: i64, to_ms: i64) -> bool {
        self.windows.iter().any(|w| {
            faults.contains(&w.fault)
                && (target.is_none() || w.target.is_none() || w.target == target)
                && w.overlaps(from_ms, to_ms)
        })
    }

    /// Whether replica `r` may hold health that is not the truth at `at_ms`
    /// for longer than the bound.
    fn health_exempt(&self, r: usize, at_ms: i64) -> bool {
        let margin = self.health_bound(at_ms - HEARTBEAT_MS, at_ms) + HEARTBEAT_MS;
        at_ms < START_MS + margin
            || self.any(
                &[Fault::NatsPartition, Fault::NatsDrop],
                None,
                at_ms - margin,
                at_ms,
            )
            || self.any(&[Fault::ClockJump], Some(r), at_ms - margin, at_ms)
            || self.kept_from_tables(r, at_ms - margin)
            || self.windows.iter().any(|w| {
                w.fault == Fault::ReplicaCrash
                    && w.target == Some(r)
                    && w.start_ms <= at_ms
                    && at_ms < self.ready_after(r, w.end_ms).saturating_add(margin)
            })
            || at_ms < self.ready_after(r, 0).saturating_add(margin)
    }

    /// When replica `r` first answered with a table after `from_ms`: its
    /// first table was in by then. Never, if it has not yet.
    fn ready_after(&self, r: usize, from_ms: i64) -> i64 {
        let marks = self.ready.get(r).map(Vec::as_slice).unwrap_or(&[]);
        marks
            .iter()
            .copied()
            .find(|t| *t >= from_ms)
            .unwrap_or(i64::MAX)
    }

    /// Notes that replica `r` answered with a table at `at_ms`, once per
    /// start.
    pub fn note_ready(&mut self, r: usize, at_ms: i64) {
        let started = self
            .windows
            .iter()
            .filter(|w| w.fault == Fault::ReplicaCrash && w.target == Some(r) && w.end_ms <= at_ms)
            .map(|w| w.end_ms)
            .max()
            .unwrap_or(0);
        if self.ready.len() <= r {
            self.ready.resize(r + 1, Vec::new());
        }
        if self.ready[r].last().is_none_or(|t| *t < started) {
            self.ready[r].push(at_ms);
        }
    }

    /// Whether replica `r` may have no table at `at_ms`: it (re)started not
    /// long before, or it started while the database held a table it must
    /// refuse and no valid one has been committed since.
    pub fn may_be_unready(&self, r: usize, at_ms: i64) -> bool {
        self.health_exempt(r, at_ms) || self.kept_from_tables(r, at_ms)
    }

    /// Whether every table committed since replica `r` last started was
    /// refused or replaced too soon for it to load.
    fn kept_from_tables(&self, r: usize, at_ms: i64) -> bool {
        let started = self
            .windows
            .iter()
            .filter(|w| w.fault == Fault::ReplicaCrash && w.target == Some(r) && w.end_ms <= at_ms)
            .map(|w| w.end_ms)
            .max()
            .unwrap_or(0);
        // Each stretch since the start in which the latest commit was one
        // table; a valid one that lasted long enough would have loaded.
        let mut commits: Vec<(i64, bool)> =
            self.tables.values().map(|e| (e.at_ms, e.valid)).collect();
        commits.sort();
        let mut stretches = Vec::new();
        for (i, &(at, valid)) in commits.iter().enumerate() {
            let until = commits.get(i + 1).map_or(at_ms, |next| next.0.min(at_ms));
            let from = at.max(started);
            if from < until {
                stretches.push((from, until, valid));
            }
        }
        !stretches.iter().any(|&(from, until, valid)| {
            valid && until - from >= START_MS + self.db_fault_after(from, &DB_FAULTS)
        })
    }

    /// How long database faults go on after `from_ms`.
    fn db_fault_after(&self, from_ms: i64, db: &[Fault]) -> i64 {
        self.windows
            .iter()
            .filter(|w| {
                db.contains(&w.fault) && w.end_ms > from_ms && w.start_ms <= from_ms + START_MS
            })
            .map(|w| w.end_ms - from_ms)
            .max()
            .unwrap_or(0)
    }

    fn health_bound(&self, from_ms: i64, to_ms: i64) -> i64 {
        let delay = self
            .windows
            .iter()
            .filter(|w| {
                w.fault == Fault::NatsDelay && w.overlaps(from_ms - 2 * w.knob as i64, to_ms)
            })
            .map(|w| w.knob as i64)
            .max()
            .unwrap_or(0);
        HEALTH_BOUND_MS + delay
    }

    fn latest_valid(&self, at_ms: i64) -> Option<u64> {
        self.tables
            .iter()
            .filter(|(_, e)| e.valid && e.at_ms <= at_ms)
            .map(|(v, _)| *v)
            .max()
    }
}

/// One request as a client saw it.
#[derive(Clone, Debug)]
pub struct Record {
    pub client: usize,
    pub message_id: String,
    pub row: usize,
    pub account: String,
    pub alphanumeric: bool,
    pub parts: u32,
    pub excluded: Vec<String>,
    pub t_send: i64,
    pub t_recv: i64,
    /// The replica that answered, or the last one tried.
    pub replica: usize,
    pub answer: Answer,
}

#[derive(Clone, Debug)]
pub enum Answer {
    Routed(Routed),
    Refused {
        reason: String,
        text: String,
    },
    /// No replica answered within the deadline: `(replica, why)` per try.
    Unanswered(Vec<(usize, String)>),
}

#[derive(Clone, Debug)]
pub struct Routed {
    pub operator: String,
    pub fallbacks: Vec<String>,
    pub tier: u32,
    pub version: u64,
    pub network: String,
    pub network_source: String,
    pub e164: String,
    /// `(operator, outcome, reason)` per line of the explain trace.
    pub explain: Vec<(String, String, String)>,
    /// The whole response as text, to look for passwords in.
    pub text: String,
}

impl Routed {
    fn throttled(&self, operator: &str) -> bool {
        self.explain
            .iter()
            .any(|(op, _, why)| op == operator && why.contains("throughput limit"))
    }
}

/// A broken invariant.
#[derive(Clone, Debug)]
pub struct Violation {
    pub at_ms: i64,
    pub invariant: &'static str,
    pub detail: String,
}

/// Checks each record as it arrives and keeps what the end checks need.
pub struct Checker {
    rows: Arc<Vec<Row>>,
    passwords: Vec<String>,
    pub violations: Vec<Violation>,
    pub records: Vec<Record>,
}

impl Checker {
    pub fn new(rows: Arc<Vec<Row>>, passwords: Vec<String>) -> Checker {
        Checker {
            rows,
            passwords,
            violations: Vec::new(),
            records: Vec::new(),
        }
    }

    fn fail(&mut self, at_ms: i64, invariant: &'static str, detail: String) {
        self.violations.push(Violation {
            at_ms,
            invariant,
            detail,
        });
    }

    /// Checks one answer the moment the client has it.
    pub fn check(&mut self, truth: &Truth, record: Record) {
        let row = self.rows[record.row].clone();
        let problems = match &record.answer {
            Answer::Routed(routed) => self.routed(truth, &row, &record, routed),
            Answer::Refused { reason, text } => self.refused(truth, &row, &record, reason, text),
            Answer::Unanswered(tries) => unanswered(truth, &record, tries),
        };
        for (invariant, detail) in problems {
            let detail = format!(
                "{} (message {}, replica {})",
                detail, record.message_id, record.replica
            );
            self.fail(record.t_recv, invariant, detail);
        }
        self.records.push(record);
    }

    fn routed(&self, truth: &Truth, row: &Row, rec: &Record, d: &Routed) -> Problems {
        let mut problems = Problems::new();
        if let Some(p) = self.passwords.iter().find(|p| d.text.contains(p.as_str())) {
            problems.push((
                "no-password",
                format!("response holds the password of {p:.14}..."),
            ));
        }
        if rec.excluded.contains(&d.operator) {
            problems.push((
                "exclusions",
                format!("{} was excluded but chosen", d.operator),
            ));
        }
        let Some(entry) = truth.tables.get(&d.version).filter(|e| e.valid) else {
            problems.push((
                "table-version",
                format!("served version {} was never valid", d.version),
            ));
            return problems;
        };
        if !row.valid || d.e164 != row.e164 {
            problems.push((
                "normalisation",
                format!("{:?} routed as {}", row.input, d.e164),
            ));
            return problems;
        }
        let network = if d.network_source == "prefix-fallback" {
            let db = [Fault::DbOutage, Fault::DbLatency, Fault::DbErrors];
            if !truth.any(&db, None, rec.t_send - 1_000, rec.t_recv) {
                problems.push((
                    "network",
                    format!("prefix-fallback for {} with PostgreSQL up", d.e164),
                ));
            }
            d.network.as_str()
        } else {
            if d.network != row.network {
                problems.push((
                    "network",
                    format!("{} on {:?}, not {:?}", d.e164, d.network, row.network),
                ));
            }
            row.network.as_str()
        };

        let mut why = String::new();
        for (minute, view) in views(truth, rec) {
            let q = query(row, rec, network, minute);
            match judge_routed(&entry.source, &q, &view, d) {
                Ok(()) => return problems,
                Err(e) => why = e,
            }
        }
        let trace: Vec<String> = d
            .explain
            .iter()
            .map(|(op, _, why)| format!("{op}: {why}"))
            .collect();
        problems.push(("reference", format!("{why}; trace {trace:?}")));
        problems
    }

    fn refused(
        &self,
        truth: &Truth,
        row: &Row,
        rec: &Record,
        reason: &str,
        text: &str,
    ) -> Problems {
        let mut problems = Problems::new();
        if let Some(p) = self.passwords.iter().find(|p| text.contains(p.as_str())) {
            problems.push((
                "no-password",
                format!("refusal holds the password of {p:.14}..."),
            ));
        }
        if reason == "NOT_READY" {
            if !truth.may_be_unready(rec.replica, rec.t_send) {
                problems.push(("refusal", "NOT_READY long after a start".into()));
            }
            return problems;
        }
        if !row.valid {
            if reason != "DESTINATION_INVALID" {
                problems.push((
                    "normalisation",
                    format!("invalid {:?} got {reason}", row.input),
                ));
            }
            return problems;
        }
        match reason {
            "DESTINATION_INVALID" | "SENDER_INVALID" | "REQUEST_INVALID" => {
                problems.push(("refusal", format!("valid request refused with {reason}")));
            }
            _ => {
                if !self.refusal_allowed(truth, row, rec, reason) {
                    problems.push(("reference", format!("{reason} but the rules route it")));
                }
            }
        }
        problems
    }

    fn refusal_allowed(&self, truth: &Truth, row: &Row, rec: &Record, reason: &str) -> bool {
        let lagging = truth.any(
            &[
                Fault::DbOutage,
                Fault::DbLatency,
                Fault::DbErrors,
                Fault::ReplicaCrash,
            ],
            None,
            rec.t_send - 20_000,
            rec.t_recv,
        );
        let tables = truth.tables.iter().filter(|(v, e)| {
            let newer = truth
                .tables
                .range(*v + 1..)
                .find(|(_, n)| n.valid)
                .map_or(i64::MAX, |(_, n)| n.at_ms);
            e.valid && e.at_ms <= rec.t_recv && (lagging || newer > rec.t_send - RELOAD_BOUND_MS)
        });
        let db = [Fault::DbOutage, Fault::DbLatency, Fault::DbErrors];
        let mut networks = vec![row.network.as_str()];
        if truth.any(&db, None, rec.t_send - 1_000, rec.t_recv) {
            networks.push(&row.prefix_network);
        }
        for (_, entry) in tables {
            for ((minute, view), network) in views(truth, rec)
                .iter()
                .flat_map(|v| networks.iter().map(move |n| (v, *n)))
            {
                let q = query(row, rec, network, *minute);
                let down = |id: &str| view.down.contains(id);
                let optimistic = reference::expect(&entry.source, &q, &down);
                let pessimistic = reference::expect(&entry.source, &q, &|id| view.maybe(id));
                let allows = |e: &Expected| match e {
                    Expected::Refused(r) => *r == reason,
                    Expected::Route(_) => reason == "ALL_OPERATORS_THROTTLED",
                };
                if allows(&optimistic) || allows(&pessimistic) {
                    return true;
                }
            }
        }
        false
    }

    /// The checks made when the run has ended.
    pub fn finish(&mut self, truth: &Truth, log: &str) {
        self.throughput(truth);
        self.weights(truth);
        self.convergence(truth);
        for line in log.lines() {
            if let Some(p) = self.passwords.iter().find(|p| line.contains(p.as_str())) {
                self.fail(
                    0,
                    "no-password",
                    format!("log line holds the password of {p:.14}..."),
                );
            }
        }
    }

    /// No operator admits more parts in a simulated second than its limit.
    /// Only answers received inside the second are counted (a lower bound
    /// of what was admitted in it). While Redis is failing and one second
    /// after, the bound is twice the limit: parts admitted through Redis and
    /// each replica's local share overlap once on the way in and out.
    // Limitation: a replica that restarts or whose clock jumps while limits
    // are local forgets or misdates its local log; those seconds are not
    // checked.
    fn throughput(&mut self, truth: &Truth) {
        let mut per_second: BTreeMap<(String, i64), (u32, u32)> = BTreeMap::new();
        for rec in &self.records {
            let Answer::Routed(d) = &rec.answer else {
                continue;
            };
            let second = rec.t_send.div_euclid(1_000);
            if rec.t_recv.div_euclid(1_000) != second {
                continue;
            }
            let limit = truth.tables.get(&d.version).and_then(|e| {
                e.source
                    .operators
                    .iter()
                    .find(|o| o.id == d.operator)
                    .map(|o| o.tps_limit)
            });
            let slot = per_second
                .entry((d.operator.clone(), second))
                .or_insert((0, 0));
            slot.0 += rec.parts;
            slot.1 = limit.unwrap_or(u32::MAX);
        }
        let redis = [Fault::RedisOutage, Fault::RedisLatency];
        let unsettled = [Fault::ReplicaCrash, Fault::ClockJump];
        for ((operator, second), (parts, limit)) in per_second {
            let (from, to) = (second * 1_000, second * 1_000 + 999);
            let near_redis = truth
                .windows
                .iter()
                .any(|w| redis.contains(&w.fault) && w.start_ms <= to && from < w.end_ms + 2_000);
            if near_redis && truth.any(&unsettled, None, from - 3_000, to) {
                continue;
            }
            let bound = if near_redis {
                limit.saturating_mul(2)
            } else {
                limit
            };
            if parts > bound {
                let detail =
                    format!("{operator} carried {parts} parts in second {second}, limit {bound}");
                self.fail(from, "throughput", detail);
            }
        }
    }

    /// First choices follow the weights among equally healthy operators of
    /// the winning tier, within five standard deviations plus 2 points.
    fn weights(&mut self, truth: &Truth) {
        let mut groups: BTreeMap<Vec<(String, u32)>, BTreeMap<String, u32>> = BTreeMap::new();
        for rec in &self.records {
            if let Some((group, chosen)) = weight_sample(truth, &self.rows, rec) {
                *groups.entry(group).or_default().entry(chosen).or_default() += 1;
            }
        }
        for (group, counts) in groups {
            let n: u32 = counts.values().sum();
            let total: u32 = group.iter().map(|(_, w)| w).sum();
            if n < 300 || total == 0 {
                continue;
            }
            for (op, weight) in &group {
                let want = f64::from(*weight) / f64::from(total);
                let got = f64::from(counts.get(op).copied().unwrap_or(0)) / f64::from(n);
                let tolerance = 5.0 * (want * (1.0 - want) / f64::from(n)).sqrt() + 0.02;
                if (got - want).abs() > tolerance {
                    let detail = format!(
                        "{op} first in {:.1}% of {n} draws among {group:?}, weight says {:.1}%",
                        got * 100.0,
                        want * 100.0
                    );
                    self.fail(truth.heal_ms, "weights", detail);
                }
            }
        }
    }

    /// After the last fault heals and `CONVERGE_MS` more, every answer uses
    /// the latest valid table and every candidate's health is the truth.
    fn convergence(&mut self, truth: &Truth) {
        let from = truth.heal_ms + CONVERGE_MS;
        let latest = truth.latest_valid(from);
        let mut problems = Vec::new();
        for rec in self.records.iter().filter(|r| r.t_send >= from) {
            let Answer::Routed(d) = &rec.answer else {
                continue;
            };
            if Some(d.version) != latest {
                problems.push((
                    rec.t_recv,
                    format!("version {} served, latest is {latest:?}", d.version),
                ));
            }
            for (op, _, why) in &d.explain {
                let believed = ["(up)", "(degraded)", "(unknown)", "down"]
                    .into_iter()
                    .find(|h| why.ends_with(h));
                let truth_says = match truth.status_at(op, rec.t_send) {
                    HealthStatus::Up => "(up)",
                    HealthStatus::Degraded => "(degraded)",
                    HealthStatus::Down => "down",
                };
                if believed.is_some_and(|b| b != truth_says) {
                    problems.push((rec.t_recv, format!("{op} read {why:?}, truth {truth_says}")));
                }
            }
        }
        for (at, detail) in problems {
            self.fail(at, "convergence", detail);
        }
    }
}

type Problems = Vec<(&'static str, String)>;

fn unanswered(truth: &Truth, rec: &Record, tries: &[(usize, String)]) -> Problems {
    let slow = [Fault::DbLatency, Fault::RedisLatency];
    let excused = tries.iter().all(|(r, _)| {
        truth.any(
            &[Fault::ClientPartition],
            Some(rec.client),
            rec.t_send,
            rec.t_recv,
        ) || truth.any(&[Fault::ReplicaCrash], Some(*r), rec.t_send, rec.t_recv)
            || truth.any(&slow, None, rec.t_send - 1_000, rec.t_recv)
    });
    if excused {
        return Vec::new();
    }
    vec![(
        "answered",
        format!("no answer within the deadline: {tries:?}"),
    )]
}

/// Which operators a replica must and may believe down.
struct HealthView {
    down: BTreeSet<String>,
    maybe_down: BTreeSet<String>,
    anything: bool,
}

impl HealthView {
    fn maybe(&self, id: &str) -> bool {
        self.anything || self.maybe_down.contains(id)
    }
}

/// The minutes and health views the replica may have decided with.
fn views(truth: &Truth, rec: &Record) -> Vec<(u16, HealthView)> {
    let bound = truth.health_bound(rec.t_send, rec.t_recv);
    let from = rec.t_send - bound;
    let anything = truth.health_exempt(rec.replica, rec.t_send)
        || truth.health_exempt(rec.replica, rec.t_recv);
    let mut down = BTreeSet::new();
    let mut maybe_down = BTreeSet::new();
    for op in truth.health.keys() {
        if !anything && truth.down_throughout(op, from, rec.t_recv) {
            down.insert(op.clone());
        }
        if truth.down_sometime(op, from, rec.t_recv) {
            maybe_down.insert(op.clone());
        }
    }
    let mut minutes: Vec<u16> = [rec.t_send, rec.t_recv]
        .into_iter()
        .map(|t| minute_at(truth.base_unix_ms, t, truth.offset_at(rec.replica, t)))
        .collect();
    minutes.dedup();
    minutes
        .into_iter()
        .map(|m| {
            let view = HealthView {
                down: down.clone(),
                maybe_down: maybe_down.clone(),
                anything,
            };
            (m, view)
        })
        .collect()
}

fn query<'a>(row: &'a Row, rec: &'a Record, net: &'a str, minute: u16) -> reference::Query<'a> {
    reference::Query {
        account: &rec.account,
        digits: row.e164.trim_start_matches('+'),
        country_code: row.country_code,
        network: net,
        sender: if rec.alphanumeric {
            SenderKind::Alphanumeric
        } else {
            SenderKind::Numeric
        },
        minute,
        excluded: &rec.excluded,
    }
}

/// A routed answer against the reference with the health view.
fn judge_routed(
    table: &TableSource,
    q: &reference::Query<'_>,
    view: &HealthView,
    d: &Routed,
) -> Result<(), String> {
    let expected = reference::expect(table, q, &|id| view.down.contains(id));
    let Expected::Route(allowed) = expected else {
        return Err(format!(
            "the rules give {expected:?} but {} was chosen",
            d.operator
        ));
    };
    let Some(chosen) = allowed.get(&d.operator) else {
        return Err(format!(
            "{} chosen; the rules allow only {:?} (down: {:?})",
            d.operator,
            allowed.keys().collect::<Vec<_>>(),
            view.down
        ));
    };
    if chosen.tier != d.tier {
        return Err(format!(
            "{} reported tier {}, rules say {}",
            d.operator, d.tier, chosen.tier
        ));
    }
    for (id, a) in &allowed {
        if a.tier < chosen.tier && !view.maybe(id) && !d.throttled(id) {
            return Err(format!(
                "{} (tier {}) chosen while {id} of tier {} was up and not throttled",
                d.operator, chosen.tier, a.tier
            ));
        }
    }
    let mut tier = chosen.tier;
    for f in &d.fallbacks {
        let Some(a) = allowed.get(f) else {
            return Err(format!("fallback {f} is not allowed by the rules"));
        };
        if a.tier < tier {
            return Err(format!("fallback {f} of tier {} after tier {tier}", a.tier));
        }
        tier = a.tier;
    }
    Ok(())
}

/// A first choice that should follow the weights: no exclusions, nothing
/// throttled, every operator of the winning tier up and believed up.
fn weight_sample(
    truth: &Truth,
    rows: &[Row],
    rec: &Record,
) -> Option<(Vec<(String, u32)>, String)> {
    let Answer::Routed(d) = &rec.answer else {
        return None;
    };
    if !rec.excluded.is_empty() || d.explain.iter().any(|(_, _, w)| w.contains("throughput")) {
        return None;
    }
    if truth.health_exempt(rec.replica, rec.t_send) || d.network_source == "prefix-fallback" {
        return None;
    }
    let entry = truth.tables.get(&d.version)?;
    let row = &rows[rec.row];
    let minute = minute_at(
        truth.base_unix_ms,
        rec.t_send,
        truth.offset_at(rec.replica, rec.t_send),
    );
    let q = query(row, rec, &row.network, minute);
    let Expected::Route(allowed) = reference::expect(&entry.source, &q, &|_| false) else {
        return None;
    };
    let best = allowed.values().map(|a| a.tier).min()?;
    let group: Vec<(String, u32)> = allowed
        .iter()
        .filter(|(_, a)| a.tier == best)
        .map(|(id, a)| (id.clone(), a.weight))
        .collect();
    let all_up = group.iter().all(|(id, _)| {
        truth.status_at(id, rec.t_send - HEARTBEAT_MS) == HealthStatus::Up
            && !truth.down_sometime(id, rec.t_send - HEARTBEAT_MS, rec.t_recv)
            && truth.health.get(id).is_none_or(|c| {
                !c.iter()
                    .any(|(t, _)| *t > rec.t_send - HEARTBEAT_MS && *t <= rec.t_recv)
            })
            && d.explain
                .iter()
                .any(|(op, _, why)| op == id && why.ends_with("(up)"))
    });
    (group.len() > 1 && all_up).then(|| (group, d.operator.clone()))
}
