//! Longest-prefix lookup over decimal digit strings, for number ranges and
//! prefix rules.
//!
//! A digit trie in two flat vectors: a lookup walks at most 15 nodes and
//! allocates nothing.

/// Maps digit prefixes to values; the longest stored prefix of a key wins.
#[derive(Clone, Debug)]
pub struct PrefixMap<V> {
    /// `children[n][d]` is the node after digit `d` from node `n`; 0 is none
    /// (the root is never a child).
    children: Vec<[u32; 10]>,
    values: Vec<Option<V>>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap {
            children: vec![[0; 10]],
            values: vec![None],
        }
    }
}

impl<V> PrefixMap<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value` under `prefix` and returns the value it replaced.
    /// Characters other than digits are not allowed.
    pub fn insert(&mut self, prefix: &str, value: V) -> Result<Option<V>, NotDigits> {
        let node = self.node_for(prefix)?;
        Ok(self.values[node].replace(value))
    }

    /// The value stored exactly under `prefix`, inserted from `make` first
    /// when there is none.
    pub fn get_or_insert_with(
        &mut self,
        prefix: &str,
        make: impl FnOnce() -> V,
    ) -> Result<&mut V, NotDigits> {
        let node = self.node_for(prefix)?;
        Ok(self.values[node].get_or_insert_with(make))
    }

    /// The node for `prefix`, created with its path when missing.
    fn node_for(&mut self, prefix: &str) -> Result<usize, NotDigits> {
        if !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NotDigits);
        }
        let mut node = 0usize;
        for b in prefix.bytes() {
            let digit = usize::from(b - b'0');
            let next = self.children[node][digit];
            node = if next == 0 {
                self.push_child(node, digit)
            } else {
                next as usize
            };
        }
        Ok(node)
    }

    fn push_child(&mut self, node: usize, digit: usize) -> usize {
        let child = self.children.len();
        self.children.push([0; 10]);
        self.values.push(None);
        self.children[node][digit] = child as u32;
        child
    }

    /// The value of the longest stored prefix of `key` and that prefix's
    /// length. Reading stops at the first non-digit.
    pub fn longest(&self, key: &str) -> Option<(&V, usize)> {
        let mut best = self.values[0].as_ref().map(|v| (v, 0));
        let mut node = 0usize;
        for (depth, b) in key.bytes().enumerate() {
            if !b.is_ascii_digit() {
                break;
            }
            let next = self.children[node][usize::from(b - b'0')];
            if next == 0 {
                break;
            }
            node = next as usize;
            if let Some(v) = self.values[node].as_ref() {
                best = Some((v, depth + 1));
            }
        }
        best
    }

    /// Every stored prefix of `key`, longest first.
    pub fn prefixes_of<'a>(&'a self, key: &str) -> impl Iterator<Item = (&'a V, usize)> {
        let mut found: smallvec::SmallVec<[(&'a V, usize); 16]> = smallvec::SmallVec::new();
        if let Some(v) = self.values[0].as_ref() {
            found.push((v, 0));
        }
        let mut node = 0usize;
        for (depth, b) in key.bytes().enumerate() {
            if !b.is_ascii_digit() {
                break;
            }
            let next = self.children[node][usize::from(b - b'0')];
            if next == 0 {
                break;
            }
            node = next as usize;
            if let Some(v) = self.values[node].as_ref() {
                found.push((v, depth + 1));
            }
        }
        found.into_iter().rev()
    }

    /// Number of trie nodes, for memory reports.
    pub fn node_count(&self) -> usize {
        self.children.len()
    }
}

/// A prefix held a character other than a decimal digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("prefix must hold decimal digits only")]
pub struct NotDigits;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn longest_prefix_wins() {
        let mut map = PrefixMap::new();
        map.insert("234702", "Glo").unwrap();
        map.insert("2347020", "Smile").unwrap();
        assert_eq!(map.longest("2347020123456"), Some((&"Smile", 7)));
        assert_eq!(map.longest("2347021123456"), Some((&"Glo", 6)));
        assert_eq!(map.longest("2348"), None);
        assert_eq!(map.insert("23x", "bad"), Err(NotDigits));
        let all: Vec<_> = map
            .prefixes_of("2347020123")
            .map(|(v, n)| (*v, n))
            .collect();
        assert_eq!(all, vec![("Smile", 7), ("Glo", 6)]);
    }

    fn naive<'a>(entries: &'a [(String, u32)], key: &str) -> Option<(&'a u32, usize)> {
        // The last insert of a prefix wins, as in the map.
        let mut best: Option<(&u32, usize)> = None;
        for (p, v) in entries {
            if key.starts_with(p.as_str()) && best.is_none_or(|(_, n)| p.len() >= n) {
                best = Some((v, p.len()));
            }
        }
        best
    }

    proptest! {
        #[test]
        fn agrees_with_a_naive_scan(
            entries in prop::collection::vec(("[0-9]{1,6}", any::<u32>()), 0..60),
            keys in prop::collection::vec("[0-9]{0,9}", 1..30),
        ) {
            let mut map = PrefixMap::new();
            for (p, v) in &entries {
                map.insert(p, *v).unwrap();
            }
            for key in &keys {
                prop_assert_eq!(map.longest(key), naive(&entries, key));
            }
        }
    }
}
