//! `weft proxy-config clusters|listeners|routes|endpoints|all PROXY`:
//! what the control plane serves a connected proxy, as istioctl's tables
//! (or the Envoy JSON with `-o json`). PROXY is a node id or the
//! workload's `name.namespace`. The proxy has this configuration when
//! `weft proxy-status` shows it SYNCED.

use std::net::SocketAddr;

use anyhow::Context as _;
use serde_json::Value;

/// Prints rows as columns as wide as their widest cell, `gap` apart.
pub(crate) fn table(rows: Vec<Vec<String>>, gap: &str) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join(gap).trim_end());
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn clusters(dump: &Value) {
    let mut rows = vec![vec![
        "SERVICE FQDN".into(),
        "PORT".into(),
        "SUBSET".into(),
        "DIRECTION".into(),
        "TYPE".into(),
    ]];
    for c in dump["clusters"].as_array().into_iter().flatten() {
        let name = s(&c["name"]);
        let kind = c["type"].as_str().unwrap_or("STATIC").to_string();
        let parts: Vec<&str> = name.split('|').collect();
        rows.push(match parts.as_slice() {
            [direction, port, subset, host] => vec![
                host.to_string(),
                port.to_string(),
                if subset.is_empty() {
                    "-".into()
                } else {
                    subset.to_string()
                },
                direction.to_string(),
                kind,
            ],
            _ => vec![name, "-".into(), "-".into(), "-".into(), kind],
        });
    }
    table(rows, "     ");
}

fn listeners(dump: &Value) {
    let mut rows = vec![vec![
        "ADDRESSES".into(),
        "PORT".into(),
        "MATCH".into(),
        "DESTINATION".into(),
    ]];
    for l in dump["listeners"].as_array().into_iter().flatten() {
        let sock = &l["address"]["socket_address"];
        for chain in l["filter_chains"].as_array().into_iter().flatten() {
            let matched = chain
                .get("filter_chain_match")
                .map_or("ALL".to_string(), |m| m.to_string());
            for f in chain["filters"].as_array().into_iter().flatten() {
                let tc = &f["typed_config"];
                let dest = if let Some(r) = tc["rds"]["route_config_name"].as_str() {
                    format!("Route: {r}")
                } else if let Some(r) = tc["route_config"]["name"].as_str() {
                    format!("Inline Route: {r}")
                } else if let Some(c) = tc["cluster"].as_str() {
                    format!("Cluster: {c}")
                } else {
                    s(&f["name"])
                };
                rows.push(vec![
                    s(&sock["address"]),
                    s(&sock["port_value"]),
                    matched.clone(),
                    dest,
                ]);
            }
        }
    }
    table(rows, "     ");
}

fn route_match(m: &Value) -> String {
    for k in ["prefix", "path"] {
        if let Some(p) = m[k].as_str() {
            return if k == "prefix" {
                format!("{p}*")
            } else {
                p.to_string()
            };
        }
    }
    m["safe_regex"]["regex"]
        .as_str()
        .map_or("/*".into(), |r| format!("~{r}"))
}

fn routes(dump: &Value) {
    let mut rows = vec![vec![
        "NAME".into(),
        "VHOST NAME".into(),
        "DOMAINS".into(),
        "MATCH".into(),
        "ROUTE".into(),
    ]];
    for t in dump["routes"].as_array().into_iter().flatten() {
        for vh in t["virtual_hosts"].as_array().into_iter().flatten() {
            let domains: Vec<&str> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let shown = match domains.as_slice() {
                [] => "-".to_string(),
                [one] => one.to_string(),
                [first, rest @ ..] => format!("{first} + {} more...", rest.len()),
            };
            for r in vh["routes"].as_array().into_iter().flatten() {
                let action = if let Some(c) = r["route"]["cluster"].as_str() {
                    c.to_string()
                } else if let Some(w) = r["route"]["weighted_clusters"]["clusters"].as_array() {
                    w.iter()
                        .map(|c| format!("{} {}%", s(&c["name"]), s(&c["weight"])))
                        .collect::<Vec<_>>()
                        .join(", ")
                } else if r.get("redirect").is_some() {
                    "redirect".into()
                } else if let Some(st) = r["direct_response"]["status"].as_u64() {
                    format!("direct response {st}")
                } else {
                    "-".into()
                };
                rows.push(vec![
                    s(&t["name"]),
                    s(&vh["name"]),
                    shown.clone(),
                    route_match(&r["match"]),
                    action,
                ]);
            }
        }
    }
    table(rows, "     ");
}

fn endpoints(dump: &Value) {
    let mut rows = vec![vec!["ENDPOINT".into(), "STATUS".into(), "CLUSTER".into()]];
    for cla in dump["endpoints"].as_array().into_iter().flatten() {
        for group in cla["endpoints"].as_array().into_iter().flatten() {
            for e in group["lb_endpoints"].as_array().into_iter().flatten() {
                let sock = &e["endpoint"]["address"]["socket_address"];
                rows.push(vec![
                    format!("{}:{}", s(&sock["address"]), s(&sock["port_value"])),
                    "HEALTHY".into(),
                    s(&cla["cluster_name"]),
                ]);
            }
        }
    }
    table(rows, "     ");
}

pub fn run(control: SocketAddr, what: &str, proxy: &str, json: bool) -> anyhow::Result<u8> {
    let path = format!("/debug/config_dump?proxyID={}", proxy.replace('~', "%7E"));
    let body = crate::control::get(control, &path)?;
    let dump: Value = serde_json::from_str(&body).context("control plane sent bad JSON")?;
    let sections: &[&str] = match what {
        "all" => &["clusters", "listeners", "routes", "endpoints"],
        "clusters" => &["clusters"],
        "listeners" => &["listeners"],
        "routes" => &["routes"],
        "endpoints" => &["endpoints"],
        other => anyhow::bail!("{other:?}: expected clusters, listeners, routes, endpoints or all"),
    };
    if json {
        let picked: serde_json::Map<String, Value> = sections
            .iter()
            .map(|k| (k.to_string(), dump[*k].clone()))
            .collect();
        println!("{}", serde_json::to_string_pretty(&picked)?);
        return Ok(0);
    }
    for (i, section) in sections.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match *section {
            "clusters" => clusters(&dump),
            "listeners" => listeners(&dump),
            "routes" => routes(&dump),
            _ => endpoints(&dump),
        }
    }
    Ok(0)
}
