//! [`Map`]: a small sorted map for the label sets, selectors and port
//! maps that every workload carries.
//!
//! A mesh holds hundreds of thousands of these, each with two or three
//! entries. A `BTreeMap` allocates a node with room for eleven entries
//! for even one (about 550 bytes for `String` pairs); a sorted boxed
//! slice holds just the entries. Lookups are binary searches, iteration
//! is in key order, and equality and hashing are by content, so a `Map`
//! reads and compares like the `BTreeMap` it replaces.

use std::borrow::Borrow;
use std::fmt;

/// A map sorted by key, one allocation for all its entries.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Map<K, V> {
    entries: Box<[(K, V)]>,
}

impl<K, V> Default for Map<K, V> {
    fn default() -> Self {
        Map {
            entries: Box::new([]),
        }
    }
}

impl<K: Ord, V> Map<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces. Each
    /// insert reallocates: maps are built once (by deserializing or
    /// collecting) and then read.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                let mut v = std::mem::take(&mut self.entries).into_vec();
                v.insert(i, (key, value));
                self.entries = v.into_boxed_slice();
                None
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.find(key).ok()?;
        let mut v = std::mem::take(&mut self.entries).into_vec();
        let (_, value) = v.remove(i);
        self.entries = v.into_boxed_slice();
        Some(value)
    }
}

impl<K, V> Map<K, V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter(self.entries.iter())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, v)| v)
    }
}

/// Iterator over a [`Map`]'s entries, in key order.
#[derive(Clone, Debug)]
pub struct Iter<'a, K, V>(std::slice::Iter<'a, (K, V)>);

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<'a, K, V> IntoIterator for &'a Map<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<K, V> IntoIterator for Map<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_vec().into_iter()
    }
}

/// Later entries replace earlier ones with the same key, as with
/// `BTreeMap`.
impl<K: Ord, V> FromIterator<(K, V)> for Map<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut v: Vec<(K, V)> = iter.into_iter().collect();
        // Stable: among equal keys the last written stays last, and
        // keeping the last of each run keeps the last written.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(K, V)> = Vec::with_capacity(v.len());
        for e in v {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => out.push(e),
            }
        }
        Map {
            entries: out.into_boxed_slice(),
        }
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for Map<K, V> {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K: Ord, V> From<std::collections::BTreeMap<K, V>> for Map<K, V> {
    fn from(m: std::collections::BTreeMap<K, V>) -> Self {
        // Already sorted and unique.
        Map {
            entries: m.into_iter().collect::<Vec<_>>().into_boxed_slice(),
        }
    }
}

/// `map[key]`, panicking when the key is absent, as `BTreeMap` does.
impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for Map<K, V> {
    type Output = V;
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry for the key in the Map")
    }
}

impl<K: Ord, V> From<Map<K, V>> for std::collections::BTreeMap<K, V> {
    fn from(m: Map<K, V>) -> Self {
        m.into_iter().collect()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Map<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for Map<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, K, V> serde::Deserialize<'de> for Map<K, V>
where
    K: serde::Deserialize<'de> + Ord,
    V: serde::Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K, V> serde::de::Visitor<'de> for Visit<K, V>
        where
            K: serde::Deserialize<'de> + Ord,
            V: serde::Deserialize<'de>,
        {
            type Value = Map<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Map<K, V>, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(0).min(64));
                while let Some(e) = a.next_entry()? {
                    v.push(e);
                }
                Ok(v.into_iter().collect())
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> Map<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_like_a_btreemap() {
        let pairs = [
            ("version", "v1"),
            ("app", "reviews"),
            ("tier", "b"),
            ("app", "ratings"),
        ];
        let ours = m(&pairs);
        let theirs: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(ours.len(), theirs.len());
        assert!(ours.iter().eq(theirs.iter()), "{ours:?} vs {theirs:?}");
        assert_eq!(ours.get("app").map(String::as_str), Some("ratings"));
        assert!(ours.contains_key("tier") && !ours.contains_key("zone"));
        assert_eq!(ours, Map::from(theirs));
    }

    #[test]
    fn insert_and_remove_keep_the_order() {
        let mut a = m(&[("b", "2")]);
        assert_eq!(a.insert("a".into(), "1".into()), None);
        assert_eq!(a.insert("c".into(), "3".into()), None);
        assert_eq!(a.insert("b".into(), "two".into()), Some("2".into()));
        assert_eq!(a, m(&[("a", "1"), ("b", "two"), ("c", "3")]));
        assert_eq!(a.remove("b"), Some("two".into()));
        assert_eq!(a.remove("b"), None);
        assert_eq!(a.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "c"]);
    }

    #[test]
    fn json_round_trip_and_errors() {
        let a: Map<String, u32> = serde_json::from_str(r#"{"http": 8080, "grpc": 9090}"#).unwrap();
        assert_eq!(a.get("grpc"), Some(&9090));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"grpc":9090,"http":8080}"#
        );
        let e = serde_json::from_str::<Map<String, u32>>(r#"{"http": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = serde_json::from_str::<Map<String, u32>>("[1]").unwrap_err();
        assert!(e.to_string().contains("a map"), "{e}");
    }
}
