//! The data a run routes on: the routing table from `../shared/data` (or
//! the repository's sample when it is absent), the operators' passwords to
//! watch for, and the traffic rows with their expected networks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use routing_engine::core::model::TableSource;
use routing_engine::source::files::DataDirs;

/// One row of `destinations.csv`.
#[derive(Clone, Debug)]
pub struct Row {
    pub input: String,
    pub region: String,
    pub valid: bool,
    pub e164: String,
    pub country_code: u16,
    /// `cc:Name` with portability applied; empty when unknown.
    pub network: String,
    /// `cc:Name` of the longest number range alone, which a replica uses
    /// when portability cannot be looked up; empty when unknown.
    pub prefix_network: String,
}

/// Everything a run reads from disk, read once per process.
pub struct Data {
    /// The table without its ported numbers, which the store looks up.
    pub source: Arc<TableSource>,
    /// E.164 to network, as the store holds it.
    pub ported: Arc<HashMap<String, String>>,
    pub passwords: Vec<String>,
    pub rows: Vec<Row>,
    pub shared: bool,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Reads the routing data and traffic, saying which set is used.
pub fn load() -> anyhow::Result<Data> {
    let root = repo_root();
    let dirs = DataDirs::discover(&root);
    let files = dirs.load().context("load the routing data")?;
    let traffic = if dirs.shared {
        root.join("../shared/data/traffic/destinations.csv")
    } else {
        root.join("sample/traffic/destinations.csv")
    };
    if !dirs.shared {
        println!("../shared/data is absent: routing on the sample in sample/");
    }

    let mut source = files.source;
    let mut rows = read_rows(&traffic)?;
    let ranges = range_networks(&source);
    for row in &mut rows {
        row.prefix_network = longest_range(&ranges, row.e164.trim_start_matches('+'));
    }
    let ported = source
        .ported
        .drain(..)
        .map(|p| (p.e164, p.network))
        .collect();
    let passwords = files
        .secrets
        .iter()
        .map(|s| s.password.expose().to_owned())
        .collect();
    Ok(Data {
        source: Arc::new(source),
        ported: Arc::new(ported),
        passwords,
        rows,
        shared: dirs.shared,
    })
}

fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("open the traffic file {}", path.display()))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let r = record.context("read a traffic row")?;
        rows.push(Row {
            input: r[0].to_string(),
            region: r[1].to_string(),
            valid: &r[2] == "true",
            e164: r[3].to_string(),
            country_code: r[4].parse().unwrap_or(0),
            network: r[9].to_string(),
            prefix_network: String::new(),
        });
    }
    Ok(rows)
}

/// Number-range prefix to `cc:Name`, empty for a range of unknown network.
fn range_networks(source: &TableSource) -> HashMap<String, String> {
    source
        .ranges
        .iter()
        .map(|r| {
            let name = if r.network.is_empty() {
                String::new()
            } else {
                format!("{}:{}", r.country_code, r.network)
            };
            (r.prefix.clone(), name)
        })
        .collect()
}

fn longest_range(ranges: &HashMap<String, String>, digits: &str) -> String {
    (1..=digits.len())
        .rev()
        .find_map(|n| ranges.get(&digits[..n]))
        .cloned()
        .unwrap_or_default()
}
