//! A route table's virtual hosts by domain: exact names, `*.suffix` /
//! `*suffix` and `prefix*` wildcards, and `*`.
//!
//! A control plane resends a whole table when one route changes, and a
//! sidecar's table has a virtual host per service with several names
//! each. When the domains are the same as the previous table's, the
//! index is shared with it instead of being built again.

use std::collections::HashMap;
use std::sync::Arc;

use weft_envoy::route as cfg;

#[derive(Debug, Default)]
pub(super) struct Domains {
    exact: HashMap<String, usize>,
    /// `*.suffix` and `*suffix` domains, longest suffix first.
    suffix: Vec<(String, usize)>,
    /// `prefix*` domains, longest prefix first.
    prefix: Vec<(String, usize)>,
    any: Option<usize>,
}

impl Domains {
    /// The index of `hosts`; `previous` (the table's last index and the
    /// virtual hosts it was built from) is shared when every host has the
    /// same domains at the same place.
    pub(super) fn index(
        hosts: &[Arc<cfg::VirtualHost>],
        previous: Option<(&Arc<Domains>, Vec<&cfg::VirtualHost>)>,
    ) -> Result<Arc<Domains>, String> {
        if let Some((index, before)) = previous {
            let same = before.len() == hosts.len()
                && before
                    .iter()
                    .zip(hosts)
                    .all(|(b, h)| std::ptr::eq(*b, &**h) || b.domains == h.domains);
            if same {
                return Ok(Arc::clone(index));
            }
        }
        let mut d = Domains::default();
        for (i, vh) in hosts.iter().enumerate() {
            for name in &vh.domains {
                let name = name.to_ascii_lowercase();
                let dup = if name == "*" {
                    d.any.replace(i).is_some()
                } else if let Some(s) = name.strip_prefix('*') {
                    let dup = d.suffix.iter().any(|(x, _)| x == s);
                    d.suffix.push((s.to_string(), i));
                    dup
                } else if let Some(p) = name.strip_suffix('*') {
                    let dup = d.prefix.iter().any(|(x, _)| x == p);
                    d.prefix.push((p.to_string(), i));
                    dup
                } else {
                    d.exact.insert(name.clone(), i).is_some()
                };
                if dup {
                    return Err(format!(
                        "virtual_hosts[{i}]: domain {name:?} is used by another virtual host"
                    ));
                }
            }
        }
        d.suffix.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        d.prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(Arc::new(d))
    }

    /// The virtual host for a Host/:authority value: exact, then the
    /// longest suffix wildcard, then the longest prefix wildcard, then `*`.
    pub(super) fn find(&self, host: &str) -> Option<usize> {
        // Host headers are almost always lower case already: copy only
        // when one is not (this runs for every request).
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        self.exact
            .get(host)
            .copied()
            .or_else(|| {
                self.suffix
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, i)| *i)
            })
            .or_else(|| {
                self.prefix
                    .iter()
                    .find(|(p, _)| host.len() > p.len() && host.starts_with(p.as_str()))
                    .map(|(_, i)| *i)
            })
            .or(self.any)
    }
}
