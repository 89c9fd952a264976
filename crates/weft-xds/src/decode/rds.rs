//! Route tables by parts. A control plane resends a whole
//! RouteConfiguration when one route in it changes; with thousands of
//! virtual hosts, decoding all of them again is most of the cost of the
//! update. The table's wire bytes are split into its virtual hosts
//! (field 2) and the rest; a host whose bytes equal one of the table held
//! now is shared as it is, the rest decode and check on their own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use prost_reflect::DynamicMessage;
use weft_envoy::route::VirtualHost;

use weft_envoy::resource::direct;

use super::de::MessageDe;
use super::{message, message_json, DecodeError, Kind, Resource, POOL};
use crate::ads::Held;

/// `RouteConfiguration.virtual_hosts`.
const VIRTUAL_HOSTS: u64 = 2;

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The table without its virtual hosts, and the hosts' bytes in order.
/// None when the bytes are not well-formed protobuf (the whole-message
/// decode then says why).
pub(crate) fn split(bytes: &[u8]) -> Option<(Vec<u8>, Vec<&[u8]>)> {
    let mut rest = Vec::new();
    let mut hosts = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let key = varint(bytes, &mut at)?;
        let end = match key & 7 {
            0 => {
                varint(bytes, &mut at)?;
                at
            }
            1 => at.checked_add(8)?,
            5 => at.checked_add(4)?,
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).ok()?;
                let end = at.checked_add(len)?;
                if key >> 3 == VIRTUAL_HOSTS {
                    hosts.push(bytes.get(at..end)?);
                    at = end;
                    continue;
                }
                end
            }
            // Groups: not in Envoy's protos.
            _ => return None,
        };
        rest.extend_from_slice(bytes.get(start..end)?);
        at = end;
    }
    Some((rest, hosts))
}

/// Decodes a route table, reusing the held table's unchanged hosts.
/// None: not splittable, decode it whole.
pub(super) fn decode(
    bytes: &[u8],
    clusters: &HashSet<&str>,
    held: &BTreeMap<String, Held>,
) -> Option<Result<(String, Resource), DecodeError>> {
    let (rest, hosts) = split(bytes)?;
    Some(decode_parts(&rest, &hosts, clusters, held))
}

fn decode_parts(
    rest: &[u8],
    hosts: &[&[u8]],
    clusters: &HashSet<&str>,
    held: &BTreeMap<String, Held>,
) -> Result<(String, Resource), DecodeError> {
    let kind = Kind::RouteConfiguration;
    let (_, name, msg) = message(&kind.type_url(), rest)?;
    let field = |e: weft_envoy::FieldError, prefix: String| DecodeError::Field {
        kind,
        name: name.clone(),
        field: format!("{prefix}{}", weft_envoy::display_path(&e.path)),
        message: e.message,
    };
    let mut rc = match direct::route_configuration(MessageDe(&msg), clusters) {
        Some(rc) => rc,
        None => {
            let json = message_json(&msg, kind, &name)?;
            weft_envoy::resource::route_configuration(json, clusters)
        }
    }
    .map_err(|e| field(e, String::new()))?;
    let kept = kept_hosts(held.get(&name));
    let desc = POOL
        .get_message_by_name("envoy.config.route.v3.VirtualHost")
        .expect("build.rs compiles RouteConfiguration and so VirtualHost");
    for (i, host) in hosts.iter().enumerate() {
        if let Some(vh) = kept.get(host) {
            rc.virtual_hosts.push(Arc::clone(vh));
            continue;
        }
        let msg =
            DynamicMessage::decode(desc.clone(), *host).map_err(|e| DecodeError::Protobuf {
                kind,
                reason: format!("virtual_hosts[{i}]: {e}"),
            })?;
        let vh = match direct::virtual_host(MessageDe(&msg)) {
            Some(vh) => vh,
            None => {
                let json = message_json(&msg, kind, &name)?;
                weft_envoy::resource::virtual_host(json)
            }
        }
        .map_err(|e| field(e, format!("virtual_hosts[{i}].")))?;
        rc.virtual_hosts.push(Arc::new(vh));
    }
    if rc.validate_clusters == Some(true) {
        weft_envoy::resource::check_route_configuration(&rc, clusters)
            .map_err(|e| field(e, String::new()))?;
    }
    Ok((name, Resource::RouteConfiguration(rc)))
}

/// The held table's hosts by their bytes.
fn kept_hosts(held: Option<&Held>) -> HashMap<&[u8], &Arc<VirtualHost>> {
    let Some(held) = held else {
        return HashMap::new();
    };
    let Resource::RouteConfiguration(rc) = &*held.resource else {
        return HashMap::new();
    };
    match split(&held.bytes) {
        Some((_, hosts)) if hosts.len() == rc.virtual_hosts.len() => {
            hosts.into_iter().zip(rc.virtual_hosts.iter()).collect()
        }
        _ => HashMap::new(),
    }
}
