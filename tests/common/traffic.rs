//! The traffic rows with their expected answers, and a plain reference of
//! the routing rules to check decisions against, written apart from the
//! router's indexed fast path.

use std::collections::BTreeSet;
use std::path::PathBuf;

use routing_engine::core::model::{RuleMatch, RuleTarget, SenderFilter, SenderKind, TableSource};

/// One row of `destinations.csv`.
#[derive(Clone, Debug)]
pub struct Row {
    pub line: usize,
    pub input: String,
    pub region: String,
    pub valid: bool,
    pub e164: String,
    pub network: String,
}

/// The full traffic set, or the repository's sample when `../shared` is absent
/// (and a line saying so).
pub fn rows() -> Vec<Row> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/data/traffic/destinations.csv");
    let path = if shared.exists() {
        shared
    } else {
        eprintln!("../shared/data is absent: checking the sample traffic in sample/traffic");
        root.join("sample/traffic/destinations.csv")
    };
    let mut reader = csv::Reader::from_path(&path).expect("traffic file opens");
    reader
        .records()
        .enumerate()
        .map(|(i, r)| {
            let r = r.expect("traffic row parses");
            Row {
                // The header is line 1; a quoted field may span lines, so this
                // is the record number plus one.
                line: i + 2,
                input: r[0].to_string(),
                region: r[1].to_string(),
                valid: &r[2] == "true",
                e164: r[3].to_string(),
                network: r[9].to_string(),
            }
        })
        .collect()
}

/// What the rules say for a numeric sender with no account and no
/// exclusions: the operators of the winning tier, or why there are none.
pub fn winning_tier(
    source: &TableSource,
    digits: &str,
    country_code: u16,
    network: &str,
    minute: u16,
) -> Result<BTreeSet<String>, &'static str> {
    let fits = |r: &&routing_engine::core::model::Rule| {
        r.account.is_none()
            && matches!(
                r.sender,
                SenderFilter::Any | SenderFilter::Only(SenderKind::Numeric)
            )
            && r.window.is_none_or(|w| w.contains(minute))
    };
    let rules: Vec<_> = source.rules.iter().filter(fits).collect();

    let longest = rules
        .iter()
        .filter_map(|r| match &r.matcher {
            RuleMatch::Prefix(p) if digits.starts_with(p.as_str()) => Some(p.len()),
            _ => None,
        })
        .max();
    let kept: Vec<_> = if let Some(len) = longest {
        rules
            .iter()
            .filter(|r| {
                matches!(&r.matcher, RuleMatch::Prefix(p)
            if p.len() == len && digits.starts_with(p.as_str()))
            })
            .collect()
    } else {
        let by = |want: &dyn Fn(&RuleMatch) -> bool| -> Vec<_> {
            rules.iter().filter(|r| want(&r.matcher)).collect()
        };
        let network_rules = by(&|m| matches!(m, RuleMatch::Network(n) if n == network));
        let country_rules = by(&|m| matches!(m, RuleMatch::Country(c) if *c == country_code));
        let default_rules = by(&|m| matches!(m, RuleMatch::Default));
        [network_rules, country_rules, default_rules]
            .into_iter()
            .find(|k| !k.is_empty())
            .unwrap_or_default()
    };

    if kept.is_empty() {
        return Err("NO_ROUTE");
    }
    if kept.iter().any(|r| r.target == RuleTarget::Block) {
        return Err("DESTINATION_BLOCKED");
    }
    let enabled = |id: &str| source.operators.iter().any(|o| o.id == id && o.enabled);
    let live: Vec<(u32, &str)> = kept
        .iter()
        .filter_map(|r| match &r.target {
            RuleTarget::Operator(id) if enabled(id) => Some((r.priority, id.as_str())),
            _ => None,
        })
        .collect();
    let best = live
        .iter()
        .map(|(t, _)| *t)
        .min()
        .ok_or("NO_OPERATOR_AVAILABLE")?;
    Ok(live
        .iter()
        .filter(|(t, _)| *t == best)
        .map(|(_, id)| id.to_string())
        .collect())
}
