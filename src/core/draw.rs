//! The weighted draw: a deterministic, unbiased order of operators for one
//! message.
//!
//! Each candidate gets the key `-ln(u) / weight`, where `u` in (0, 1] comes
//! from a hash of the message id and the operator id; sorting by key gives a
//! weighted random order (Efraimidis and Spirakis, 2006). The first place goes
//! to each operator with probability exactly proportional to its weight, and
//! an operator's key does not depend on the others, so excluding the first
//! operator promotes the second instead of reshuffling.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Fixed so that every replica and every release orders alike.
const SEED: u64 = 0x5157_0a7e_c0de_d4a1;

/// The sort key of `operator_id` for `message_id`; smaller goes first.
/// A zero weight sorts last.
pub fn draw_key(message_id: &str, operator_id: &str, weight: u32) -> f64 {
    if weight == 0 {
        return f64::INFINITY;
    }
    let hash = xxh3_64_with_seed(operator_id.as_bytes(), message_seed(message_id));
    let unit = ((hash >> 11) + 1) as f64 / (1u64 << 53) as f64;
    -unit.ln() / f64::from(weight)
}

/// Hashes the message id once per decision.
fn message_seed(message_id: &str) -> u64 {
    xxh3_64_with_seed(message_id.as_bytes(), SEED)
}

/// Orders `(id, weight)` candidates for `message_id`, ties by id.
pub fn order<'a>(message_id: &str, candidates: &[(&'a str, u32)]) -> Vec<&'a str> {
    let mut keyed: Vec<(f64, &str)> = candidates
        .iter()
        .map(|(id, w)| (draw_key(message_id, id, *w), *id))
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    keyed.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shares(weights: &[u32], draws: usize) -> Vec<f64> {
        let ids: Vec<String> = (0..weights.len()).map(|i| format!("op-{i}")).collect();
        let cands: Vec<(&str, u32)> = ids
            .iter()
            .map(String::as_str)
            .zip(weights.iter().copied())
            .collect();
        let mut counts = vec![0usize; weights.len()];
        for m in 0..draws {
            let first = order(&format!("msg-{m}"), &cands)[0];
            counts[ids.iter().position(|i| i == first).unwrap()] += 1;
        }
        counts.iter().map(|c| *c as f64 / draws as f64).collect()
    }

    #[test]
    fn equal_weights_split_evenly() {
        for share in shares(&[1, 1, 1], 100_000) {
            assert!((share - 1.0 / 3.0).abs() < 0.01, "{share}");
        }
    }

    #[test]
    fn one_to_two_gives_a_third_and_two_thirds() {
        let s = shares(&[1, 2], 100_000);
        assert!((s[0] - 1.0 / 3.0).abs() < 0.01, "{s:?}");
        assert!((s[1] - 2.0 / 3.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn same_message_same_order() {
        let cands = [("a", 5), ("b", 3), ("c", 2)];
        assert_eq!(order("m-1", &cands), order("m-1", &cands));
    }

    proptest! {
        #[test]
        fn excluding_the_first_promotes_the_second(
            weights in prop::collection::vec(1u32..1000, 2..8),
            message in "[a-z0-9-]{1,20}",
        ) {
            let ids: Vec<String> = (0..weights.len()).map(|i| format!("op-{i}")).collect();
            let cands: Vec<(&str, u32)> =
                ids.iter().map(String::as_str).zip(weights.iter().copied()).collect();
            let full = order(&message, &cands);
            let rest: Vec<(&str, u32)> =
                cands.iter().copied().filter(|(id, _)| *id != full[0]).collect();
            prop_assert_eq!(&order(&message, &rest)[..], &full[1..]);
        }

        #[test]
        fn shares_follow_weights(weights in prop::collection::vec(1u32..20, 2..5)) {
            let total: u32 = weights.iter().sum();
            let got = shares(&weights, 20_000);
            for (w, s) in weights.iter().zip(got) {
                let want = f64::from(*w) / f64::from(total);
                // Four standard deviations of a binomial share over 20,000 draws.
                let tolerance = 4.0 * (want * (1.0 - want) / 20_000.0).sqrt() + 1e-9;
                prop_assert!((s - want).abs() < tolerance, "weight {} share {} want {}", w, s, want);
            }
        }
    }
}
