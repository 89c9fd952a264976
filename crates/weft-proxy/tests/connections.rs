//! Envoy parity for downstream connection lifetimes: the HTTP connection
//! manager's `idle_timeout` (close a connection with no request open) and
//! `max_connection_duration` (drain a connection however busy), over
//! HTTP/1.1 and HTTP/2. Only outcomes are compared, never durations.

mod support;

use std::time::Duration;

use support::pair::{http_bootstrap, static_cluster, yaml, Pair};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn pair(hcm: &str) -> Pair {
    let a = echo_backend("a").await.port();
    let routes = yaml(
        "virtual_hosts: [{name: all, domains: [\"*\"], routes: [{match: {prefix: /}, route: {cluster: a}}]}]",
    );
    let hcm = yaml(hcm);
    Pair::start(|listen, admin| {
        http_bootstrap(
            listen,
            admin,
            &hcm,
            &routes,
            &[static_cluster("a", a, false)],
        )
    })
    .await
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body);
/// returns its head, or None when the connection closed first.
async fn read_response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(head)
}

/// Whether the server closes the connection within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

async fn stat(admin: u16, name: &str) -> String {
    let text = get(&format!("http://127.0.0.1:{admin}/stats"), &[])
        .await
        .unwrap()
        .body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or("absent")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_connections_close_after_idle_timeout() {
    let p = pair("{common_http_protocol_options: {idle_timeout: 0.5s}}").await;
    let mut outcomes = Vec::new();
    for port in [p.envoy_port, p.weft_port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(GET).await.unwrap();
        let first = read_response(&mut s).await.is_some();
        // Kept alive between requests shorter than the timeout.
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.write_all(GET).await.unwrap();
        let second = read_response(&mut s).await.is_some();
        // Envoy drains an idle HTTP/1 connection for drain_timeout (5 s
        // by default) before closing it.
        let closed = closed_within(&mut s, Duration::from_secs(8)).await;
        outcomes.push((first, second, closed));
    }
    assert_eq!(outcomes[0], outcomes[1], "envoy, weft");
    assert_eq!(outcomes[1], (true, true, true));
    let (e, w) = (
        stat(p.envoy_admin, "http.main.downstream_cx_idle_timeout").await,
        stat(p.weft_admin, "http.main.downstream_cx_idle_timeout").await,
    );
    assert_eq!((e.as_str(), w.as_str()), ("1", "1"));
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_request_is_not_idle() {
    // A request the backend answers after 1.2 s outlives a 0.5 s idle
    // timeout: idleness counts only with no request open.
    let p = pair("{common_http_protocol_options: {idle_timeout: 0.5s}}").await;
    let mut outcomes = Vec::new();
    for port in [p.envoy_port, p.weft_port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-test-delay-ms: 1200\r\n\r\n")
            .await
            .unwrap();
        let head = read_response(&mut s).await;
        outcomes.push(head.map(|h| h.lines().next().unwrap_or_default().to_string()));
    }
    assert_eq!(outcomes[0], outcomes[1], "envoy, weft");
    assert_eq!(outcomes[1].as_deref(), Some("http/1.1 200 ok"));
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_close_after_idle_timeout() {
    use http_body_util::Empty;
    let p = pair("{common_http_protocol_options: {idle_timeout: 0.5s}}").await;
    let mut outcomes = Vec::new();
    for port in [p.envoy_port, p.weft_port] {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(s),
        )
        .await
        .unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::get("http://x/")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let status = send.send_request(req).await.unwrap().status().as_u16();
        // The server ends the connection (GOAWAY, then close).
        let ended = tokio::time::timeout(Duration::from_secs(4), conn)
            .await
            .is_ok();
        outcomes.push((status, ended));
    }
    assert_eq!(outcomes[0], outcomes[1], "envoy, weft");
    assert_eq!(outcomes[1], (200, true));
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connections_drain_at_max_connection_duration() {
    let p = pair("{common_http_protocol_options: {max_connection_duration: 0.6s}}").await;
    let mut outcomes = Vec::new();
    for port in [p.envoy_port, p.weft_port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // A request every 100 ms keeps the connection busy; once its
        // duration is up a response says `connection: close` (the client
        // then sends no more) and the proxy closes.
        let mut told_to_close = false;
        let mut served = 0;
        for _ in 0..40 {
            s.write_all(GET).await.unwrap();
            let head = read_response(&mut s).await.expect("a response");
            served += 1;
            if head.contains("connection: close") {
                told_to_close = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Measured: Envoy closes about 6 s later (drain_timeout, then its
        // 1 s delayed close); weft closes right after the response that
        // said so (RFC 9112 §9.6 allows either). Only "closed" is compared.
        let closed = closed_within(&mut s, Duration::from_secs(9)).await;
        outcomes.push((told_to_close, served > 1, closed));
    }
    assert_eq!(outcomes[0], outcomes[1], "envoy, weft");
    assert_eq!(outcomes[1], (true, true, true));
    let (e, w) = (
        stat(
            p.envoy_admin,
            "http.main.downstream_cx_max_duration_reached",
        )
        .await,
        stat(p.weft_admin, "http.main.downstream_cx_max_duration_reached").await,
    );
    assert_eq!((e.as_str(), w.as_str()), ("1", "1"));
    p.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_idle_timeout() {
    use serde_json::json;
    use support::pair::{bootstrap, socket, TCP_PROXY};
    let a = tcp_echo_backend("a").await.port();
    let p = Pair::start(|listen, admin| {
        let listener = json!({
            "name": "tcp",
            "address": socket(listen),
            "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
                "@type": TCP_PROXY, "stat_prefix": "tcp", "cluster": "a", "idle_timeout": "0.5s"
            }}]}]
        });
        bootstrap(admin, vec![listener], &[static_cluster("a", a, false)])
    })
    .await;
    let mut outcomes = Vec::new();
    for port in [p.envoy_port, p.weft_port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        // Bytes every 200 ms for 1.2 s keep the connection (longer than
        // the timeout in all); then silence closes it.
        let mut echoed = Vec::new();
        let mut b = [0u8; 256];
        for _ in 0..6 {
            s.write_all(b"ping").await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
            match tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await {
                Ok(Ok(n)) if n > 0 => echoed.extend_from_slice(&b[..n]),
                _ => break,
            }
        }
        let closed = closed_within(&mut s, Duration::from_secs(4)).await;
        outcomes.push((String::from_utf8_lossy(&echoed).into_owned(), closed));
    }
    assert_eq!(outcomes[0], outcomes[1], "envoy, weft");
    assert_eq!(outcomes[1], (format!("a\n{}", "ping".repeat(6)), true));
    p.stop();
}
