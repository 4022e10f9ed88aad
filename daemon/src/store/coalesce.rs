//! Folding a batch's consecutive values of one key before they go into a map: a write batch's
//! records nearly all share their run, payload, group and hour, so each key is hashed once per
//! change rather than once per record.

/// The current key and the value being folded for it.
pub(super) struct Coalesce<K, V>(Option<(K, V)>);

impl<K, V> Default for Coalesce<K, V> {
    fn default() -> Self {
        Coalesce(None)
    }
}

impl<K: PartialEq, V> Coalesce<K, V> {
    /// The value to fold into for `key` (made by `new` when `key` is not the current one), and
    /// the previous key's (key, value) when it is replaced, for the caller's map.
    pub(super) fn at(&mut self, key: K, new: impl FnOnce() -> V) -> (&mut V, Option<(K, V)>) {
        let done = match &self.0 {
            Some((k, _)) if *k == key => None,
            _ => self.0.take(),
        };
        let (_, v) = self.0.get_or_insert_with(|| (key, new()));
        (v, done)
    }

    /// The last key's (key, value), if any: what is left for the map at the batch's end.
    pub(super) fn finish(self) -> Option<(K, V)> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs of a key fold together; a key seen again after another starts a new run, and every
    /// run comes out once, in order.
    #[test]
    fn runs_of_a_key_fold_and_each_comes_out_once() {
        let mut c = Coalesce::default();
        let mut out = Vec::new();
        for (k, v) in [("a", 1), ("a", 2), ("b", 3), ("a", 4), ("a", 5)] {
            let (sum, done) = c.at(k, || 0);
            *sum += v;
            out.extend(done);
        }
        out.extend(c.finish());
        assert_eq!(out, [("a", 3), ("b", 3), ("a", 9)]);
    }
}
