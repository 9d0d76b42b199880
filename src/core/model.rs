//! The routing table's rows as every source (files, PostgreSQL) delivers them.

use std::fmt;

/// An SMPP connection messages can leave through. It never holds a password:
/// the service has no way to read one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    pub name: String,
    pub system_id: String,
    pub smpp_host: String,
    pub smpp_port: u16,
    /// Message parts per second over all replicas together.
    pub tps_limit: u32,
    /// `false`: the operator rejects alphanumeric sender ids.
    pub alphanumeric_sender: bool,
    /// `false`: never route to it.
    pub enabled: bool,
}

/// A number range: every E.164 number starting with `prefix` is on `network`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberRange {
    pub country_code: u16,
    /// E.164 digits without `+`, country code first.
    pub prefix: String,
    /// Network name; empty means the range's network is unknown.
    pub network: String,
}

/// A number that moved to another network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortedNumber {
    /// E.164 with the leading `+`.
    pub e164: String,
    /// `cc:Name`.
    pub network: String,
}

/// What a rule matches, from least to most specific.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleMatch {
    Default,
    /// Country calling code.
    Country(u16),
    /// `cc:Name`, as the number-range data names networks.
    Network(String),
    /// E.164 digits without `+`.
    Prefix(String),
}

/// Where a rule sends a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    Operator(String),
    /// The destination is refused for the rule's account.
    Block,
}

/// The kind of sender a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SenderKind {
    Alphanumeric,
    Numeric,
}

/// A rule's sender filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SenderFilter {
    Any,
    Only(SenderKind),
}

impl SenderFilter {
    pub fn admits(self, kind: SenderKind) -> bool {
        match self {
            SenderFilter::Any => true,
            SenderFilter::Only(k) => k == kind,
        }
    }
}

/// A daily window in UTC minutes: start included, end excluded; it wraps
/// midnight when `end <= start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl TimeWindow {
    /// Reads `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Option<TimeWindow> {
        let (start, end) = text.trim().split_once('-')?;
        let window = TimeWindow {
            start_minute: parse_hh_mm(start)?,
            end_minute: parse_hh_mm(end)?,
        };
        (window.start_minute != window.end_minute).then_some(window)
    }

    /// Whether `minute` (0..1440, UTC) falls inside the window.
    pub fn contains(self, minute: u16) -> bool {
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, e) = (self.start_minute, self.end_minute);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

fn parse_hh_mm(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// One routing rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// `None` for the `*` rules that apply to every account.
    pub account: Option<String>,
    pub matcher: RuleMatch,
    /// Tier; lower is preferred.
    pub priority: u32,
    pub target: RuleTarget,
    /// Share within a tier; zero only on `BLOCK` rules.
    pub weight: u32,
    pub cost_micros: u64,
    pub sender: SenderFilter,
    pub window: Option<TimeWindow>,
}

/// Everything a routing table is built from, as one source read it.
#[derive(Clone, Debug, Default)]
pub struct TableSource {
    /// Changes whenever any row changes; reported with every decision.
    pub version: u64,
    pub operators: Vec<Operator>,
    pub ranges: Vec<NumberRange>,
    pub ported: Vec<PortedNumber>,
    pub rules: Vec<Rule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_wrap_midnight() {
        let night = TimeWindow::parse("22:00-06:00").unwrap();
        assert!(night.contains(22 * 60));
        assert!(night.contains(0));
        assert!(night.contains(6 * 60 - 1));
        assert!(!night.contains(6 * 60));
        assert!(!night.contains(12 * 60));

        let day = TimeWindow::parse("08:30-17:00").unwrap();
        assert!(day.contains(8 * 60 + 30));
        assert!(!day.contains(17 * 60));
        assert!(!day.contains(8 * 60 + 29));
        assert_eq!(day.to_string(), "08:30-17:00");
    }

    #[test]
    fn malformed_windows_are_refused() {
        for bad in [
            "",
            "22:00",
            "24:00-01:00",
            "10:60-11:00",
            "1:00-2:00",
            "10:00-10:00",
        ] {
            assert_eq!(TimeWindow::parse(bad), None, "{bad:?}");
        }
    }
}
