//! Classifies sender ids as alphanumeric or numeric, as operators see them.

use super::model::SenderKind;

/// Longest alphanumeric sender id SMPP carries (GSM 03.38 characters).
pub const MAX_ALPHANUMERIC: usize = 11;
/// Longest numeric sender: an E.164 number has at most 15 digits.
pub const MAX_NUMERIC_DIGITS: usize = 15;

/// Why a sender id was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SenderError {
    #[error("sender is empty")]
    Empty,
    #[error("alphanumeric sender has {0} characters; at most {MAX_ALPHANUMERIC} are allowed")]
    AlphanumericTooLong(usize),
    #[error("sender character {0:?} is not in the GSM 7-bit default alphabet")]
    NotGsm(char),
    #[error("numeric sender has {0} digits; at most {MAX_NUMERIC_DIGITS} are allowed")]
    NumericTooLong(usize),
    #[error("numeric sender may only hold digits after an optional leading '+'")]
    NumericMalformed,
}

/// A sender with a letter is alphanumeric; otherwise it must be a short code
/// or an E.164 number.
pub fn classify(sender: &str) -> Result<SenderKind, SenderError> {
    if sender.trim().is_empty() {
        return Err(SenderError::Empty);
    }
    if sender.chars().any(char::is_alphabetic) {
        return classify_alphanumeric(sender);
    }

    let digits = sender.strip_prefix('+').unwrap_or(sender);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SenderError::NumericMalformed);
    }
    if digits.len() > MAX_NUMERIC_DIGITS {
        return Err(SenderError::NumericTooLong(digits.len()));
    }
    Ok(SenderKind::Numeric)
}

fn classify_alphanumeric(sender: &str) -> Result<SenderKind, SenderError> {
    if let Some(bad) = sender.chars().find(|c| !is_gsm_basic(*c)) {
        return Err(SenderError::NotGsm(bad));
    }
    let count = sender.chars().count();
    if count > MAX_ALPHANUMERIC {
        return Err(SenderError::AlphanumericTooLong(count));
    }
    Ok(SenderKind::Alphanumeric)
}

/// The GSM 03.38 default alphabet, without the escape character and the
/// extension table (whose characters take two septets and which many
/// operators refuse in sender ids).
fn is_gsm_basic(c: char) -> bool {
    const EXTRA: &str = "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà";
    c.is_ascii_alphanumeric() || EXTRA.contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn senders_are_classified() {
        assert_eq!(classify("ACMEBANK"), Ok(SenderKind::Alphanumeric));
        assert_eq!(classify("Acme Bank"), Ok(SenderKind::Alphanumeric));
        assert_eq!(classify("+447700900123"), Ok(SenderKind::Numeric));
        assert_eq!(classify("447700900123"), Ok(SenderKind::Numeric));
        assert_eq!(classify("82228"), Ok(SenderKind::Numeric));
    }

    #[test]
    fn bad_senders_are_refused() {
        assert_eq!(classify(""), Err(SenderError::Empty));
        assert_eq!(classify("   "), Err(SenderError::Empty));
        assert_eq!(
            classify("ACMEBANKLTD1"),
            Err(SenderError::AlphanumericTooLong(12))
        );
        assert_eq!(classify("ACME€"), Err(SenderError::NotGsm('€')));
        assert_eq!(classify("ACME{}"), Err(SenderError::NotGsm('{')));
        assert_eq!(
            classify("1234567890123456"),
            Err(SenderError::NumericTooLong(16))
        );
        assert_eq!(classify("+"), Err(SenderError::NumericMalformed));
        assert_eq!(classify("12 34"), Err(SenderError::NumericMalformed));
        assert_eq!(classify("++1234"), Err(SenderError::NumericMalformed));
    }

    proptest! {
        #[test]
        fn classify_never_panics(s in "\\PC{0,40}") {
            let _ = classify(&s);
        }
    }
}
