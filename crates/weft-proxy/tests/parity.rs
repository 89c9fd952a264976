//! Envoy parity, table-driven: every file in `tests/parity/` is one
//! scenario — an HTTP connection manager's settings, a route
//! configuration, and requests, each with the answer it expects. The
//! scenario runs under Envoy and under weft from the same bootstrap;
//! what came back (status, which backend answered, what it saw, the
//! response headers that matter) must be equal, and must be what the
//! request expects, so two proxies wrong the same way still fail.
//!
//! Clusters every scenario has: `a` and `b` (echo backends), `b_h2`
//! (backend b over HTTP/2), `dead` (nothing listens), `empty` (no
//! endpoints). A scenario may add clusters; `${a}`, `${b}` and `${dead}`
//! in its text are those backends' ports.
//!
//! `WEFT_PARITY=name` runs one scenario (`path-*` those whose names
//! start so, `a,b` several); `WEFT_PARITY_SHOW=1` prints what Envoy
//! answered to each request (for writing new scenarios).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use support::pair::{http_bootstrap, static_cluster, yaml, Pair};
use support::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the scenario covers; for the reader.
    #[allow(dead_code)]
    about: String,
    #[serde(default)]
    hcm: Value,
    route_config: Value,
    #[serde(default)]
    clusters: Vec<Value>,
    /// Protocols every request is sent with, unless it names its own.
    #[serde(default = "both")]
    protocols: Vec<Proto>,
    requests: Vec<Req>,
}

#[derive(Clone, Copy, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Proto {
    Http1,
    Http2,
}

fn both() -> Vec<Proto> {
    vec![Proto::Http1, Proto::Http2]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Req {
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default = "default_host")]
    host: String,
    #[serde(default)]
    headers: Headers,
    #[serde(default)]
    body: String,
    /// A body of this many bytes (`0123456789` repeated) instead of `body`.
    body_bytes: Option<usize>,
    /// This many more headers, `x-test-extra-N: N`.
    #[serde(default)]
    extra_headers: usize,
    /// A header `x-test-big` this many bytes long.
    big_header: Option<usize>,
    protocols: Option<Vec<Proto>>,
    /// `backend NAME`, or the status code of a local reply.
    expect: String,
    /// Response headers whose values the request expects (beyond
    /// agreeing with Envoy).
    #[serde(default)]
    expect_headers: BTreeMap<String, String>,
    /// The path (with query) the backend must have received.
    expect_path: Option<String>,
}

/// Request headers as a map, or as a list of `[name, value]` pairs when
/// a name repeats.
#[derive(Deserialize, Default, Debug)]
#[serde(untagged)]
enum Headers {
    #[default]
    None,
    Map(BTreeMap<String, String>),
    List(Vec<(String, String)>),
}

impl Headers {
    fn pairs(&self) -> Vec<(&str, &str)> {
        match self {
            Headers::None => Vec::new(),
            Headers::Map(m) => m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            Headers::List(l) => l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        }
    }
}

fn get() -> String {
    "GET".into()
}

fn default_host() -> String {
    "parity.test".into()
}

/// The parts of a reply both proxies must agree on; `proxy` is the
/// address the request was sent to, which differs between the two.
fn observe(r: &Reply, proxy: &str) -> Value {
    // A backend's body echoes the request, request id included, so its
    // length differs between runs; a local reply's does not.
    let local = r.seen().is_none();
    let keep_resp = |k: &str| {
        matches!(
            k,
            "location"
                | "content-type"
                | "x-backend"
                | "server"
                | "set-cookie"
                | "cache-control"
                | "grpc-status"
                | "grpc-message"
        ) || (local && k == "content-length")
            || k.starts_with("x-added")
            || k.starts_with("x-test")
    };
    let resp_headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .filter(|(k, _)| keep_resp(k))
        .map(|(k, v)| (k.clone(), json!(v.replace(proxy, "PROXY"))))
        .collect();
    let seen = r.seen().map(|s| {
        let h = &s["headers"];
        let keep: serde_json::Map<String, Value> = h
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "host"
                        | "x-forwarded-proto"
                        | "x-envoy-expected-rq-timeout-ms"
                        | "x-forwarded-for"
                        | "x-envoy-original-path"
                        | "content-type"
                        | "content-length"
                        | "transfer-encoding"
                        | "te"
                        | "user-agent"
                        | "cookie"
                        | "expect"
                        | "connection"
                        | "x-envoy-upstream-rq-timeout-ms"
                ) || k.starts_with("x-test")
                    || k.starts_with("x-added")
                    || k.starts_with("x-envoy-")
            })
            .map(|(k, v)| (k.clone(), json!(v.to_string().replace(proxy, "PROXY"))))
            .collect();
        json!({
            "authority": json!(s["authority"].to_string().replace(proxy, "PROXY")),
            "version": s["version"],
            "method": s["method"],
            "path": s["path"],
            "body": s["body"],
            "headers": keep,
            "has_request_id": h.get("x-request-id").is_some(),
        })
    });
    json!({
        "status": r.status,
        "trailers": r.trailers,
        "response_headers": resp_headers,
        "seen": seen,
        "local_body": if r.seen().is_none() { json!(r.body) } else { Value::Null },
        "has_date": r.headers.contains_key("date"),
        "has_upstream_time": r.headers.contains_key("x-envoy-upstream-service-time"),
    })
}

/// Where two observations differ, one line per path: `path: weft ≠ envoy`.
fn differences(w: &Value, e: &Value, at: &str, out: &mut Vec<String>) {
    match (w, e) {
        (Value::Object(wm), Value::Object(em)) => {
            let keys: std::collections::BTreeSet<&String> = wm.keys().chain(em.keys()).collect();
            for k in keys {
                let (wv, ev) = (
                    wm.get(k).unwrap_or(&Value::Null),
                    em.get(k).unwrap_or(&Value::Null),
                );
                differences(wv, ev, &format!("{at}.{k}"), out);
            }
        }
        _ if w != e => out.push(format!("  {at}: weft {w} ≠ envoy {e}")),
        _ => {}
    }
}

struct Backends {
    a: u16,
    b: u16,
    dead: u16,
}

async fn run_file(path: &Path, be: &Backends) {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("${a}", &be.a.to_string())
        .replace("${b}", &be.b.to_string())
        .replace("${dead}", &be.dead.to_string());
    let sc: Scenario = serde_json::from_value(yaml(&text))
        .unwrap_or_else(|e| panic!("{}: not a scenario: {e}", path.display()));
    let mut clusters = vec![
        static_cluster("a", be.a, false),
        static_cluster("b", be.b, false),
        static_cluster("b_h2", be.b, true),
        static_cluster("dead", be.dead, false),
        json!({"name": "empty", "type": "STATIC", "connect_timeout": "1s"}),
    ];
    clusters.extend(sc.clusters.iter().cloned());
    let pair = Pair::start(|listen, admin| {
        http_bootstrap(listen, admin, &sc.hcm, &sc.route_config, &clusters)
    })
    .await;

    for r in &sc.requests {
        for &proto in r.protocols.as_ref().unwrap_or(&sc.protocols) {
            let extra: Vec<(String, String)> = (0..r.extra_headers)
                .map(|i| (format!("x-test-extra-{i}"), i.to_string()))
                .chain(
                    r.big_header
                        .map(|n| ("x-test-big".to_string(), "x".repeat(n))),
                )
                .collect();
            let mut headers = r.headers.pairs();
            headers.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let body: Vec<u8> = match r.body_bytes {
                Some(n) => b"0123456789".iter().copied().cycle().take(n).collect(),
                None => r.body.as_bytes().to_vec(),
            };
            let what = format!("{name}: {} {} {proto:?} {:?}", r.method, r.path, r.headers);
            let send = |port: u16| {
                let c = Call {
                    method: &r.method,
                    port,
                    path: &r.path,
                    host: &r.host,
                    headers: &headers,
                    body: &body,
                    h2: proto == Proto::Http2,
                };
                let what = &what;
                async move {
                    call(&c)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: {port}: {e}"))
                }
            };
            let from_envoy = send(pair.envoy_port).await;
            let from_weft = send(pair.weft_port).await;
            let oe = observe(&from_envoy, &format!("127.0.0.1:{}", pair.envoy_port));
            let ow = observe(&from_weft, &format!("127.0.0.1:{}", pair.weft_port));
            if std::env::var_os("WEFT_PARITY_SHOW").is_some() {
                eprintln!(
                    "{what}\nenvoy: {}",
                    serde_json::to_string_pretty(&oe).unwrap()
                );
            }
            if ow != oe {
                let mut diffs = Vec::new();
                differences(&ow, &oe, "", &mut diffs);
                panic!("{what}: weft differs from Envoy:\n{}", diffs.join("\n"));
            }
            let got = match from_envoy.headers.get("x-backend") {
                Some(b) => format!("backend {b}"),
                None => from_envoy.status.to_string(),
            };
            assert_eq!(got, r.expect, "{what} (the scenario's own expectation)");
            if let Some(want) = &r.expect_path {
                let seen = from_envoy.seen().map(|s| s["path"].clone());
                assert_eq!(
                    seen,
                    Some(json!(want)),
                    "{what}: the path the backend saw (the scenario's own expectation)"
                );
            }
            for (k, v) in &r.expect_headers {
                assert_eq!(
                    from_envoy.headers.get(k),
                    Some(v),
                    "{what}: response header {k} (the scenario's own expectation)"
                );
            }
        }
    }
    pair.stop();
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every scenario file, two at a time; all failures are reported
/// together, by scenario name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_match_envoy() {
    let only = std::env::var("WEFT_PARITY").ok();
    let files: Vec<PathBuf> = scenario_files()
        .into_iter()
        .filter(|p| {
            let name = p.file_stem().unwrap_or_default().to_string_lossy();
            only.as_deref().is_none_or(|o| {
                o.split(',').any(|o| match o.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == o,
                })
            })
        })
        .collect();
    assert!(
        !files.is_empty(),
        "no scenario files (WEFT_PARITY={only:?})"
    );
    let be = std::sync::Arc::new(Backends {
        a: echo_backend("a").await.port(),
        b: echo_backend("b").await.port(),
        dead: free_port(),
    });
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
    let mut set = tokio::task::JoinSet::new();
    for f in files.clone() {
        let (be, limit) = (be.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let name = f.file_stem().unwrap().to_string_lossy().into_owned();
            let result = tokio::spawn(async move { run_file(&f, &be).await }).await;
            (name, result)
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = set.join_next().await {
        let (name, result) = done.unwrap();
        if let Err(e) = result {
            let msg = match e.try_into_panic() {
                Ok(p) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            failed.push(format!("--- {name}\n{msg}"));
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        failed.is_empty(),
        "{} of {} scenarios differ:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

/// Each scenario's route table and clusters as a control plane would
/// send them over xDS: read straight from the message and from its JSON
/// form, weft must get the same model (see `weft_xds::compare_decoders`).
#[test]
fn scenario_routes_read_the_same_over_xds() {
    let mut failures = Vec::new();
    for path in scenario_files() {
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("${a}", "1001")
            .replace("${b}", "1002")
            .replace("${dead}", "1003");
        let sc: Scenario = serde_json::from_value(yaml(&text)).unwrap();
        let mut table = sc.route_config.clone();
        table["name"] = json!("scenario");
        let mut names = vec!["a", "b", "b_h2", "dead", "empty"];
        names.extend(sc.clusters.iter().filter_map(|c| c["name"].as_str()));
        let clusters: std::collections::HashSet<&str> = names.into_iter().collect();
        let resources = std::iter::once((weft_xds::Kind::RouteConfiguration, table)).chain(
            sc.clusters
                .iter()
                .map(|c| (weft_xds::Kind::Cluster, c.clone())),
        );
        for (kind, json) in resources {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let any = weft_xds::encode(kind, &json).unwrap_or_else(|e| panic!("{name}: {e}"));
            match weft_xds::compare_decoders(&any.type_url, &any.value, &clusters) {
                Ok(got) if got.starts_with("error at ") => {
                    failures.push(format!("{name}: {kind:?} refused: {got}"))
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
