//! `weft proxy-config secret PROXY`, as `istioctl proxy-config secret`:
//! the certificates a proxy holds now — its workload certificate
//! (`default`) and the mesh root (`ROOTCA`), or a gateway's credentials —
//! with serial, validity and the SPIFFE identity, read from the proxy's
//! own `/config_dump` (`SecretsConfigDump`), so it shows what Envoy or
//! weft actually serves, not what the control plane meant to send. The
//! proxy is found through the control plane: its bootstrap announces its
//! admin port (`PROXY_CONFIG.proxyAdminPort`).

use std::net::SocketAddr;
use std::time::SystemTime;

use anyhow::Context as _;
use serde_json::Value;
use weft_identity::x509::{certs_from_pem, Info};

/// The connected proxy `proxy` names (a node id, `name.namespace`, or a
/// workload name that only one proxy has), and its admin address.
fn find_admin(control: SocketAddr, proxy: &str) -> anyhow::Result<(String, SocketAddr)> {
    let body = crate::control::get(control, "/debug/syncz")?;
    let doc: Value = serde_json::from_str(&body).context("control plane sent bad JSON")?;
    let proxies: Vec<&Value> = doc["proxies"].as_array().into_iter().flatten().collect();
    let id_of = |p: &Value| p["proxy"].as_str().unwrap_or_default().to_string();
    // sidecar~IP~NAME.NS~NS.svc.cluster.local
    let workload = |id: &str| id.split('~').nth(2).unwrap_or_default().to_string();
    let matching: Vec<&&Value> = proxies
        .iter()
        .filter(|p| {
            let id = id_of(p);
            let w = workload(&id);
            id == proxy || w == proxy || w.split('.').next() == Some(proxy)
        })
        .collect();
    let p = match matching.as_slice() {
        [one] => one,
        [] => anyhow::bail!(
            "no connected proxy {proxy:?}; connected: {}",
            proxies
                .iter()
                .map(|p| workload(&id_of(p)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        many => anyhow::bail!(
            "{proxy:?} names {} proxies; give name.namespace or the node id",
            many.len()
        ),
    };
    let id = id_of(p);
    let port = p["admin_port"].as_u64().with_context(|| {
        format!("{id}: its bootstrap does not announce an admin port (node metadata PROXY_CONFIG.proxyAdminPort)")
    })?;
    let port = u16::try_from(port).context("admin port out of range")?;
    Ok((id, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// The PEM a DataSource carries inline (a file's is not read here: it is
/// the proxy's file).
fn pem_of(source: &Value) -> Option<String> {
    if let Some(s) = source["inline_string"].as_str() {
        return Some(s.to_string());
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(source["inline_bytes"].as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// RFC 3339, seconds, UTC (as istioctl prints validity): Envoy's
/// timestamp without its milliseconds.
fn date(t: SystemTime) -> String {
    let stamp = weft_proxy::format_time(t);
    match stamp.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => stamp,
    }
}

/// One row per secret: its first certificate (the leaf of a chain, or
/// the first root of a bundle).
fn row(name: &str, status: &str, secret: &Value) -> Vec<String> {
    let (kind, source) = if secret.get("tls_certificate").is_some() {
        (
            "Cert Chain",
            &secret["tls_certificate"]["certificate_chain"],
        )
    } else if secret.get("validation_context").is_some() {
        ("CA", &secret["validation_context"]["trusted_ca"])
    } else {
        ("-", &Value::Null)
    };
    let first = pem_of(source)
        .and_then(|pem| certs_from_pem(name, &pem).ok())
        .and_then(|certs| certs.into_iter().next())
        .and_then(|der| Info::read(name, &der).ok());
    let mut r = vec![name.to_string(), kind.to_string(), status.to_string()];
    match first {
        Some(info) => {
            let now = SystemTime::now();
            let valid = info.not_before <= now && now <= info.not_after;
            r.extend([
                valid.to_string(),
                info.serial.clone(),
                date(info.not_after),
                date(info.not_before),
                info.uri_sans.first().cloned().unwrap_or_else(|| "-".into()),
            ]);
        }
        None => r.extend(["false", "-", "-", "-", "-"].map(String::from)),
    }
    r
}

pub fn run(control: SocketAddr, proxy: &str, json: bool) -> anyhow::Result<u8> {
    let (id, admin) = find_admin(control, proxy)?;
    let body = crate::control::get(admin, "/config_dump")
        .with_context(|| format!("{id}: its admin endpoint {admin}"))?;
    let dump: Value = serde_json::from_str(&body).context("the proxy sent bad JSON")?;
    let secrets = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with(".SecretsConfigDump"))
        })
        .cloned()
        .unwrap_or(Value::Null);
    if json {
        println!("{}", serde_json::to_string_pretty(&secrets)?);
        return Ok(0);
    }
    let mut rows = vec![[
        "RESOURCE NAME",
        "TYPE",
        "STATUS",
        "VALID CERT",
        "SERIAL NUMBER",
        "NOT AFTER",
        "NOT BEFORE",
        "IDENTITY",
    ]
    .map(String::from)
    .to_vec()];
    for (list, status) in [
        ("static_secrets", "ACTIVE"),
        ("dynamic_active_secrets", "ACTIVE"),
        ("dynamic_warming_secrets", "WARMING"),
    ] {
        for s in secrets[list].as_array().into_iter().flatten() {
            let name = s["name"].as_str().unwrap_or_default();
            rows.push(row(name, status, &s["secret"]));
        }
    }
    crate::proxy_config::table(rows, "     ");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_292_000);
        assert_eq!(date(t), "2026-12-03T10:00:00Z");
        assert_eq!(date(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
