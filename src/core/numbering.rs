//! Normalises destinations to E.164 with libphonenumber's metadata, read by
//! the `rlibphonenumber` port.
//!
//! The port compiles each metadata pattern once, on first use, into a
//! once-filled cell; [`warm_up`] touches every region at start so that the
//! request path never pays for a compilation. The patterns run on
//! `regex-lite`, chosen for memory over speed: each search borrows scratch
//! space from the pattern's own pool behind a short mutex. That lock is per
//! pattern, held for two pointer moves, and the patterns every parse shares
//! are the place it would show first under many cores.

use std::fmt;

use rlibphonenumber::{PhoneNumberFormat, PhoneNumberType, Region, PHONE_NUMBER_UTIL};

/// Longest destination text read at all; anything longer is refused unread.
const MAX_INPUT_LEN: usize = 64;

/// A destination in E.164 form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// `+` and digits.
    pub e164: String,
    pub country_code: u16,
}

impl Destination {
    /// The digits after `+`.
    pub fn digits(&self) -> &str {
        &self.e164[1..]
    }
}

/// Why a destination was refused, in words a caller can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("destination is empty")]
    Empty,
    #[error("destination is longer than {MAX_INPUT_LEN} characters")]
    TooLong,
    #[error("destination has a character that is not part of a phone number: {0:?}")]
    BadCharacter(char),
    #[error("destination region {0:?} is not an ISO 3166 region libphonenumber knows")]
    UnknownRegion(String),
    #[error(
        "destination {0} is written nationally (trunk prefix 0): set destination_region to \
         the region it is written in, or write it internationally with + and country code"
    )]
    NeedsRegion(String),
    #[error(
        "destination is a local tel: URI; write it as a global one (tel:+<country code>…) \
         or as a number with destination_region"
    )]
    LocalTelUri,
    #[error("destination could not be read as a phone number: {0}")]
    Unparsable(String),
    #[error("destination {0} is not a valid number by libphonenumber's metadata")]
    NotValid(String),
}

/// Reads `input` as the routing rules describe: formatting characters and a
/// `tel:` scheme are ignored; with no `region` the number is international
/// (after `+`, after `00`, or bare digits starting with the country code);
/// with a `region` it is read as written in that region.
pub fn normalise(input: &str, region: &str) -> Result<Destination, DestinationError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(DestinationError::TooLong);
    }
    let cleaned = clean(input)?;

    let region = region.trim();
    let parsed = if region.is_empty() {
        // No country code starts with 0: a single leading 0 is a national
        // trunk prefix, which only a region can make sense of.
        if cleaned.starts_with('0') && !cleaned.starts_with("00") {
            return Err(DestinationError::NeedsRegion(cleaned));
        }
        PHONE_NUMBER_UTIL.parse(as_international(&cleaned), None)
    } else {
        let hint = parse_region(region)?;
        PHONE_NUMBER_UTIL.parse(&cleaned, Some(hint))
    };
    let number = parsed.map_err(|e| DestinationError::Unparsable(explain_parse(&e).into()))?;

    let e164 = number.format_as(PhoneNumberFormat::E164).to_string();
    if !number.is_valid() {
        return Err(DestinationError::NotValid(e164));
    }
    let country_code =
        u16::try_from(number.country_code).map_err(|_| DestinationError::NotValid(e164.clone()))?;
    Ok(Destination { e164, country_code })
}

/// libphonenumber's parse errors, in words a caller can act on.
fn explain_parse(error: &rlibphonenumber::ParseError) -> &'static str {
    use rlibphonenumber::ParseError;

    match error {
        ParseError::InvalidCountryCode => "it does not start with a known country code",
        ParseError::NotANumber(_) => "too few digits for a phone number",
        ParseError::TooShortAfterIdd => "too few digits after the international prefix",
        ParseError::TooShortNsn => "too few digits after the country code",
        ParseError::TooLongNsn => "too many digits for a phone number",
    }
}

/// Strips the scheme and formatting, leaving an optional `+` and digits.
fn clean(input: &str) -> Result<String, DestinationError> {
    let mut text = input.trim();
    if text
        .get(..4)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("tel:"))
    {
        text = &text[4..];
        // RFC 3966 parameters follow the number. A local number depends on
        // its `phone-context`, which is not read here: refused rather than
        // read as international digits it is not.
        text = text.split(';').next().unwrap_or_default();
        if !text.trim_start().starts_with('+') {
            return Err(DestinationError::LocalTelUri);
        }
    }

    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '0'..='9' => out.push(c),
            '+' if out.is_empty() => out.push(c),
            ' ' | '\t' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            other => return Err(DestinationError::BadCharacter(other)),
        }
    }
    if out.is_empty() || out == "+" {
        return Err(DestinationError::Empty);
    }
    Ok(out)
}

/// Gives an international number its `+`: `00…` and bare digits both start
/// with the country code.
fn as_international(cleaned: &str) -> String {
    if cleaned.starts_with('+') {
        cleaned.to_owned()
    } else if let Some(rest) = cleaned.strip_prefix("00") {
        format!("+{rest}")
    } else {
        format!("+{cleaned}")
    }
}

fn parse_region(region: &str) -> Result<Region, DestinationError> {
    let unknown = || DestinationError::UnknownRegion(region.to_owned());
    if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(unknown());
    }
    let upper = region.to_ascii_uppercase();
    let parsed: Region = upper.parse().map_err(|_| unknown())?;
    let supported = PHONE_NUMBER_UTIL
        .get_supported_regions()
        .any(|r| r == parsed);
    supported.then_some(parsed).ok_or_else(unknown)
}

/// Compiles the metadata patterns the request path uses, region by region,
/// by reading and validating each region's example numbers. The regions are
/// shared out over the cores: start-up waits for this, and each pattern sits
/// in its own cell, so threads compiling different regions do not meet.
pub fn warm_up() -> WarmUp {
    let regions: Vec<Region> = PHONE_NUMBER_UTIL.get_supported_regions().collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    std::thread::scope(|scope| {
        let shares: Vec<_> = (0..threads)
            .map(|first| {
                let share = regions.iter().skip(first).step_by(threads);
                scope.spawn(move || warm_regions(share))
            })
            .collect();
        // A share that panicked left its regions to be compiled on first use.
        shares
            .into_iter()
            .filter_map(|share| share.join().ok())
            .fold(WarmUp::default(), |total, part| WarmUp {
                regions: total.regions + part.regions,
                examples: total.examples + part.examples,
            })
    })
}

fn warm_regions<'a>(regions: impl Iterator<Item = &'a Region>) -> WarmUp {
    const TYPES: [PhoneNumberType; 4] = [
        PhoneNumberType::Mobile,
        PhoneNumberType::FixedLine,
        PhoneNumberType::TollFree,
        PhoneNumberType::VoIP,
    ];
    let mut report = WarmUp::default();

    for &region in regions {
        report.regions += 1;
        let code = region.to_string();
        for kind in TYPES {
            let Ok(example) =
                PHONE_NUMBER_UTIL.get_example_number_for_type_and_region(region, kind)
            else {
                continue;
            };
            let e164 = example.format_as(PhoneNumberFormat::E164).to_string();
            let national = example.format_as(PhoneNumberFormat::National).to_string();
            let _ = normalise(&e164, "");
            let _ = normalise(&national, &code);
            report.examples += 1;
        }
    }
    report
}

/// What [`warm_up`] went through.
#[derive(Clone, Copy, Debug, Default)]
pub struct WarmUp {
    pub regions: usize,
    pub examples: usize,
}

impl fmt::Display for WarmUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} regions, {} example numbers",
            self.regions, self.examples
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164(input: &str, region: &str) -> Result<String, DestinationError> {
        normalise(input, region).map(|d| d.e164)
    }

    #[test]
    fn international_forms_agree() {
        for input in [
            "+447400123456",
            "+44 7400 123456",
            "00447400123456",
            "447400123456",
            "tel:+44-7400-123456",
            "tel:+447400123456;phone-context=example.com",
            "  +44 (7400) 123.456 ",
            "+44\u{a0}7400\u{a0}123456",
        ] {
            assert_eq!(e164(input, "").as_deref(), Ok("+447400123456"), "{input}");
        }
    }

    #[test]
    fn national_numbers_need_their_region() {
        assert_eq!(e164("07400 123456", "GB").as_deref(), Ok("+447400123456"));
        assert_eq!(e164("07400 123456", "gb").as_deref(), Ok("+447400123456"));
        assert_eq!(
            e164("07400 123456", ""),
            Err(DestinationError::NeedsRegion("07400123456".into()))
        );
        let hint = DestinationError::NeedsRegion("07400123456".into()).to_string();
        assert!(hint.contains("set destination_region"), "{hint}");
        assert_eq!(e164("0044 7400 123456", "").as_deref(), Ok("+447400123456"));
    }

    #[test]
    fn local_tel_uris_are_refused_not_misread() {
        assert_eq!(
            e164("tel:15123456789;phone-context=+49", ""),
            Err(DestinationError::LocalTelUri)
        );
        assert_eq!(
            e164("tel:+447400123456;ext=5", "").as_deref(),
            Ok("+447400123456")
        );
    }

    #[test]
    fn parse_failures_say_what_is_wrong_with_the_digits() {
        let message = |input: &str| normalise(input, "").unwrap_err().to_string();
        assert!(
            message("+1").contains("too few digits"),
            "{}",
            message("+1")
        );
        assert!(
            message("00").contains("too few digits"),
            "{}",
            message("00")
        );
        let long = format!("+{}", "1".repeat(40));
        assert!(
            message(&long).contains("too many digits"),
            "{}",
            message(&long)
        );
    }

    #[test]
    fn numbers_reserved_for_drama_are_not_valid() {
        // Ofcom keeps 07700 900000-900999 for fiction; no SMS can reach them.
        assert!(matches!(
            normalise("+447700900123", ""),
            Err(DestinationError::NotValid(_))
        ));
    }

    #[test]
    fn brazilian_area_code_55_is_read_in_region() {
        assert_eq!(
            e164("(55) 99952-5371", "BR").as_deref(),
            Ok("+5555999525371")
        );
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        assert_eq!(normalise("", ""), Err(DestinationError::Empty));
        assert_eq!(normalise("+", ""), Err(DestinationError::Empty));
        assert_eq!(
            normalise("+44 77x", ""),
            Err(DestinationError::BadCharacter('x'))
        );
        assert!(matches!(
            normalise("123", "ZZ"),
            Err(DestinationError::UnknownRegion(_))
        ));
        assert!(normalise("+4412", "").is_err());
        assert_eq!(
            normalise(&"1".repeat(65), ""),
            Err(DestinationError::TooLong)
        );
    }

    proptest::proptest! {
        #[test]
        fn normalise_never_panics(input in "\\PC{0,40}", region in "\\PC{0,3}") {
            let _ = normalise(&input, &region);
        }

        #[test]
        fn formatting_characters_do_not_change_the_answer(
            seps in proptest::collection::vec("[ .()\u{a0}-]{0,2}", 12),
        ) {
            let digits = "447400123456";
            let mut written = String::from("+");
            for (d, sep) in digits.chars().zip(&seps) {
                written.push(d);
                written.push_str(sep);
            }
            let got = e164(&written, "");
            proptest::prop_assert_eq!(got.as_deref(), Ok("+447400123456"));
        }
    }

    #[test]
    fn warm_up_visits_every_region() {
        let report = warm_up();
        assert!(report.regions > 200, "{report}");
        assert!(report.examples > 400, "{report}");
    }
}
