//! The text form of the table's columns, shared by the files and the database
//! so both read `44:EE`, `BLOCK` or `22:00-06:00` the same way.

use crate::core::model::{RuleMatch, SenderFilter, SenderKind, TimeWindow};

/// The `operator_id` of a rule that refuses its destinations.
pub const BLOCK: &str = "BLOCK";

/// The `account` of a rule that applies to every account.
pub const ANY_ACCOUNT: &str = "*";

/// The longest E.164 number, in digits.
const MAX_E164_DIGITS: usize = 15;

/// Whether `text` is one or more ASCII digits.
pub fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Reads a country calling code: one to three digits, not starting with `0`.
pub fn parse_country_code(text: &str) -> Result<u16, String> {
    if !is_digits(text) || text.len() > 3 || text.starts_with('0') {
        return Err(format!("`{text}` is not a country calling code"));
    }

    text.parse()
        .map_err(|_| format!("`{text}` is not a country calling code"))
}

/// Checks an E.164 prefix without `+`: digits only, country code first.
pub fn check_prefix(text: &str) -> Result<(), String> {
    if !is_digits(text) {
        return Err(format!("prefix `{text}` is not digits only"));
    }
    if text.len() > MAX_E164_DIGITS || text.starts_with('0') {
        return Err(format!(
            "prefix `{text}` is not the start of an E.164 number"
        ));
    }
    Ok(())
}

/// Reads a network name written `cc:Name`, as the number-range data names it.
pub fn parse_network(text: &str) -> Result<(u16, &str), String> {
    let invalid = || format!("network `{text}` is not written `cc:Name`");
    let (cc, name) = text.split_once(':').ok_or_else(invalid)?;
    let cc = parse_country_code(cc).map_err(|_| invalid())?;
    if name.trim().is_empty() {
        return Err(invalid());
    }
    Ok((cc, name))
}

/// Checks a number written in E.164 with its `+`.
pub fn check_e164(text: &str) -> Result<(), String> {
    let digits = text.strip_prefix('+').unwrap_or("");
    let valid = is_digits(digits)
        && (2..=MAX_E164_DIGITS).contains(&digits.len())
        && !digits.starts_with('0');
    if valid {
        Ok(())
    } else {
        Err(format!("`{text}` is not an E.164 number written `+digits`"))
    }
}

/// Reads a rule's `match_type` and `match_value` columns.
pub fn parse_match(match_type: &str, match_value: &str) -> Result<RuleMatch, String> {
    match match_type {
        "default" if match_value.is_empty() => Ok(RuleMatch::Default),
        "default" => Err(format!(
            "a `default` rule takes no match_value, found `{match_value}`"
        )),
        "country" => parse_country_code(match_value).map(RuleMatch::Country),
        "network" => parse_network(match_value).map(|_| RuleMatch::Network(match_value.into())),
        "prefix" => check_prefix(match_value).map(|()| RuleMatch::Prefix(match_value.into())),
        other => Err(format!(
            "match_type `{other}` is not one of default, country, network, prefix"
        )),
    }
}

/// The `match_type` and `match_value` columns of a rule's matcher.
pub fn match_columns(matcher: &RuleMatch) -> (&'static str, String) {
    match matcher {
        RuleMatch::Default => ("default", String::new()),
        RuleMatch::Country(cc) => ("country", cc.to_string()),
        RuleMatch::Network(network) => ("network", network.clone()),
        RuleMatch::Prefix(prefix) => ("prefix", prefix.clone()),
    }
}

/// Reads a rule's `sender_type` column.
pub fn parse_sender(text: &str) -> Result<SenderFilter, String> {
    match text {
        "any" => Ok(SenderFilter::Any),
        "alphanumeric" => Ok(SenderFilter::Only(SenderKind::Alphanumeric)),
        "numeric" => Ok(SenderFilter::Only(SenderKind::Numeric)),
        other => Err(format!(
            "sender_type `{other}` is not one of any, alphanumeric, numeric"
        )),
    }
}

/// The `sender_type` column of a sender filter.
pub fn sender_column(filter: SenderFilter) -> &'static str {
    match filter {
        SenderFilter::Any => "any",
        SenderFilter::Only(SenderKind::Alphanumeric) => "alphanumeric",
        SenderFilter::Only(SenderKind::Numeric) => "numeric",
    }
}

/// Reads a rule's `window_utc` column: empty means always.
pub fn parse_window(text: &str) -> Result<Option<TimeWindow>, String> {
    if text.is_empty() {
        return Ok(None);
    }

    TimeWindow::parse(text).map(Some).ok_or_else(|| {
        format!("window_utc `{text}` is not `HH:MM-HH:MM` in UTC with distinct ends")
    })
}

/// Reads a boolean column written `true` or `false`.
pub fn parse_bool(column: &str, text: &str) -> Result<bool, String> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{column} `{other}` is not `true` or `false`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_round_trip() {
        for (kind, value) in [
            ("default", ""),
            ("country", "44"),
            ("network", "44:EE"),
            ("prefix", "4915"),
        ] {
            let matcher = parse_match(kind, value).unwrap();
            assert_eq!(match_columns(&matcher), (kind, value.to_string()));
        }

        for text in ["any", "alphanumeric", "numeric"] {
            assert_eq!(sender_column(parse_sender(text).unwrap()), text);
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        assert!(parse_match("country", "044").is_err());
        assert!(parse_match("country", "4444").is_err());
        assert!(parse_match("network", "44").is_err());
        assert!(parse_match("network", "44:").is_err());
        assert!(parse_match("prefix", "44x").is_err());
        assert!(parse_match("default", "44").is_err());
        assert!(parse_match("region", "GB").is_err());
        assert!(parse_sender("alpha").is_err());
        assert!(parse_window("25:00-01:00").is_err());
        assert_eq!(parse_window(""), Ok(None));
        assert!(check_e164("447400123456").is_err());
        assert!(check_e164("+44 7400").is_err());
        assert!(check_e164("+447400123456").is_ok());
        assert!(parse_bool("enabled", "yes").is_err());
    }
}
