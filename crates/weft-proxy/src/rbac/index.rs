//! A pre-filter over an engine's policies, so that a request is checked
//! against the few policies that could match it rather than all of them.
//!
//! Envoy checks every policy in name order; so does weft below
//! [`MIN_POLICIES`]. Above it, each policy is read once when the filter
//! compiles for *necessary conditions* on a request attribute: "the URL
//! path is `/a` or starts with `/b/`", "`:method` is GET or HEAD", "the
//! destination port is 9080", "the peer is `spiffe://…/sa/x`", "header
//! `x-tenant` is not `t`". These are what istiod's AuthorizationPolicy
//! translation produces for `paths`, `methods`, `ports`, `principals`
//! and `when` on headers (with `notValues` as a negation). A request
//! then looks its attributes up in per-attribute tables and keeps, as a
//! bit set, the policies none of whose conditions it fails. Only those
//! are evaluated in full, still in name order, so the decision and the
//! effective policy are exactly what the linear scan gives.
//!
//! A condition is only ever *implied* by a policy (an index may keep a
//! policy that then fails, never drop one that would match): `and`
//! takes its members' conditions, `or` one attribute all its members
//! constrain (the union of their values), `not` flips a condition only
//! when it is the whole of what it negates. Anything else (regexes,
//! CIDRs, metadata, `ignore_case`) adds no condition: such a policy is
//! always a candidate.

use std::collections::HashMap;

use smallvec::SmallVec;

use super::matcher::{Permission, Principal};
use super::{Input, Policy};
use crate::matchers::{HeaderKey, Literal};

/// Below this many policies the linear scan is as fast as the lookups
/// (measured with the bench's 10-policy case: the index already pays).
pub(super) const MIN_POLICIES: usize = 4;

/// A request attribute a condition reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Attr {
    /// The path without query or fragment (`url_path`).
    UrlPath,
    /// A header or pseudo-header, every value of it.
    Header(HeaderKey),
    /// The connection's local port.
    Port,
    /// The peer certificate's URI SANs, DNS SANs and subject
    /// (`authenticated`).
    Principal,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Exact(Box<str>),
    Prefix(Box<str>),
    Port(u16),
}

/// "The attribute has one of `keys`", or with `negated` "none of them".
#[derive(Debug, Clone)]
struct Need {
    attr: Attr,
    keys: Vec<Key>,
    negated: bool,
}

/// Conditions a node's match implies. `exact`: a single condition that
/// is also sufficient (so `not` may negate it).
#[derive(Debug, Default)]
struct Needs {
    all: Vec<Need>,
    exact: bool,
}

impl Needs {
    fn one(attr: Attr, key: Key, negated: bool, exact: bool) -> Self {
        Needs {
            all: vec![Need {
                attr,
                keys: vec![key],
                negated,
            }],
            exact,
        }
    }

    fn and(parts: impl Iterator<Item = Needs>) -> Self {
        let mut out = Needs::default();
        let mut count = 0;
        let mut exact = true;
        for p in parts {
            count += 1;
            exact &= p.exact;
            for n in p.all {
                // One condition per attribute and polarity is enough
                // to filter on; a second only narrows further.
                if !out
                    .all
                    .iter()
                    .any(|m| m.attr == n.attr && m.negated == n.negated)
                {
                    out.all.push(n);
                }
            }
        }
        out.exact = exact && count == 1 && out.all.len() == 1;
        out
    }

    fn or(parts: impl Iterator<Item = Needs>) -> Self {
        let parts: Vec<Needs> = parts.collect();
        let Some(first) = parts.first() else {
            // An empty `or` matches nothing; saying nothing is safe.
            return Needs::default();
        };
        let mut out = Needs::default();
        for n in &first.all {
            // Positive: one of the union of the members' values.
            // Negative: none of the values every member excludes.
            let mut keys = n.keys.clone();
            let all_constrain = parts[1..].iter().all(|p| {
                let Some(m) = p
                    .all
                    .iter()
                    .find(|m| m.negated == n.negated && m.attr == n.attr)
                else {
                    return false;
                };
                if n.negated {
                    keys.retain(|k| m.keys.contains(k));
                } else {
                    for k in &m.keys {
                        if !keys.contains(k) {
                            keys.push(k.clone());
                        }
                    }
                }
                true
            });
            if all_constrain && !keys.is_empty() {
                out.all.push(Need {
                    attr: n.attr.clone(),
                    keys,
                    negated: n.negated,
                });
            }
        }
        // A negative one is only necessary: with a header sent twice,
        // "not a or not b" also holds when no single value is in both.
        out.exact =
            matches!(out.all.as_slice(), [n] if !n.negated) && parts.iter().all(|p| p.exact);
        out
    }

    fn not(inner: Needs) -> Self {
        match (inner.exact, inner.all.as_slice()) {
            (true, [n]) => Needs {
                all: vec![Need {
                    negated: !n.negated,
                    ..n.clone()
                }],
                exact: true,
            },
            _ => Needs::default(),
        }
    }
}

fn literal_key(l: Literal) -> Key {
    match l {
        Literal::Exact(v) => Key::Exact(v.into()),
        Literal::Prefix(v) => Key::Prefix(v.into()),
    }
}

fn permission(p: &Permission) -> Needs {
    match p {
        Permission::And(ps) => Needs::and(ps.iter().map(permission)),
        Permission::Or(ps) => Needs::or(ps.iter().map(permission)),
        Permission::Not(p) => Needs::not(permission(p)),
        Permission::UrlPath(m) => match m.literal() {
            Some(l) => Needs::one(Attr::UrlPath, literal_key(l), false, true),
            None => Needs::default(),
        },
        Permission::Header(h) => header(h),
        Permission::DestinationPort(port) => Needs::one(Attr::Port, Key::Port(*port), false, true),
        _ => Needs::default(),
    }
}

fn principal(p: &Principal) -> Needs {
    match p {
        Principal::And(ps) => Needs::and(ps.iter().map(principal)),
        Principal::Or(ps) => Needs::or(ps.iter().map(principal)),
        Principal::Not(p) => Needs::not(principal(p)),
        Principal::Authenticated(Some(m)) => match m.literal() {
            // Without TLS there are no names to look up: the condition
            // fails, and its negation holds, as `authenticated` does.
            Some(l) => Needs::one(Attr::Principal, literal_key(l), false, true),
            None => Needs::default(),
        },
        Principal::UrlPath(m) => match m.literal() {
            Some(l) => Needs::one(Attr::UrlPath, literal_key(l), false, true),
            None => Needs::default(),
        },
        Principal::Header(h) => header(h),
        _ => Needs::default(),
    }
}

fn header(h: &crate::matchers::HeaderMatch) -> Needs {
    match h.literal() {
        // Inverted, the header must also be there: necessary, not exact.
        Some((k, v, inverted)) => Needs::one(
            Attr::Header(k.clone()),
            Key::Exact(v.into()),
            inverted,
            !inverted,
        ),
        None => Needs::default(),
    }
}

fn policy(p: &Policy) -> Needs {
    Needs::and(
        [
            Needs::or(p.permissions.iter().map(permission)),
            Needs::or(p.principals.iter().map(principal)),
        ]
        .into_iter(),
    )
}

/// A set of policies by position, as kept in the index.
type Bits = Box<[u64]>;

/// A set of policies by position, as worked out for a request: on the
/// stack up to 1,024 policies.
type Scratch = SmallVec<[u64; 16]>;

fn empty(words: usize) -> Bits {
    vec![0; words].into_boxed_slice()
}

fn set(bits: &mut [u64], i: u32) {
    bits[i as usize / 64] |= 1 << (i % 64);
}

fn clear(bits: &mut [u64], i: u32) {
    bits[i as usize / 64] &= !(1 << (i % 64));
}

/// The policies under one key: their positions while few, a bit set
/// once there are more than two per 64 policies (then it is smaller,
/// and applying it costs one operation per word, not per policy).
#[derive(Debug)]
enum Hits {
    List(Vec<u32>),
    Bits(Bits),
}

impl Hits {
    fn push(&mut self, i: u32, words: usize) {
        match self {
            Hits::List(list) => {
                if list.last() != Some(&i) {
                    list.push(i);
                }
                if list.len() > 2 * words {
                    let mut bits = empty(words);
                    list.iter().for_each(|&i| set(&mut bits, i));
                    *self = Hits::Bits(bits);
                }
            }
            Hits::Bits(bits) => set(bits, i),
        }
    }

    fn each(&self, mut f: impl FnMut(u32)) {
        match self {
            Hits::List(list) => list.iter().for_each(|&i| f(i)),
            Hits::Bits(bits) => {
                for (w, &word) in bits.iter().enumerate() {
                    let mut b = word;
                    while b != 0 {
                        f((w * 64) as u32 + b.trailing_zeros());
                        b &= b - 1;
                    }
                }
            }
        }
    }

    /// Adds the policies to `target`, or with `remove` takes them out.
    fn apply(&self, target: &mut [u64], remove: bool) {
        match (self, remove) {
            (Hits::List(list), false) => list.iter().for_each(|&i| set(target, i)),
            (Hits::List(list), true) => list.iter().for_each(|&i| clear(target, i)),
            (Hits::Bits(bits), false) => target.iter_mut().zip(bits).for_each(|(t, b)| *t |= b),
            (Hits::Bits(bits), true) => target.iter_mut().zip(bits).for_each(|(t, b)| *t &= !b),
        }
    }
}

/// Policy positions by the values they name.
#[derive(Debug, Default)]
struct Table {
    exact: HashMap<Box<str>, Hits>,
    prefix: HashMap<Box<str>, Hits>,
    /// The prefixes' lengths, each once.
    prefix_lens: Vec<usize>,
    port: HashMap<u16, Hits>,
}

impl Table {
    fn add(&mut self, key: &Key, i: u32, words: usize) {
        let hits = match key {
            Key::Exact(v) => self.exact.entry(v.clone()),
            Key::Prefix(v) => {
                if !self.prefix_lens.contains(&v.len()) {
                    self.prefix_lens.push(v.len());
                }
                self.prefix.entry(v.clone())
            }
            Key::Port(p) => {
                self.port
                    .entry(*p)
                    .or_insert_with(|| Hits::List(Vec::new()))
                    .push(i, words);
                return;
            }
        };
        hits.or_insert_with(|| Hits::List(Vec::new()))
            .push(i, words);
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty() && self.port.is_empty()
    }

    fn all(&self) -> impl Iterator<Item = &Hits> {
        self.exact
            .values()
            .chain(self.prefix.values())
            .chain(self.port.values())
    }

    /// Adds to (or with `remove` takes out of) `target` every policy
    /// whose key `value` satisfies.
    fn apply(&self, value: Value, target: &mut [u64], remove: bool) {
        let mut hit = |hits: Option<&Hits>| {
            if let Some(h) = hits {
                h.apply(target, remove);
            }
        };
        match value {
            Value::Str(v) => {
                hit(self.exact.get(v));
                for &len in &self.prefix_lens {
                    if let Some(p) = v.get(..len) {
                        hit(self.prefix.get(p));
                    }
                }
            }
            Value::Port(p) => hit(self.port.get(&p)),
        }
    }
}

#[derive(Clone, Copy)]
enum Value<'a> {
    Str(&'a str),
    Port(u16),
}

#[derive(Debug)]
struct AttrIndex {
    attr: Attr,
    /// Policies without a positive condition on the attribute.
    free: Bits,
    /// Positive conditions: the policy stays only if a value is here.
    within: Table,
    /// Negative conditions: the policy goes if a value is here.
    without: Table,
}

impl AttrIndex {
    fn each_value<'a>(&self, input: &Input<'a>, mut f: impl FnMut(Value<'a>)) {
        match &self.attr {
            Attr::UrlPath => {
                let full = input.request.path_and_query;
                if !full.is_empty() {
                    let end = full.find(['?', '#']).unwrap_or(full.len());
                    f(Value::Str(&full[..end]));
                }
            }
            Attr::Header(k) => k.for_each_value(&input.request, |v| f(Value::Str(v))),
            Attr::Port => {
                if let Some(a) = input.conn.local {
                    f(Value::Port(a.port()));
                }
            }
            Attr::Principal => {
                if let Some(tls) = &input.conn.tls {
                    tls.peer_identities
                        .iter()
                        .chain(&tls.peer_dns_sans)
                        .chain(std::iter::once(&tls.peer_subject))
                        .for_each(|v| f(Value::Str(v)));
                }
            }
        }
    }
}

/// The tables for an engine's policies, or `None` when they are too few
/// or name no condition an index can use.
#[derive(Debug)]
pub(super) struct Index {
    /// Every policy.
    all: Bits,
    attrs: Vec<AttrIndex>,
}

impl Index {
    pub(super) fn build(policies: &[Policy]) -> Option<Index> {
        if policies.len() < MIN_POLICIES {
            return None;
        }
        let words = policies.len().div_ceil(64);
        let mut attrs: Vec<AttrIndex> = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            let i = u32::try_from(i).ok()?;
            for need in policy(p).all {
                let at = match attrs.iter().position(|a| a.attr == need.attr) {
                    Some(at) => at,
                    None => {
                        attrs.push(AttrIndex {
                            attr: need.attr.clone(),
                            free: empty(words),
                            within: Table::default(),
                            without: Table::default(),
                        });
                        attrs.len() - 1
                    }
                };
                let table = if need.negated {
                    &mut attrs[at].without
                } else {
                    &mut attrs[at].within
                };
                for k in &need.keys {
                    table.add(k, i, words);
                }
            }
        }
        // `free` holds the policies with no positive condition on the
        // attribute: all of them, less those in `within`.
        for a in &mut attrs {
            for i in 0..policies.len() {
                set(&mut a.free, i as u32);
            }
            let free = &mut a.free;
            a.within.all().for_each(|h| h.each(|i| clear(free, i)));
        }
        attrs.retain(|a| !(a.within.is_empty() && a.without.is_empty()));
        let mut all = empty(words);
        for i in 0..policies.len() {
            set(&mut all, i as u32);
        }
        (!attrs.is_empty()).then_some(Index { all, attrs })
    }

    /// The positions of the policies that may match `input`, ascending.
    pub(super) fn candidates(&self, input: &Input) -> impl Iterator<Item = usize> {
        let mut keep: Scratch = SmallVec::from_slice(&self.all);
        let mut allowed = Scratch::new();
        for a in &self.attrs {
            if !a.within.is_empty() {
                allowed.clear();
                allowed.extend_from_slice(&a.free);
                a.each_value(input, |v| a.within.apply(v, &mut allowed, false));
                keep.iter_mut().zip(&allowed).for_each(|(k, w)| *k &= *w);
            }
            if !a.without.is_empty() {
                a.each_value(input, |v| a.without.apply(v, &mut keep, true));
            }
        }
        keep.into_iter().enumerate().flat_map(|(w, mut bits)| {
            std::iter::from_fn(move || {
                (bits != 0).then(|| {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    w * 64 + b
                })
            })
        })
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
