//! A small insertion-ordered string map.
//!
//! Used for header `extFields` and message properties: both are tiny (tens of
//! entries), both must keep the order a sender chose so encodings are
//! reproducible byte for byte, and both overwrite on a repeated key.
//!
//! Keys and values are [`CompactString`]s: nearly all of them are at most 24 bytes and
//! then live inline, so decoding a header or a property string does not allocate per
//! entry (the send path decodes two such maps per message).

use compact_str::CompactString;

/// Insertion-ordered string map with overwrite-in-place semantics.
/// Equality ignores order: two maps are equal when they hold the same entries.
#[derive(Debug, Clone, Default)]
pub struct StrMap {
    entries: Vec<(CompactString, CompactString)>,
}

impl StrMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        StrMap {
            entries: Vec::with_capacity(n),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`; an existing key keeps its position.
    pub fn insert(&mut self, key: impl Into<CompactString>, value: impl Into<CompactString>) {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Appends `key`, which the caller knows is absent (a header's distinct field names):
    /// no scan for an existing entry.
    pub fn push_new(&mut self, key: impl Into<CompactString>, value: impl Into<CompactString>) {
        let key = key.into();
        debug_assert!(!self.contains_key(&key), "duplicate key {key}");
        self.entries.push((key, value.into()));
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1.into_string())
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Entries sorted by key (the order the JSON encoder emits).
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<_> = self.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }
}

impl PartialEq for StrMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for StrMap {}

impl<K: Into<CompactString>, V: Into<CompactString>> FromIterator<(K, V)> for StrMap {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let mut m = StrMap::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_overwrites_in_place_and_keeps_order() {
        let mut m = StrMap::new();
        m.insert("b", "1");
        m.insert("a", "2");
        m.insert("b", "3");
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![("b", "3"), ("a", "2")]);
        assert_eq!(m.sorted(), vec![("a", "2"), ("b", "3")]);
        assert_eq!(m.remove("b").as_deref(), Some("3"));
        assert_eq!(m.len(), 1);
        assert!(!m.contains_key("b"));
    }
}
