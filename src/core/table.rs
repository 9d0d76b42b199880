//! The immutable routing-table snapshot: validated rows, indexed for the
//! decision. A new snapshot is built off the request path and swapped in whole.

use std::collections::{HashMap, HashSet};

use super::model::{Operator, Rule, RuleMatch, RuleTarget, TableSource};
use super::prefix::PrefixMap;

/// Index of a network name (`cc:Name`) in [`RoutingTable::networks`].
type NetworkId = u32;
/// A range whose longest prefix names no network.
const UNKNOWN_NETWORK: NetworkId = NetworkId::MAX;

/// Why a table was refused. Every problem is listed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("routing table refused: {}", problems.join("; "))]
pub struct TableError {
    pub problems: Vec<String>,
}

/// A rule with its operator resolved.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    pub rule: Rule,
    /// Index into [`RoutingTable::operators`]; `None` for `BLOCK`.
    pub operator: Option<usize>,
}

/// The rules of one account (or of `*`), indexed by match kind.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub default: Vec<usize>,
    pub country: HashMap<u16, Vec<usize>>,
    pub network: HashMap<String, Vec<usize>>,
    pub prefix: PrefixMap<Vec<usize>>,
}

impl RuleSet {
    fn add(&mut self, matcher: &RuleMatch, index: usize) -> Result<(), String> {
        match matcher {
            RuleMatch::Default => self.default.push(index),
            RuleMatch::Country(cc) => self.country.entry(*cc).or_default().push(index),
            RuleMatch::Network(net) => self.network.entry(net.clone()).or_default().push(index),
            RuleMatch::Prefix(p) => {
                let held = self.prefix.get_or_insert_with(p, Vec::new);
                held.map_err(|e| e.to_string())?.push(index);
            }
        }
        Ok(())
    }
}

/// A validated, indexed routing table.
#[derive(Debug)]
pub struct RoutingTable {
    version: u64,
    operators: Vec<Operator>,
    operator_index: HashMap<String, usize>,
    networks: Vec<String>,
    ranges: PrefixMap<NetworkId>,
    range_count: usize,
    /// E.164 digits (as a number) to network; empty when portability is
    /// looked up outside the snapshot.
    ported: HashMap<u64, NetworkId>,
    ported_loaded: bool,
    rules: Vec<CompiledRule>,
    star: RuleSet,
    accounts: HashMap<String, RuleSet>,
}

impl RoutingTable {
    /// Validates `source` and indexes it. Nothing is kept on any problem.
    pub fn build(source: TableSource) -> Result<RoutingTable, TableError> {
        let mut problems = Vec::new();
        let ported_loaded = !source.ported.is_empty();

        let (operators, operator_index) = index_operators(source.operators, &mut problems);
        let mut networks = Networks::default();
        let (ranges, range_count) = index_ranges(&source.ranges, &mut networks, &mut problems);
        let ported = index_ported(&source.ported, &mut networks, &mut problems);
        let rules = compile_rules(source.rules, &operator_index, &mut problems);
        let (star, accounts) = index_rules(&rules, &mut problems);

        if !problems.is_empty() {
            return Err(TableError { problems });
        }
        Ok(RoutingTable {
            version: source.version,
            operators,
            operator_index,
            networks: networks.names,
            ranges,
            range_count,
            ported,
            ported_loaded,
            rules,
            star,
            accounts,
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn operator_count(&self) -> usize {
        self.operators.len()
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn range_count(&self) -> usize {
        self.range_count
    }

    pub fn ported_count(&self) -> usize {
        self.ported.len()
    }

    /// Whether ported numbers are held in the snapshot.
    pub fn ported_loaded(&self) -> bool {
        self.ported_loaded
    }

    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    pub fn operator(&self, index: usize) -> &Operator {
        &self.operators[index]
    }

    pub fn operator_by_id(&self, id: &str) -> Option<&Operator> {
        self.operator_index.get(id).map(|i| &self.operators[*i])
    }

    pub fn rule(&self, index: usize) -> &CompiledRule {
        &self.rules[index]
    }

    /// The rules of `account`, if it has any.
    pub fn account_rules(&self, account: &str) -> Option<&RuleSet> {
        self.accounts.get(account)
    }

    /// The `*` rules.
    pub fn star_rules(&self) -> &RuleSet {
        &self.star
    }

    /// The network of the longest range prefix of `digits`; `None` when no
    /// range matches or the longest one names no network.
    pub fn prefix_network(&self, digits: &str) -> Option<&str> {
        let (id, _) = self.ranges.longest(digits)?;
        self.network_name(*id)
    }

    /// The network a ported number moved to, if the snapshot holds it.
    pub fn ported_network(&self, digits: &str) -> Option<&str> {
        let key: u64 = digits.parse().ok()?;
        self.ported.get(&key).and_then(|id| self.network_name(*id))
    }

    fn network_name(&self, id: NetworkId) -> Option<&str> {
        self.networks.get(id as usize).map(String::as_str)
    }
}

/// Interns `cc:Name` strings.
#[derive(Default)]
struct Networks {
    names: Vec<String>,
    ids: HashMap<String, NetworkId>,
}

impl Networks {
    fn intern(&mut self, name: String) -> NetworkId {
        if let Some(id) = self.ids.get(&name) {
            return *id;
        }
        let id = self.names.len() as NetworkId;
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }
}

fn index_operators(
    operators: Vec<Operator>,
    problems: &mut Vec<String>,
) -> (Vec<Operator>, HashMap<String, usize>) {
    let mut index = HashMap::with_capacity(operators.len());
    for (i, op) in operators.iter().enumerate() {
        if op.id.trim().is_empty() {
            problems.push(format!("operator #{} has an empty id", i + 1));
        }
        if index.insert(op.id.clone(), i).is_some() {
            problems.push(format!("operator {} is listed twice", op.id));
        }
    }
    (operators, index)
}

fn index_ranges(
    ranges: &[super::model::NumberRange],
    networks: &mut Networks,
    problems: &mut Vec<String>,
) -> (PrefixMap<NetworkId>, usize) {
    let mut map = PrefixMap::new();
    let mut count = 0;
    for range in ranges {
        if !range.prefix.starts_with(&range.country_code.to_string()) {
            problems.push(format!(
                "range {} does not start with its country code {}",
                range.prefix, range.country_code
            ));
            continue;
        }
        let id = if range.network.is_empty() {
            UNKNOWN_NETWORK
        } else {
            networks.intern(format!("{}:{}", range.country_code, range.network))
        };
        match map.insert(&range.prefix, id) {
            Ok(None) => count += 1,
            Ok(Some(_)) => problems.push(format!("range {} is listed twice", range.prefix)),
            Err(e) => problems.push(format!("range {:?}: {e}", range.prefix)),
        }
    }
    (map, count)
}

fn index_ported(
    ported: &[super::model::PortedNumber],
    networks: &mut Networks,
    problems: &mut Vec<String>,
) -> HashMap<u64, NetworkId> {
    let mut map = HashMap::with_capacity(ported.len());
    for p in ported {
        let digits = p.e164.strip_prefix('+').unwrap_or("");
        let key = (digits.len() <= 15)
            .then(|| digits.parse::<u64>().ok())
            .flatten();
        let Some(key) = key.filter(|_| digits.bytes().all(|b| b.is_ascii_digit())) else {
            problems.push(format!("ported number {:?} is not +digits", p.e164));
            continue;
        };
        if !is_network_name(&p.network) {
            problems.push(format!(
                "ported number {} has network {:?}",
                p.e164, p.network
            ));
            continue;
        }
        map.insert(key, networks.intern(p.network.clone()));
    }
    map
}

/// `cc:Name` with a numeric country code and a non-empty name.
pub fn is_network_name(text: &str) -> bool {
    match text.split_once(':') {
        Some((cc, name)) => {
            !cc.is_empty()
                && cc.len() <= 3
                && cc.bytes().all(|b| b.is_ascii_digit())
                && !name.trim().is_empty()
        }
        None => false,
    }
}

fn compile_rules(
    rules: Vec<Rule>,
    operators: &HashMap<String, usize>,
    problems: &mut Vec<String>,
) -> Vec<CompiledRule> {
    let mut seen = HashSet::new();
    let mut compiled = Vec::with_capacity(rules.len());
    for rule in rules {
        if !seen.insert(rule.id.clone()) {
            problems.push(format!("rule {} is listed twice", rule.id));
        }
        if let Err(problem) = check_rule(&rule) {
            problems.push(format!("rule {}: {problem}", rule.id));
        }
        let operator = match &rule.target {
            RuleTarget::Block => None,
            RuleTarget::Operator(id) => match operators.get(id) {
                Some(i) => Some(*i),
                None => {
                    problems.push(format!("rule {} names unknown operator {id}", rule.id));
                    None
                }
            },
        };
        compiled.push(CompiledRule { rule, operator });
    }
    compiled
}

fn check_rule(rule: &Rule) -> Result<(), String> {
    if matches!(rule.target, RuleTarget::Operator(_)) && rule.weight == 0 {
        return Err("weight must be positive".into());
    }
    match &rule.matcher {
        RuleMatch::Network(net) if !is_network_name(net) => {
            Err(format!("network {net:?} is not cc:Name"))
        }
        RuleMatch::Prefix(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => {
            Err(format!("prefix {p:?} is not digits"))
        }
        _ => Ok(()),
    }
}

fn index_rules(
    rules: &[CompiledRule],
    problems: &mut Vec<String>,
) -> (RuleSet, HashMap<String, RuleSet>) {
    let mut star = RuleSet::default();
    let mut accounts: HashMap<String, RuleSet> = HashMap::new();
    for (i, compiled) in rules.iter().enumerate() {
        let set = match &compiled.rule.account {
            None => &mut star,
            Some(account) => accounts.entry(account.clone()).or_default(),
        };
        if let Err(problem) = set.add(&compiled.rule.matcher, i) {
            problems.push(format!("rule {}: {problem}", compiled.rule.id));
        }
    }
    (star, accounts)
}
