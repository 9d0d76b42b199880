//! Reads the routing table from the files operations teams edit: a carrier
//! directory of `<cc>.txt` number ranges and a routing directory of CSV files.
//! Every row is checked and every problem reported, so one run lists them all.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use csv::StringRecord;
use xxhash_rust::xxh3::Xxh3;

use super::fields::{self, ANY_ACCOUNT, BLOCK};
use crate::core::model::{NumberRange, Operator, PortedNumber, Rule, RuleTarget, TableSource};
use crate::secret::Secret;

/// The columns of `operators.csv`, in order.
pub const OPERATOR_COLUMNS: [&str; 9] = [
    "id",
    "name",
    "system_id",
    "password",
    "smpp_host",
    "smpp_port",
    "tps_limit",
    "alphanumeric_sender",
    "enabled",
];

/// The columns of `routes.csv`, in order.
pub const ROUTE_COLUMNS: [&str; 10] = [
    "id",
    "account",
    "match_type",
    "match_value",
    "priority",
    "operator_id",
    "weight",
    "cost_micros",
    "sender_type",
    "window_utc",
];

/// The columns of `ported.csv`, in order.
pub const PORTED_COLUMNS: [&str; 2] = ["e164", "network"];

/// File versions keep to 53 bits so that any JSON reader holds them exactly.
const VERSION_MASK: u64 = (1 << 53) - 1;

/// One thing wrong with the data, where a text editor would show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line number; 0 when the problem concerns the whole file.
    pub line: u64,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// Why the files produced no table.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the routing data has {} problem(s), the first: {}", .0.len(), first(.0))]
    Invalid(Vec<Problem>),
}

fn first(problems: &[Problem]) -> String {
    problems.first().map(Problem::to_string).unwrap_or_default()
}

/// An operator's SMPP password, kept apart from the [`Operator`] rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorSecret {
    pub operator_id: String,
    pub password: Secret,
}

/// The table the files describe, and the operator passwords they hold.
#[derive(Clone, Debug)]
pub struct LoadedFiles {
    pub source: TableSource,
    pub secrets: Vec<OperatorSecret>,
}

/// Where the carrier and routing directories are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDirs {
    pub carrier: PathBuf,
    pub routing: PathBuf,
    /// `true`: the full shared data set; `false`: the sample in the repository.
    pub shared: bool,
}

impl DataDirs {
    /// The full data at `<repo_root>/../shared/data` when it is there,
    /// otherwise the sample shipped in `<repo_root>/sample`.
    pub fn discover(repo_root: &Path) -> DataDirs {
        let shared = repo_root.join("..").join("shared").join("data");
        let carrier = shared.join("numbering").join("carrier");
        let routing = shared.join("routing");

        if carrier.is_dir() && routing.is_dir() {
            tracing::debug!(carrier = %carrier.display(), "using the shared routing data");
            return DataDirs {
                carrier,
                routing,
                shared: true,
            };
        }

        tracing::info!(
            missing = %shared.display(),
            "no shared routing data, using the sample in the repository"
        );
        DataDirs::sample(repo_root)
    }

    /// The small sample data set shipped in `<repo_root>/sample`.
    pub fn sample(repo_root: &Path) -> DataDirs {
        let sample = repo_root.join("sample");
        DataDirs {
            carrier: sample.join("carrier"),
            routing: sample.join("routing"),
            shared: false,
        }
    }

    /// Reads and checks both directories; see [`load`].
    pub fn load(&self) -> Result<LoadedFiles, LoadError> {
        load(&self.carrier, &self.routing)
    }
}

/// Reads and checks the carrier directory and the routing directory
/// (`operators.csv`, `routes.csv`, `ported.csv`). Any problem in any row
/// fails the whole load, with every problem found.
pub fn load(carrier_dir: &Path, routing_dir: &Path) -> Result<LoadedFiles, LoadError> {
    let mut problems = Vec::new();
    let mut hasher = Xxh3::new();

    let ranges = read_carrier_dir(carrier_dir, &mut hasher, &mut problems);

    let operators_csv = routing_dir.join("operators.csv");
    let (operators, secrets, known) = match read_file(&operators_csv, &mut hasher, &mut problems) {
        Some(bytes) => read_operators(&operators_csv, &bytes, &mut problems),
        None => Default::default(),
    };

    let routes_csv = routing_dir.join("routes.csv");
    let rules = match read_file(&routes_csv, &mut hasher, &mut problems) {
        Some(bytes) => read_rules(&routes_csv, &bytes, &known, &mut problems),
        None => Vec::new(),
    };

    let ported_csv = routing_dir.join("ported.csv");
    let ported = match read_file(&ported_csv, &mut hasher, &mut problems) {
        Some(bytes) => read_ported(&ported_csv, &bytes, &mut problems),
        None => Vec::new(),
    };

    if !problems.is_empty() {
        return Err(LoadError::Invalid(problems));
    }

    warn_unknown_networks(&rules, &ranges);
    let source = TableSource {
        version: hasher.digest() & VERSION_MASK,
        operators,
        ranges,
        ported,
        rules,
    };
    tracing::info!(
        version = source.version,
        operators = source.operators.len(),
        rules = source.rules.len(),
        ranges = source.ranges.len(),
        ported = source.ported.len(),
        "routing files read"
    );
    Ok(LoadedFiles { source, secrets })
}

/// Reads a whole file and feeds its name and contents to the version hash.
fn read_file(path: &Path, hasher: &mut Xxh3, problems: &mut Vec<Problem>) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(bytes) => {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            hasher.update(name.as_bytes());
            hasher.update(&[0]);
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
            Some(bytes)
        }
        Err(error) => {
            problems.push(Problem {
                file: path.to_path_buf(),
                line: 0,
                message: format!("cannot be read: {error}"),
            });
            None
        }
    }
}

fn read_carrier_dir(
    dir: &Path,
    hasher: &mut Xxh3,
    problems: &mut Vec<Problem>,
) -> Vec<NumberRange> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(Problem {
                file: dir.to_path_buf(),
                line: 0,
                message: format!("cannot be read: {error}"),
            });
            return Vec::new();
        }
    };

    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt") && path.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        problems.push(Problem {
            file: dir.to_path_buf(),
            line: 0,
            message: "holds no `<cc>.txt` number-range file".into(),
        });
    }

    let mut ranges = Vec::new();
    let mut seen = HashMap::new();
    for path in files {
        let Some(bytes) = read_file(&path, hasher, problems) else {
            continue;
        };
        read_carrier_file(&path, &bytes, &mut seen, &mut ranges, problems);
    }
    ranges
}

/// Reads one `<cc>.txt`: `prefix|Network` lines, `#` comments, blank lines.
fn read_carrier_file(
    path: &Path,
    bytes: &[u8],
    seen: &mut HashMap<String, (PathBuf, u64)>,
    ranges: &mut Vec<NumberRange>,
    problems: &mut Vec<Problem>,
) {
    let mut problem = |line: u64, message: String| {
        problems.push(Problem {
            file: path.to_path_buf(),
            line,
            message,
        })
    };

    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let country_code = match fields::parse_country_code(&stem) {
        Ok(cc) => cc,
        Err(_) => {
            problem(0, "the file name is not `<country code>.txt`".into());
            return;
        }
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        problem(0, "is not valid UTF-8".into());
        return;
    };

    for (index, line) in text.lines().enumerate() {
        let number = index as u64 + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }

        let Some((prefix, network)) = line.split_once('|') else {
            problem(number, format!("`{line}` is not `prefix|Network`"));
            continue;
        };
        let (prefix, network) = (prefix.trim(), network.trim());
        if let Err(message) = fields::check_prefix(prefix) {
            problem(number, message);
            continue;
        }
        if !prefix.starts_with(stem.as_ref()) {
            problem(
                number,
                format!("prefix `{prefix}` does not start with country code {stem}"),
            );
            continue;
        }
        if let Some((file, line)) = seen.get(prefix) {
            let earlier = format!("{}:{line}", file.display());
            problem(
                number,
                format!("prefix `{prefix}` is listed already at {earlier}"),
            );
            continue;
        }

        seen.insert(prefix.to_string(), (path.to_path_buf(), number));
        ranges.push(NumberRange {
            country_code,
            prefix: prefix.to_string(),
            network: network.to_string(),
        });
    }
}

/// Reads a CSV file with the given header, handing each well-formed record
/// and its line number to `row`.
fn read_csv(
    path: &Path,
    bytes: &[u8],
    columns: &[&str],
    problems: &mut Vec<Problem>,
    mut row: impl FnMut(u64, &StringRecord, &mut Vec<Problem>),
) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let problem = |line: u64, message: String| Problem {
        file: path.to_path_buf(),
        line,
        message,
    };

    match reader.headers() {
        Ok(header) if header.iter().eq(columns.iter().copied()) => {}
        Ok(header) => {
            let found = header.iter().collect::<Vec<_>>().join(",");
            let message = format!("header `{found}` is not `{}`", columns.join(","));
            problems.push(problem(1, message));
            return;
        }
        Err(error) => {
            problems.push(problem(1, format!("header cannot be read: {error}")));
            return;
        }
    }

    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                problems.push(problem(line, csv_error_message(&error)));
                continue;
            }
        };

        let line = record.position().map_or(0, |p| p.line());
        if record.len() != columns.len() {
            let message = format!("has {} fields, expected {}", record.len(), columns.len());
            problems.push(problem(line, message));
            continue;
        }
        row(line, &record, problems);
    }
}

fn csv_error_message(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Utf8 { .. } => "is not valid UTF-8".into(),
        _ => format!("cannot be read as CSV: {error}"),
    }
}

/// Collects the problems of one CSV row.
struct RowProblems<'a> {
    file: &'a Path,
    line: u64,
    problems: &'a mut Vec<Problem>,
    found: bool,
}

impl RowProblems<'_> {
    fn push(&mut self, message: String) {
        self.found = true;
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line: self.line,
            message,
        });
    }

    /// The value, or `T::default()` after noting the problem.
    fn take<T: Default>(&mut self, result: Result<T, String>) -> T {
        result.unwrap_or_else(|message| {
            self.push(message);
            T::default()
        })
    }

    fn non_empty(&mut self, column: &str, value: &str) {
        if value.trim().is_empty() {
            self.push(format!("{column} is empty"));
        }
    }
}

/// Reads an unsigned number column, saying which column is wrong and why.
fn parse_number<T: std::str::FromStr>(column: &str, text: &str, max: &str) -> Result<T, String> {
    if text.starts_with('-') && fields::is_digits(&text[1..]) {
        return Err(format!("{column} {text} is negative"));
    }
    if !fields::is_digits(text) {
        return Err(format!("{column} `{text}` is not a whole number"));
    }
    text.parse()
        .map_err(|_| format!("{column} {text} is above {max}"))
}

/// Refuses a zero that parsed fine.
fn above_zero<T: Default + PartialEq>(
    column: &str,
    parsed: Result<T, String>,
) -> Result<T, String> {
    match parsed {
        Ok(value) if value == T::default() => Err(format!("{column} must be above 0")),
        other => other,
    }
}

fn is_identifier(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn read_operators(
    path: &Path,
    bytes: &[u8],
    problems: &mut Vec<Problem>,
) -> (Vec<Operator>, Vec<OperatorSecret>, HashSet<String>) {
    let mut operators = Vec::new();
    let mut secrets = Vec::new();
    let mut lines_by_id: HashMap<String, u64> = HashMap::new();

    read_csv(
        path,
        bytes,
        &OPERATOR_COLUMNS,
        problems,
        |line, record, problems| {
            let mut row = RowProblems {
                file: path,
                line,
                problems,
                found: false,
            };
            let id = &record[0];

            if !is_identifier(id) || id == BLOCK {
                row.push(format!(
                    "id `{id}` is not letters, digits, `.`, `_` and `-`"
                ));
            } else if let Some(earlier) = lines_by_id.get(id) {
                row.push(format!(
                    "operator id `{id}` is used already on line {earlier}"
                ));
                return;
            } else {
                lines_by_id.insert(id.to_string(), line);
            }
            row.non_empty("name", &record[1]);
            row.non_empty("system_id", &record[2]);
            row.non_empty("password", &record[3]);
            row.non_empty("smpp_host", &record[4]);
            let smpp_port = parse_number("smpp_port", &record[5], "65535");
            let smpp_port: u16 = row.take(above_zero("smpp_port", smpp_port));
            let tps_limit = parse_number("tps_limit", &record[6], "4294967295");
            let tps_limit: u32 = row.take(above_zero("tps_limit", tps_limit));
            let alphanumeric_sender =
                row.take(fields::parse_bool("alphanumeric_sender", &record[7]));
            let enabled = row.take(fields::parse_bool("enabled", &record[8]));

            if row.found {
                return;
            }
            operators.push(Operator {
                id: id.to_string(),
                name: record[1].to_string(),
                system_id: record[2].to_string(),
                smpp_host: record[4].to_string(),
                smpp_port,
                tps_limit,
                alphanumeric_sender,
                enabled,
            });
            secrets.push(OperatorSecret {
                operator_id: id.to_string(),
                password: Secret::new(&record[3]),
            });
        },
    );

    // Rules may name an operator whose row has other problems: that is
    // reported once, on the operator's row, not again on every rule.
    let known = lines_by_id.into_keys().collect();
    (operators, secrets, known)
}

fn read_rules(
    path: &Path,
    bytes: &[u8],
    operators: &HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut lines_by_id: HashMap<String, u64> = HashMap::new();

    read_csv(
        path,
        bytes,
        &ROUTE_COLUMNS,
        problems,
        |line, record, problems| {
            let mut row = RowProblems {
                file: path,
                line,
                problems,
                found: false,
            };
            let id = &record[0];

            if id.trim().is_empty() {
                row.push("id is empty".into());
            } else if let Some(earlier) = lines_by_id.get(id) {
                row.push(format!("rule id `{id}` is used already on line {earlier}"));
                return;
            } else {
                lines_by_id.insert(id.to_string(), line);
            }
            row.non_empty("account", &record[1]);
            let account = (&record[1] != ANY_ACCOUNT).then(|| record[1].to_string());
            let matcher = row.take(fields::parse_match(&record[2], &record[3]).map(Some));
            let priority: u32 = row.take(parse_number("priority", &record[4], "4294967295"));
            let target = match &record[5] {
                BLOCK => RuleTarget::Block,
                known if operators.contains(known) => RuleTarget::Operator(known.to_string()),
                unknown => {
                    row.push(format!("operator_id `{unknown}` is not in operators.csv"));
                    RuleTarget::Block
                }
            };
            let weight = parse_number("weight", &record[6], "4294967295");
            let weight: u32 = match &record[5] {
                BLOCK => row.take(weight),
                _ => row.take(above_zero("weight on a rule that is not BLOCK", weight)),
            };
            let cost: i64 = row.take(parse_number(
                "cost_micros",
                &record[7],
                "9223372036854775807",
            ));
            let sender = row.take(fields::parse_sender(&record[8]).map(Some));
            let window = row.take(fields::parse_window(&record[9]));

            let (Some(matcher), Some(sender), false) = (matcher, sender, row.found) else {
                return;
            };
            rules.push(Rule {
                id: id.to_string(),
                account,
                matcher,
                priority,
                target,
                weight,
                cost_micros: cost as u64,
                sender,
                window,
            });
        },
    );
    rules
}

fn read_ported(path: &Path, bytes: &[u8], problems: &mut Vec<Problem>) -> Vec<PortedNumber> {
    let mut ported = Vec::new();
    let mut lines_by_number: HashMap<String, u64> = HashMap::new();

    read_csv(
        path,
        bytes,
        &PORTED_COLUMNS,
        problems,
        |line, record, problems| {
            let mut row = RowProblems {
                file: path,
                line,
                problems,
                found: false,
            };
            let (e164, network) = (&record[0], &record[1]);

            row.take(fields::check_e164(e164));
            if let Some(earlier) = lines_by_number.get(e164) {
                row.push(format!("{e164} is listed already on line {earlier}"));
                return;
            }
            match fields::parse_network(network) {
                Err(message) => row.push(message),
                Ok((cc, _)) if !row.found && !e164[1..].starts_with(&cc.to_string()) => {
                    row.push(format!(
                        "{e164} is not in country {cc} of network `{network}`"
                    ));
                }
                Ok(_) => {}
            }

            if row.found {
                return;
            }
            lines_by_number.insert(e164.to_string(), line);
            ported.push(PortedNumber {
                e164: e164.to_string(),
                network: network.to_string(),
            });
        },
    );
    ported
}

/// Network rules that no number range can reach are legal but suspicious.
fn warn_unknown_networks(rules: &[Rule], ranges: &[NumberRange]) {
    let networks: HashSet<String> = ranges
        .iter()
        .map(|r| format!("{}:{}", r.country_code, r.network))
        .collect();

    for rule in rules {
        if let crate::core::model::RuleMatch::Network(network) = &rule.matcher {
            if !networks.contains(network) {
                tracing::warn!(rule = %rule.id, %network, "no number range is on this network");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository root, where `sample/` is.
    fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// A copy of the sample data in a temporary directory, to break.
    fn sample_copy() -> (tempfile::TempDir, DataDirs) {
        let dir = tempfile::tempdir().unwrap();
        let sample = DataDirs::sample(&repo_root());
        let copy = DataDirs {
            carrier: dir.path().join("carrier"),
            routing: dir.path().join("routing"),
            shared: false,
        };

        for (from, to) in [
            (&sample.carrier, &copy.carrier),
            (&sample.routing, &copy.routing),
        ] {
            fs::create_dir_all(to).unwrap();
            for entry in fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
        (dir, copy)
    }

    /// Replaces the first occurrence of `from` in a file.
    fn edit(path: &Path, from: &str, to: &str) {
        let text = fs::read_to_string(path).unwrap();
        assert!(text.contains(from), "{from:?} is not in {}", path.display());
        fs::write(path, text.replacen(from, to, 1)).unwrap();
    }

    /// The 1-based line of the first line containing `needle`.
    fn line_of(path: &Path, needle: &str) -> u64 {
        let text = fs::read_to_string(path).unwrap();
        let index = text.lines().position(|l| l.contains(needle)).unwrap();
        index as u64 + 1
    }

    fn problems(dirs: &DataDirs) -> Vec<Problem> {
        match dirs.load() {
            Ok(_) => panic!("the broken data loaded"),
            Err(LoadError::Invalid(problems)) => problems,
        }
    }

    #[test]
    fn the_sample_loads_and_covers_the_known_destinations() {
        let loaded = DataDirs::sample(&repo_root()).load().unwrap();
        let source = &loaded.source;

        assert_eq!(source.operators.len(), 10);
        assert_eq!(loaded.secrets.len(), 10);
        assert!(source.rules.len() >= 31);
        assert!(source.version > 0 && source.version < 1 << 53);
        for number in [
            "447400123456",
            "2348031234567",
            "919800123456",
            "4915112345678",
            "27821234567",
            "88232123456",
        ] {
            assert!(
                source.ranges.iter().any(|r| number.starts_with(&r.prefix)),
                "no range for {number}"
            );
        }
        for network in ["44:Three", "44:EE", "44:Vodafone", "234:MTN"] {
            assert!(
                source
                    .ranges
                    .iter()
                    .any(|r| format!("{}:{}", r.country_code, r.network) == network),
                "no range on {network}"
            );
        }
        for secret in &loaded.secrets {
            assert!(!secret.password.expose().starts_with("sentinel-pw-"));
        }
        assert!(!format!("{loaded:?}").contains("sample-pw-"));
    }

    #[test]
    fn the_version_is_stable_and_follows_the_contents() {
        let (_dir, dirs) = sample_copy();
        let before = dirs.load().unwrap().source.version;
        assert_eq!(dirs.load().unwrap().source.version, before);

        edit(&dirs.routing.join("routes.csv"), ",9000,any,", ",9001,any,");
        assert_ne!(dirs.load().unwrap().source.version, before);
    }

    #[test]
    fn a_rule_naming_an_unknown_operator_is_refused_with_its_line() {
        let (_dir, dirs) = sample_copy();
        let routes = dirs.routing.join("routes.csv");
        edit(
            &routes,
            "r-44-eu,*,country,44,1,op-eu-value",
            "r-44-eu,*,country,44,1,op-nowhere",
        );

        let problems = problems(&dirs);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].file, routes);
        assert_eq!(problems[0].line, line_of(&routes, "r-44-eu,"));
        assert!(problems[0].message.contains("op-nowhere"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let (_dir, dirs) = sample_copy();
        let routes = dirs.routing.join("routes.csv");
        let operators = dirs.routing.join("operators.csv");
        let ported = dirs.routing.join("ported.csv");
        let uk = dirs.carrier.join("44.txt");
        edit(
            &routes,
            "op-global-b,30,9500,any,",
            "op-global-b,0,9500,any,",
        );
        edit(
            &routes,
            "op-night-saver,100,700,any,22:00-06:00",
            "op-night-saver,100,700,any,25:00-01:00",
        );
        edit(
            &routes,
            "r-44-vf-hub,*,network,44:Vodafone,2,op-global-b,100",
            "r-44-vf-hub,*,network,44:Vodafone,2,op-global-b,-5",
        );
        edit(&routes, ",any,\nr-44-hub", ",sometimes,\nr-44-hub");
        edit(&routes, "r-4915-hub,*,prefix", "r-4915-hub,*,suffix");
        edit(&routes, "r-234-hub,", "r-234-af,");
        edit(&operators, ",2775,500,true,true", ",2775x,500,true,true");
        edit(&operators, ",300,true,true", ",300,yes,true");
        edit(&ported, "+", "447");
        edit(&uk, "447400|Three", "44x7400|Three");
        edit(&uk, "447401|Three", "447401 Three");

        let found: Vec<(PathBuf, u64)> = problems(&dirs)
            .into_iter()
            .map(|p| (p.file, p.line))
            .collect();
        let expected = [
            (routes.clone(), line_of(&routes, "r-default-b,")),
            (routes.clone(), line_of(&routes, "r-91-night,")),
            (routes.clone(), line_of(&routes, "r-44-vf-hub,")),
            (routes.clone(), line_of(&routes, "r-44-eu,")),
            (routes.clone(), line_of(&routes, "r-4915-hub,")),
            (routes.clone(), line_of(&routes, "r-234-mtn-direct,") - 1),
            (operators.clone(), 2),
            (operators.clone(), 3),
            (ported.clone(), 2),
            (uk.clone(), line_of(&uk, "44x7400|")),
            (uk.clone(), line_of(&uk, "447401 Three")),
        ];
        for place in &expected {
            assert!(found.contains(place), "{place:?} not in {found:?}");
        }
        assert_eq!(found.len(), expected.len(), "{found:?}");
    }

    #[test]
    fn duplicate_ids_and_bad_networks_are_refused() {
        let (_dir, dirs) = sample_copy();
        let operators = dirs.routing.join("operators.csv");
        let ported = dirs.routing.join("ported.csv");
        let mut text = fs::read_to_string(&operators).unwrap();
        let second = text.lines().nth(1).unwrap().to_string();
        text.push_str(&second);
        text.push('\n');
        fs::write(&operators, text).unwrap();
        let mut text = fs::read_to_string(&ported).unwrap();
        text.push_str("+447400123456,EE\n+447400123457,234:MTN\n");
        fs::write(&ported, text).unwrap();

        let problems = problems(&dirs);
        let messages: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert_eq!(problems.len(), 3, "{messages:?}");
        assert!(
            messages[0].contains("used already on line 2"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("`EE` is not written `cc:Name`"),
            "{messages:?}"
        );
        assert!(messages[2].contains("not in country 234"), "{messages:?}");
    }

    #[test]
    fn discovery_falls_back_to_the_sample() {
        let lonely = tempfile::tempdir().unwrap();
        let root = lonely.path().join("repo");
        fs::create_dir(&root).unwrap();

        let dirs = DataDirs::discover(&root);
        assert_eq!(dirs, DataDirs::sample(&root));
        assert!(!dirs.shared);
        assert_eq!(dirs.carrier, root.join("sample").join("carrier"));

        let shared = lonely.path().join("shared").join("data");
        fs::create_dir_all(shared.join("numbering").join("carrier")).unwrap();
        fs::create_dir_all(shared.join("routing")).unwrap();
        assert!(DataDirs::discover(&root).shared);
    }

    #[test]
    fn missing_files_are_problems_too() {
        let dir = tempfile::tempdir().unwrap();

        let problems = problems(&DataDirs {
            carrier: dir.path().join("carrier"),
            routing: dir.path().join("routing"),
            shared: false,
        });
        assert_eq!(problems.len(), 4);
        assert!(problems.iter().all(|p| p.line == 0));
    }
}
