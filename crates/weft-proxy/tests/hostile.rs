//! Malformed and hostile HTTP/1.1 from clients, sent as raw bytes to
//! Envoy and to weft on the same bootstrap: each must answer the same
//! way (the same status, or both closing the connection), never with a
//! proxied 2xx, and must keep serving everyone else — including while
//! slow clients hold connections open with half-sent headers.

mod support;

use std::time::Duration;

use support::pair::pair_to_echo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `bytes` and returns the response's status code, or "closed"
/// when the connection ends without one.
async fn raw(port: u16, bytes: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let _ = s.write_all(bytes).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(2).any(|w| w == b"\r\n") {
                    break;
                }
            }
            Err(_) => return "no answer in 5 s".into(),
        }
    }
    let line = String::from_utf8_lossy(&got);
    match line.split(' ').nth(1) {
        Some(code) if line.starts_with("HTTP/") => code.to_string(),
        _ => "closed".into(),
    }
}

const CASES: &[(&str, &str)] = &[
    (
        "content-length and transfer-encoding together",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "two different content-lengths",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    ),
    (
        "content-length not a number",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4x\r\n\r\nabcd",
    ),
    (
        "chunk size not hex",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    ),
    (
        "transfer-encoding other than chunked",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    ),
    (
        "space in a header name",
        "GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",
    ),
    (
        "obsolete line folding",
        "GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n  b\r\n\r\n",
    ),
    ("garbage request line", "HELLO THERE\r\n\r\n"),
    ("unknown HTTP version", "GET / HTTP/9.9\r\nHost: h\r\n\r\n"),
    ("HTTP/1.0 (not accepted by default)", "GET / HTTP/1.0\r\nHost: h\r\n\r\n"),
    ("NUL in a header value", "GET / HTTP/1.1\r\nHost: h\r\nX-Nul: a\0b\r\n\r\n"),
    ("bare LF line endings", "GET / HTTP/1.1\nHost: h\n\n"),
];

/// Where weft (through hyper's parser) rejects with another code than
/// Envoy, or rejects what Envoy's parser tolerates. Each still refuses
/// the request; listed so that any other difference fails.
const KNOWN_DIFFERENT: &[(&str, &str, &str)] = &[
    // hyper answers 400 before weft sees the request.
    ("transfer-encoding other than chunked", "400", "501"),
    ("unknown HTTP version", "400", "426"),
    // RFC 9112 §5.2 lets a server reject obs-fold with 400; Envoy
    // unfolds it.
    ("obsolete line folding", "400", "200"),
    // RFC 9112 §6.3 allows either rejecting this or framing by
    // Transfer-Encoding alone. hyper does the latter and drops the
    // Content-Length, so the upstream gets one consistently framed
    // message and nothing can be smuggled; Envoy rejects it.
    (
        "content-length and transfer-encoding together",
        "200",
        "400",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_answered_as_envoy_answers() {
    let pair = pair_to_echo().await;
    let mut differ = Vec::new();
    for (what, bytes) in CASES {
        let e = raw(pair.envoy_port, bytes.as_bytes()).await;
        let w = raw(pair.weft_port, bytes.as_bytes()).await;
        if KNOWN_DIFFERENT.contains(&(what, w.as_str(), e.as_str())) {
            continue;
        }
        if e != w {
            differ.push(format!("{what}: weft {w}, Envoy {e}"));
        }
    }
    // Everyone else is still served.
    for port in [pair.envoy_port, pair.weft_port] {
        let r = get(&format!("http://127.0.0.1:{port}/"), &[("host", "h")])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    pair.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_hold_up_others() {
    let pair = pair_to_echo().await;
    let port = pair.weft_port;
    // 200 connections each sending half a request and then nothing.
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(format!("GET /slow/{i} HTTP/1.1\r\nHost: h\r\nX-Part").as_bytes())
            .await
            .unwrap();
        slow.push(s);
    }
    // A body that trickles in one byte at a time.
    let mut trickle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    trickle
        .write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\nx")
        .await
        .unwrap();
    // Nobody waits on the slow connections: they stay open until the
    // end, so a request queued behind them would never be answered (the
    // client gives up after 10 s).
    for _ in 0..20 {
        let r = get(&format!("http://127.0.0.1:{port}/"), &[("host", "h")])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    drop(slow);
    drop(trickle);
    pair.stop();
}
