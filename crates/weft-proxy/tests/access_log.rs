//! Envoy parity for access log formats: one bootstrap whose connection
//! manager logs every request twice, in Istio's default TEXT format and
//! with Istio's default JSON fields, run by Envoy and by weft; the lines
//! are compared field by field, masking only what differs between two
//! runs (times, durations, generated request ids, ports).

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::pair::{http_bootstrap, send_each, static_cluster, yaml, Pair};
use support::*;

const FILE_LOG: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";

/// Istio's default TEXT format (meshConfig.accessLogEncoding TEXT).
const ISTIO_TEXT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON fields, key to operator, in the text format's
/// order (which is also how a text line is read back into fields).
const ISTIO_JSON: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("route_name", "%ROUTE_NAME%"),
];

type Fields = BTreeMap<String, Value>;

/// A line in Istio's TEXT format, read back into the JSON keys (every
/// value a string; `-` stays `-`).
fn text_fields(line: &str) -> Fields {
    let re = regex::Regex::new(
        r#"^\[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\S+) (\S+) "([^"]*)" (\d+) (\d+) (\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" (\S+) (\S+) (\S+) (\S+) (\S+) (\S+)$"#,
    )
    .unwrap();
    let c = re
        .captures(line)
        .unwrap_or_else(|| panic!("not Istio's access log format: {line}"));
    ISTIO_JSON
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.to_string(), Value::String(c[i + 1].to_string())))
        .collect()
}

fn json_fields(line: &str) -> Fields {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {line}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Masks what differs between two runs, checking its shape first.
/// `port` is the proxy's own listener port.
fn mask(mut f: Fields, port: u16) -> Fields {
    let empty = |v: &Value| v.is_null() || v.as_str() == Some("-");
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let time = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    let start = text(&f["start_time"]);
    assert!(time.is_match(&start), "start_time {start}");
    f.insert("start_time".into(), "T".into());
    let duration = text(&f["duration"]);
    assert!(duration.parse::<u64>().is_ok(), "duration {duration}");
    f.insert("duration".into(), "D".into());
    if !empty(&f["upstream_service_time"]) {
        let t = text(&f["upstream_service_time"]);
        assert!(t.parse::<u64>().is_ok(), "upstream_service_time {t}");
        f.insert("upstream_service_time".into(), "N".into());
    }
    let id = text(&f["request_id"]);
    if id.len() == 36 && id.matches('-').count() == 4 {
        f.insert("request_id".into(), "GENERATED".into());
    }
    assert_eq!(
        text(&f["downstream_local_address"]),
        format!("127.0.0.1:{port}")
    );
    f.insert("downstream_local_address".into(), "127.0.0.1:LISTEN".into());
    for k in ["upstream_local_address", "downstream_remote_address"] {
        let a = text(&f[k]);
        if !empty(&f[k]) && !a.ends_with(":0") {
            assert!(a.starts_with("127.0.0.1:"), "{k} {a}");
            f.insert(k.into(), "127.0.0.1:PORT".into());
        }
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_text_and_json_formats_match_envoy() {
    let a = echo_backend("a").await;
    let dead = free_port();
    let closer = closing_backend().await;
    let routes = yaml(
        r#"
virtual_hosts:
- name: all
  domains: ["*"]
  routes:
  - {name: direct-route, match: {prefix: /direct}, direct_response: {status: 200, body: {inline_string: hello}}}
  - {name: empty-route, match: {prefix: /empty}, route: {cluster: empty}}
  - {name: dead-route, match: {prefix: /dead}, route: {cluster: dead}}
  - {name: closer-route, match: {prefix: /closer}, route: {cluster: closer}}
  - {name: over-route, match: {prefix: /over}, route: {cluster: over}}
  - {name: ok-route, match: {prefix: /ok}, route: {cluster: a}}
"#,
    );
    let dir = TempDir::new("access-log-formats");
    let text_log = |admin: u16| dir.0.join(format!("{admin}-text.log"));
    let json_log = |admin: u16| dir.0.join(format!("{admin}-json.log"));
    let json_format: serde_json::Map<String, Value> = ISTIO_JSON
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let pair = Pair::start(|listen, admin| {
        let hcm = json!({"access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": FILE_LOG,
                    "path": text_log(admin).display().to_string(),
                    "log_format": {"text_format_source": {"inline_string": ISTIO_TEXT}},
                }
            },
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": FILE_LOG,
                    "path": json_log(admin).display().to_string(),
                    "log_format": {
                        "json_format": json_format,
                        "json_format_options": {"sort_properties": false},
                    },
                }
            }
        ]});
        let clusters = [
            static_cluster("a", a.port(), false),
            json!({"name": "empty", "type": "STATIC", "connect_timeout": "1s"}),
            static_cluster("dead", dead, false),
            static_cluster("closer", closer, false),
            {
                let mut c = static_cluster("over", closer, false);
                c["circuit_breakers"] = json!({"thresholds": [{"max_requests": 0, "max_pending_requests": 0, "max_connections": 0}]});
                c
            },
        ];
        http_bootstrap(listen, admin, &hcm, &routes, &clusters)
    })
    .await;
    let requests: &[(&str, &[(&str, &str)])] = &[
        ("/ok", &[]),
        ("/nothing-here", &[]),
        ("/empty", &[]),
        (
            "/ok/x?y=1&z=2",
            &[
                ("x-forwarded-for", "10.0.0.9"),
                ("user-agent", "parity/1"),
                ("x-request-id", "abc-123"),
            ],
        ),
        ("/direct", &[]),
        ("/dead", &[]),
        ("/closer", &[]),
        ("/over", &[]),
    ];
    send_each([pair.envoy_port, pair.weft_port], "log.test", requests).await;
    let (envoy_port, weft_port) = (pair.envoy_port, pair.weft_port);
    let (envoy_admin, weft_admin) = (pair.envoy_admin, pair.weft_admin);
    let (e_text, w_text) = pair.stop_and_read_logs(text_log, requests.len()).await;
    // The JSON lines were handed over with the text ones.
    let read = |p: std::path::PathBuf| {
        let start = std::time::Instant::now();
        loop {
            let t = std::fs::read_to_string(&p).unwrap_or_default();
            if t.lines().count() >= requests.len() || start.elapsed() > weft_testkit::wait::PATIENCE
            {
                return t;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let (e_json, w_json) = (read(json_log(envoy_admin)), read(json_log(weft_admin)));

    let e_t: Vec<Fields> = e_text.lines().map(text_fields).collect();
    let w_t: Vec<Fields> = w_text.lines().map(text_fields).collect();
    let e_j: Vec<Fields> = e_json.lines().map(json_fields).collect();
    let w_j: Vec<Fields> = w_json.lines().map(json_fields).collect();
    for (what, lines) in [("text", [&e_t, &w_t]), ("json", [&e_j, &w_j])] {
        assert_eq!(lines[0].len(), requests.len(), "Envoy's {what} lines");
        assert_eq!(lines[1].len(), requests.len(), "weft's {what} lines");
    }
    for i in 0..requests.len() {
        for (what, e, w) in [("text", &e_t[i], &w_t[i]), ("json", &e_j[i], &w_j[i])] {
            let (e, w) = (mask(e.clone(), envoy_port), mask(w.clone(), weft_port));
            for (k, ev) in &e {
                assert_eq!(
                    w.get(k),
                    Some(ev),
                    "{what} line {i} ({}), field {k}: weft {:?}, Envoy {ev}",
                    requests[i].0,
                    w.get(k)
                );
            }
            assert_eq!(w.len(), e.len(), "{what} line {i}: the same keys");
        }
    }

    // What the lines say, concretely (weft's; Envoy's are equal).
    let t = |i: usize, k: &str| w_t[i][k].as_str().unwrap().to_string();
    let j = |i: usize, k: &str| w_j[i][k].clone();
    let upstream = format!("127.0.0.1:{}", a.port());
    // 200 from upstream.
    assert_eq!(t(0, "response_code"), "200");
    assert_eq!(t(0, "response_flags"), "-");
    assert_eq!(t(0, "response_code_details"), "via_upstream");
    assert_eq!(t(0, "upstream_host"), upstream);
    assert_eq!(t(0, "upstream_cluster"), "a");
    assert_eq!(t(0, "route_name"), "ok-route");
    assert_eq!(t(0, "authority"), "log.test");
    assert!(t(0, "upstream_local_address").starts_with("127.0.0.1:"));
    assert_eq!(j(0, "response_code"), json!(200));
    assert!(j(0, "bytes_sent").is_u64() && j(0, "duration").is_u64());
    assert!(j(0, "upstream_service_time").is_string());
    assert_eq!(j(0, "response_flags"), json!("-"));
    assert_eq!(j(0, "x_forwarded_for"), Value::Null);
    assert_eq!(j(0, "connection_termination_details"), Value::Null);
    assert_eq!(j(0, "requested_server_name"), Value::Null);
    // No route.
    assert_eq!(t(1, "response_code"), "404");
    assert_eq!(t(1, "response_flags"), "NR");
    assert_eq!(t(1, "response_code_details"), "route_not_found");
    assert_eq!(t(1, "route_name"), "-");
    assert_eq!(t(1, "upstream_cluster"), "-");
    assert_eq!(j(1, "route_name"), Value::Null);
    assert_eq!(j(1, "upstream_host"), Value::Null);
    // No healthy host.
    assert_eq!(t(2, "response_code"), "503");
    assert_eq!(t(2, "response_flags"), "UH");
    assert_eq!(t(2, "response_code_details"), "no_healthy_upstream");
    assert_eq!(t(2, "upstream_cluster"), "empty");
    assert_eq!(t(2, "upstream_host"), "-");
    assert_eq!(t(2, "route_name"), "empty-route");
    // Query and client headers; the remote address from X-Forwarded-For.
    assert_eq!(t(3, "path"), "/ok/x?y=1&z=2");
    assert_eq!(t(3, "x_forwarded_for"), "10.0.0.9");
    assert_eq!(t(3, "user_agent"), "parity/1");
    assert_eq!(t(3, "request_id"), "abc-123");
    assert_eq!(t(3, "downstream_remote_address"), "10.0.0.9:0");
    assert_eq!(j(3, "user_agent"), json!("parity/1"));
    // A direct response.
    assert_eq!(t(4, "response_code_details"), "direct_response");
    assert_eq!(t(4, "route_name"), "direct-route");
    assert_eq!(j(4, "bytes_sent"), json!(5));
    // A refused connection.
    assert_eq!(t(5, "response_flags"), "UF");
    assert_eq!(
        t(5, "response_code_details"),
        "upstream_reset_before_response_started{remote_connection_failure|delayed_connect_error:_Connection_refused}"
    );
    assert_eq!(
        t(5, "upstream_transport_failure_reason"),
        "delayed_connect_error:_Connection_refused"
    );
    assert_eq!(t(5, "upstream_host"), format!("127.0.0.1:{dead}"));
    assert_eq!(j(5, "upstream_local_address"), Value::Null);
    // An upstream that closes without answering; an overflow.
    assert_eq!(t(6, "response_flags"), "UC");
    assert_eq!(
        t(6, "response_code_details"),
        "upstream_reset_before_response_started{connection_termination}"
    );
    assert_eq!(t(7, "response_flags"), "UO");
    assert_eq!(
        t(7, "response_code_details"),
        "upstream_reset_before_response_started{overflow}"
    );
}

/// A backend that reads a little of each connection, then closes it.
async fn closing_backend() -> u16 {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 100];
            let _ = s.read(&mut buf).await;
        }
    });
    port
}

/// Operators beyond Istio's defaults (`%REQ_WITHOUT_QUERY%` with its
/// formatter, lengths, alternatives, a START_TIME format), a nested JSON
/// struct with typed and untyped values, `omit_empty_values`, and `%%`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_operators_match_envoy() {
    let a = echo_backend("a").await;
    let routes = yaml(
        r#"virtual_hosts: [{name: all, domains: ["*"], routes: [{name: r, match: {prefix: /}, route: {cluster: a}}]}]"#,
    );
    let dir = TempDir::new("access-log-more");
    let text_log = |admin: u16| dir.0.join(format!("{admin}-text.log"));
    let json_log = |admin: u16| dir.0.join(format!("{admin}-json.log"));
    let pair = Pair::start(|listen, admin| {
        let hcm = json!({"access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": FILE_LOG,
                    "path": text_log(admin).display().to_string(),
                    "log_format": {
                        "formatters": [{
                            "name": "envoy.formatter.req_without_query",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"}
                        }],
                        "text_format_source": {"inline_string": "%REQ_WITHOUT_QUERY(:PATH)% %REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH):4% %REQ(USER-AGENT):3% 100%% %START_TIME(%Y/%m/%d)% [%TRAILER(grpc-status)%] %UPSTREAM_CLUSTER% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %RESP(CONTENT-TYPE?X-NONE)% %REQ(X-MISSING)%|\n"},
                        "omit_empty_values": true,
                    },
                }
            },
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": FILE_LOG,
                    "path": json_log(admin).display().to_string(),
                    "log_format": {
                        "json_format": {
                            "code": "%RESPONSE_CODE%",
                            "nested": {"both": "%RESPONSE_CODE%/%BYTES_RECEIVED%", "lit": "plain", "missing": "%REQ(X-MISSING)%"},
                            "missing": "%REQ(X-MISSING)%",
                            "method": "%REQ(:METHOD)%",
                            "num": 1,
                            "b": true,
                        },
                        "omit_empty_values": true,
                    },
                }
            }
        ]});
        http_bootstrap(listen, admin, &hcm, &routes, &[static_cluster("a", a.port(), false)])
    })
    .await;
    let requests: &[(&str, &[(&str, &str)])] = &[("/a/b?x=1", &[("user-agent", "parity/2")])];
    send_each([pair.envoy_port, pair.weft_port], "log.test", requests).await;
    let (envoy_admin, weft_admin) = (pair.envoy_admin, pair.weft_admin);
    let (e_text, w_text) = pair.stop_and_read_logs(text_log, 1).await;
    let date = regex::Regex::new(r"\d{4}/\d\d/\d\d").unwrap();
    let e_text = date.replace_all(&e_text, "DATE").to_string();
    let w_text = date.replace_all(&w_text, "DATE").to_string();
    assert_eq!(w_text, e_text);
    assert!(
        e_text.starts_with("/a/b /a/b par 100% DATE [] a 127.0.0.1 "),
        "{e_text}"
    );
    let e_json = std::fs::read_to_string(json_log(envoy_admin)).unwrap_or_default();
    let w_json = std::fs::read_to_string(json_log(weft_admin)).unwrap_or_default();
    assert_eq!(w_json, e_json);
    assert_eq!(
        e_json,
        "{\"b\":true,\"code\":200,\"method\":\"GET\",\"nested\":{\"both\":\"200/0\",\"lit\":\"plain\"},\"num\":1}\n"
    );
}

/// An operator weft does not implement is refused when the listener
/// compiles, naming the field and the operator.
#[tokio::test]
async fn unknown_operators_are_refused() {
    let routes = yaml(
        r#"virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]"#,
    );
    for (format, field, says) in [
        (
            json!({"text_format_source": {"inline_string": "%NOT_AN_OPERATOR%"}}),
            "log_format.text_format_source.inline_string",
            "%NOT_AN_OPERATOR%",
        ),
        (
            json!({"json_format": {"a": {"b": "%FILTER_STATE(x)%"}}}),
            "log_format.json_format.a.b",
            "%FILTER_STATE%",
        ),
        (
            json!({"text_format_source": {"inline_string": "%REQ_WITHOUT_QUERY(:PATH)%"}}),
            "log_format.text_format_source.inline_string",
            "needs the formatter envoy.formatter.req_without_query",
        ),
        (
            json!({"text_format_source": {"inline_string": "%START_TIME(%Q)%"}}),
            "log_format.text_format_source.inline_string",
            "%Q is not implemented",
        ),
        (
            json!({"text_format_source": {"inline_string": "50% off"}}),
            "log_format.text_format_source.inline_string",
            "position 2",
        ),
    ] {
        let hcm = json!({"access_log": [{
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": format,
            }
        }]});
        let text = http_bootstrap(free_port(), free_port(), &hcm, &routes, &[]);
        let boot = weft_envoy::parse_bootstrap("test", &text).expect("the model decodes it");
        let e = match weft_proxy::Snapshot::compile(&boot).await {
            Ok(_) => panic!("weft accepts {format}"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains(&format!("access_log[0].typed_config.{field}")) && e.contains(says),
            "{e}"
        );
    }
}

/// A TCP proxy's log in Istio's TEXT format: the HTTP operators print
/// `-`, the addresses, cluster and byte counts are the connection's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_log_in_istio_format_matches_envoy() {
    let a = tcp_echo_backend("a").await;
    let dir = TempDir::new("access-log-tcp");
    let log = |admin: u16| dir.0.join(format!("{admin}.log"));
    let pair = Pair::start(|listen, admin| {
        let listener = json!({
            "name": "tcp",
            "address": support::pair::socket(listen),
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": support::pair::TCP_PROXY,
                    "stat_prefix": "tcp",
                    "cluster": "a",
                    "access_log": [{
                        "name": "envoy.access_loggers.file",
                        "typed_config": {
                            "@type": FILE_LOG,
                            "path": log(admin).display().to_string(),
                            "log_format": {"text_format": ISTIO_TEXT},
                        }
                    }]
                }
            }]}]
        });
        support::pair::bootstrap(
            admin,
            vec![listener],
            &[static_cluster("a", a.port(), false)],
        )
    })
    .await;
    let (envoy_port, weft_port) = (pair.envoy_port, pair.weft_port);
    assert_eq!(tcp_exchange(envoy_port, b"hello").await, "a\nhello");
    assert_eq!(tcp_exchange(weft_port, b"hello").await, "a\nhello");
    let (e, w) = pair.stop_and_read_logs(log, 1).await;
    let (e, w) = (text_fields(e.trim_end()), text_fields(w.trim_end()));
    let (e, w) = (mask(e, envoy_port), mask(w, weft_port));
    assert_eq!(w, e);
    let s = |k: &str| w[k].as_str().unwrap().to_string();
    assert_eq!(s("method"), "-");
    assert_eq!(s("response_code"), "0");
    assert_eq!(s("bytes_received"), "5");
    assert_eq!(s("bytes_sent"), "7");
    assert_eq!(s("upstream_cluster"), "a");
    assert_eq!(s("upstream_host"), format!("127.0.0.1:{}", a.port()));
    assert_eq!(s("upstream_local_address"), "127.0.0.1:PORT");
}

/// With `use_remote_address`, the logged X-Forwarded-For is the one the
/// connection manager appended the peer to, and the remote address is
/// the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_remote_address_logs_the_appended_forwarded_for() {
    let routes = yaml(
        r#"virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]"#,
    );
    let dir = TempDir::new("access-log-xff");
    let log = |admin: u16| dir.0.join(format!("{admin}.log"));
    let pair = Pair::start(|listen, admin| {
        let hcm = json!({
            "use_remote_address": true,
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": FILE_LOG,
                    "path": log(admin).display().to_string(),
                    "log_format": {"text_format_source": {"inline_string": "%REQ(X-FORWARDED-FOR)% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\n"}},
                }
            }]
        });
        http_bootstrap(listen, admin, &hcm, &routes, &[])
    })
    .await;
    let requests: &[(&str, &[(&str, &str)])] =
        &[("/", &[]), ("/", &[("x-forwarded-for", "10.0.0.9")])];
    send_each([pair.envoy_port, pair.weft_port], "log.test", requests).await;
    let (e, w) = pair.stop_and_read_logs(log, requests.len()).await;
    assert_eq!(w, e);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1].starts_with("10.0.0.9,"), "{e}");
    assert!(lines[1].ends_with(" 127.0.0.1"), "{e}");
}
