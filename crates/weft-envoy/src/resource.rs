//! One resource at a time, as xDS delivers them: a Listener, Cluster,
//! RouteConfiguration or ClusterLoadAssignment in its proto3 JSON form,
//! decoded and checked on its own. Error paths are relative to the
//! resource (`filter_chains[0].filters[0]...`).

use std::collections::HashSet;

use serde_json::Value;

use crate::cluster::{Cluster, ClusterLoadAssignment};
use crate::listener::Listener;
use crate::route::{RouteConfiguration, VirtualHost};
use crate::{check, decode, normalize, FieldError};

/// A listener. Inline route tables check their cluster references
/// against `clusters` (Envoy's `validate_clusters` default for them).
pub fn listener(value: Value, clusters: &HashSet<&str>) -> Result<Listener, FieldError> {
    let l: Listener = decode(normalize::snake_case_keys(value))?;
    check::listener_resource(&l, clusters)?;
    Ok(l)
}

pub fn cluster(value: Value) -> Result<Cluster, FieldError> {
    let c: Cluster = decode(normalize::snake_case_keys(value))?;
    check::cluster_resource(&c)?;
    Ok(c)
}

/// A route table from RDS: cluster references are checked only when
/// the table asks for it (`validate_clusters`, off by default for RDS).
pub fn route_configuration(
    value: Value,
    clusters: &HashSet<&str>,
) -> Result<RouteConfiguration, FieldError> {
    let rc: RouteConfiguration = decode(normalize::snake_case_keys(value))?;
    check::route_configuration_resource(&rc, clusters)?;
    Ok(rc)
}

/// One virtual host of an RDS table, decoded on its own (a table
/// delivered again decodes only the hosts that changed). Its cluster
/// references are not checked here: a table that asks for that
/// (`validate_clusters`) is checked whole with
/// [`check_route_configuration`].
pub fn virtual_host(value: Value) -> Result<VirtualHost, FieldError> {
    let vh: VirtualHost = decode(normalize::snake_case_keys(value))?;
    check::virtual_host_resource(&vh)?;
    Ok(vh)
}

/// The checks of [`route_configuration`] on a table put together from
/// parts.
pub fn check_route_configuration(
    rc: &RouteConfiguration,
    clusters: &HashSet<&str>,
) -> Result<(), FieldError> {
    check::route_configuration_resource(rc, clusters)
}

pub fn cluster_load_assignment(value: Value) -> Result<ClusterLoadAssignment, FieldError> {
    decode(normalize::snake_case_keys(value))
}
