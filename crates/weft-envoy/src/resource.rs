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

/// A secret from SDS (a certificate with its key, or a validation context).
pub fn secret(value: Value) -> Result<crate::tls::Secret, FieldError> {
    let s: crate::tls::Secret = decode(normalize::snake_case_keys(value))?;
    check::secret_resource(&s)?;
    Ok(s)
}

pub fn cluster_load_assignment(value: Value) -> Result<ClusterLoadAssignment, FieldError> {
    decode(normalize::snake_case_keys(value))
}

/// The same resources read from any deserializer that presents their
/// proto3 JSON form with proto field names (weft-xds reads them straight
/// from decoded protobuf, without building the JSON).
///
/// Each returns `None` when the input does not deserialize: the caller
/// then decodes the JSON form, whose error names the field. What does
/// deserialize goes through the same checks as the JSON form.
pub mod direct {
    use std::collections::HashSet;

    use serde::{Deserialize, Deserializer};

    use crate::cluster::{Cluster, ClusterLoadAssignment};
    use crate::listener::Listener;
    use crate::route::{RouteConfiguration, VirtualHost};
    use crate::{any, check, FieldError};

    fn read<'de, T: Deserialize<'de>>(d: impl Deserializer<'de>) -> Option<T> {
        match T::deserialize(d) {
            Ok(t) => Some(t),
            Err(_) => {
                // A typed_config that failed left its error for a path
                // this read does not track; the JSON form finds it again.
                any::take_nested_error();
                None
            }
        }
    }

    pub fn listener<'de>(
        d: impl Deserializer<'de>,
        clusters: &HashSet<&str>,
    ) -> Option<Result<Listener, FieldError>> {
        let l: Listener = read(d)?;
        Some(check::listener_resource(&l, clusters).map(|()| l))
    }

    pub fn cluster<'de>(d: impl Deserializer<'de>) -> Option<Result<Cluster, FieldError>> {
        let c: Cluster = read(d)?;
        Some(check::cluster_resource(&c).map(|()| c))
    }

    pub fn route_configuration<'de>(
        d: impl Deserializer<'de>,
        clusters: &HashSet<&str>,
    ) -> Option<Result<RouteConfiguration, FieldError>> {
        let rc: RouteConfiguration = read(d)?;
        Some(check::route_configuration_resource(&rc, clusters).map(|()| rc))
    }

    pub fn virtual_host<'de>(d: impl Deserializer<'de>) -> Option<Result<VirtualHost, FieldError>> {
        let vh: VirtualHost = read(d)?;
        Some(check::virtual_host_resource(&vh).map(|()| vh))
    }

    pub fn cluster_load_assignment<'de>(
        d: impl Deserializer<'de>,
    ) -> Option<ClusterLoadAssignment> {
        read(d)
    }
}
