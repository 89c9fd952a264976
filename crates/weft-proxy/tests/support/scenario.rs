//! Building blocks for the xDS-driven parity tests of resilience
//! features: route tables in Envoy's JSON, both proxies on their own fake
//! control planes, and request patterns (bursts, sequences).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::request;
use super::xds::Side;

/// A route on `prefix` to `cluster` with `action` fields merged in.
pub fn route(prefix: &str, cluster: &str, action: Value) -> Value {
    let mut a = json!({"cluster": cluster});
    for (k, v) in action.as_object().unwrap() {
        a[k] = v.clone();
    }
    json!({"match": {"prefix": prefix}, "route": a})
}

pub fn table(routes: Vec<Value>) -> Value {
    json!({"name": "local", "virtual_hosts": [{
        "name": "all",
        "domains": ["*"],
        "include_request_attempt_count": true,
        "include_attempt_count_in_response": true,
        "routes": routes
    }]})
}

pub async fn both_sides(backends: &[u16]) -> [Side; 2] {
    let sides = [
        Side::new("envoy", backends[0]).await.start().await,
        Side::new("weft", backends[0]).await.start().await,
    ];
    for s in &sides {
        s.synced().await;
    }
    sides
}

/// Fires `n` requests at once and counts the answers by status.
pub async fn burst(
    side: &Side,
    path: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> BTreeMap<u16, usize> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let url = format!("http://127.0.0.1:{}{path}", side.port);
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            request("GET", &url, &h, false).await
        }));
    }
    let mut out = BTreeMap::new();
    for t in tasks {
        let status = t.await.unwrap().map(|r| r.status).unwrap_or(0);
        *out.entry(status).or_insert(0) += 1;
    }
    out
}

/// Sends `n` requests one after another; the answers as "STATUS from
/// BACKEND".
pub async fn sequence(side: &Side, host: &str, n: usize, headers: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut h = headers.to_vec();
        h.push(("host", host));
        let r = side.request("/", &h).await.unwrap();
        let from = r.headers.get("x-backend").cloned().unwrap_or("-".into());
        out.push(format!("{} from {from}", r.status));
    }
    out
}
