//! Envoy parity for request targets the table-driven scenarios
//! (`tests/parity/path-*.yaml`) cannot send, because the test client's
//! URI type refuses them: sent as raw HTTP/1.1 bytes to Envoy and to
//! weft, both normalizing paths as Istio's DECODE_AND_MERGE_SLASHES does
//! (`normalize_path`, `merge_slashes`, UNESCAPE_AND_FORWARD). The status
//! and the path the backend saw must be equal, except where listed in
//! [`KNOWN_DIFFERENT`] with the reason.

mod support;

use std::time::Duration;

use serde_json::json;
use support::pair::{http_bootstrap, static_cluster, yaml, Pair};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one request line (and a Host) and returns the status code and,
/// when the backend answered, the path it saw; "closed" when the
/// connection ends without a response.
async fn raw(port: u16, method: &str, target: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("{method} ").into_bytes();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(&req).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    if read.is_err() {
        return "no answer in 5 s".into();
    }
    let text = String::from_utf8_lossy(&got);
    let Some(code) = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.split(' ').next())
    else {
        return "closed".into();
    };
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // The echo backend's body; chunked framing around it is skipped.
    let seen = body
        .find('{')
        .and_then(|i| serde_json::from_str::<serde_json::Value>(body[i..].lines().next()?).ok())
        .and_then(|v| v["path"].as_str().map(str::to_string));
    match seen {
        Some(path) => format!("{code} {path}"),
        None => code.to_string(),
    }
}

/// (what, method, request target)
const CASES: &[(&str, &str, &[u8])] = &[
    (
        "angle brackets (escaped by normalization)",
        "GET",
        b"/a<b>/../c",
    ),
    ("a backtick (escaped by normalization)", "GET", b"/a`b"),
    ("a fragment", "GET", b"/a#x/../admin"),
    ("a space", "GET", b"/a b"),
    ("raw UTF-8", "GET", "/a\u{e9}".as_bytes()),
    ("a DEL byte", "GET", b"/a\x7fb"),
    ("a tab", "GET", b"/a\tb"),
    ("OPTIONS *", "OPTIONS", b"*"),
    ("absolute form", "GET", b"http://raw.test/a/../b//c%2Fd"),
    ("a path not starting with a slash", "GET", b"a/../b"),
    (
        "CONNECT (no path to normalize, no route)",
        "CONNECT",
        b"raw.test:443",
    ),
    (
        "backslashes and escaped ones",
        "GET",
        b"/a\\..%5C..\\b%2f%2F/c",
    ),
    ("dots in the query", "GET", b"/a/./b?x=/../y//z%2F"),
];

/// Where weft differs, and why; listed as (what, weft, Envoy) so that
/// any other difference fails.
const KNOWN_DIFFERENT: &[(&str, &str, &str)] = &[
    // The URI parser under hyper refuses `<`, `>` and `` ` `` in a
    // request target (400 before weft sees the request); Envoy's codec
    // takes them and its normalization percent-encodes them. weft
    // refuses what Envoy would forward, never the other way round.
    ("angle brackets (escaped by normalization)", "400", "200 /c"),
    ("a backtick (escaped by normalization)", "400", "200 /a%60b"),
    // Envoy refuses a fragment in the path; the URI parser under hyper
    // cuts it off before weft sees the request, so weft routes, checks
    // and forwards the path without it (one path throughout: nothing
    // for a policy to be confused by).
    ("a fragment", "200 /a", "400"),
    // Envoy's HTTP/1 codec refuses bytes above 0x7F in the target;
    // hyper takes UTF-8, which weft's normalization then percent-encodes
    // (as Envoy's normalizer does), so policies and the backend see the
    // same escaped path.
    ("raw UTF-8", "200 /a%C3%A9", "400"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_request_targets_normalized_as_envoy_does() {
    let echo = echo_backend("a").await.port();
    let routes = yaml(
        "virtual_hosts: [{name: all, domains: [\"*\"], routes: [{match: {prefix: /}, route: {cluster: a}}]}]",
    );
    let hcm = json!({
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_FORWARD",
    });
    let pair = Pair::start(|listen, admin| {
        http_bootstrap(
            listen,
            admin,
            &hcm,
            &routes,
            &[static_cluster("a", echo, false)],
        )
    })
    .await;
    let mut differ = Vec::new();
    for (what, method, target) in CASES {
        let e = raw(pair.envoy_port, method, target).await;
        let w = raw(pair.weft_port, method, target).await;
        if std::env::var_os("WEFT_PARITY_SHOW").is_some() {
            eprintln!("{what}: weft {w:?}, Envoy {e:?}");
        }
        if e != w && !KNOWN_DIFFERENT.contains(&(what, w.as_str(), e.as_str())) {
            differ.push(format!("{what}: weft {w:?}, Envoy {e:?}"));
        }
    }
    pair.stop();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// What weft does not implement is refused by name, never ignored:
/// `path_normalization_options` (which Envoy does not implement either),
/// and an escaped-slashes action that is not one of Envoy's.
#[tokio::test]
async fn unimplemented_path_settings_are_refused_by_name() {
    let routes = yaml("virtual_hosts: []");
    let cases = [
        (
            json!({"path_normalization_options": {"forwarding_transformation": {}}}),
            "path_normalization_options",
        ),
        (
            json!({"path_with_escaped_slashes_action": "UNESCAPE_SOMETIMES"}),
            "path_with_escaped_slashes_action",
        ),
    ];
    for (hcm, field) in cases {
        let text = http_bootstrap(free_port(), free_port(), &hcm, &routes, &[]);
        let error = match weft_envoy::parse_bootstrap("test", &text) {
            Err(e) => e.to_string(),
            Ok(boot) => match weft_proxy::Snapshot::compile(&boot).await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{hcm} accepted"),
            },
        };
        assert!(error.contains(field), "{hcm}: {error}");
    }
}
