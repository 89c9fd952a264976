//! Stream timers side by side with Envoy where a request table cannot
//! reach: a response that stalls after its headers (the stream is reset
//! and logged `SI`), a response that trickles (each byte keeps it alive),
//! a request body that stops half way (408 `stream timeout`) and one that
//! trickles past the request timeout (408 `request timeout`). Raw HTTP/1.1
//! on both sides so what the client sees — status line, body, whether the
//! connection closed early — is compared byte for byte, and the access
//! log lines must agree.

mod support;

use std::time::Duration;

use serde_json::json;
use support::pair::{http_bootstrap, static_cluster, yaml, Pair};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that reads the request (its whole body, by content-length)
/// and then misbehaves as the path says.
async fn slow_backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut have = buf.len() - head_end;
                while have < length {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have += n;
                }
                if path.starts_with("/headers-then-stall") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc")
                        .await;
                    tokio::time::sleep(Duration::from_secs(10)).await;
                } else if path.starts_with("/trickle") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
                        .await;
                    for _ in 0..6 {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        let _ = s.write_all(b"x").await;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
    });
    port
}

/// Sends `head` then each of `body_parts` after `gap`, and reads what
/// comes back until the response is complete or the connection closes.
/// Returns what a client can tell: the status line, the body, the
/// `connection` header, and whether the connection ended before the body
/// its content-length announced.
async fn exchange(port: u16, head: &str, body_parts: &[&str], gap: Duration) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    // The body parts go out while the reader waits; a part the proxy no
    // longer wants (it already answered) is simply lost.
    let (mut r, mut w) = s.split();
    let writer = async {
        for p in body_parts {
            tokio::time::sleep(gap).await;
            if w.write_all(p.as_bytes()).await.is_err() {
                break;
            }
        }
    };
    let reader = async {
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), r.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
                Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
                Err(_) => return (got, false),
            }
            if complete(&got) == Some(true) {
                return (got, false);
            }
        }
    };
    let ((got, closed), ()) = tokio::join!(reader, writer);
    describe(&got, closed)
}

/// Whether `got` holds a whole response (None: not even its head).
fn complete(got: &[u8]) -> Option<bool> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Some(got.len() - end >= length)
}

fn describe(got: &[u8], closed: bool) -> String {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return format!("no response (closed: {closed})");
    };
    let status = head.lines().next().unwrap_or("");
    let connection = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("connection:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or("-".into());
    let truncated = complete(got) == Some(false);
    format!("{status} | body {body:?} | connection {connection} | cut short {truncated}")
}

/// The parts of an access log line that must agree: request, status,
/// flags, bytes received and sent.
fn log_core(line: &str) -> String {
    let re = regex::Regex::new(r#"^\[[^\]]+\] ("[^"]*" \d+ \S+ \d+ \d+)"#).unwrap();
    re.captures(line)
        .map(|c| c[1].to_string())
        .unwrap_or_else(|| panic!("not Envoy's default access log format: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_and_trickles_end_streams_like_envoy() {
    let backend = slow_backend().await;
    let routes = yaml(
        r#"virtual_hosts: [{name: all, domains: ["*"], routes: [
            {match: {prefix: /direct}, direct_response: {status: 403}},
            {match: {prefix: /}, route: {cluster: slow}}]}]"#,
    );
    let dir = TempDir::new("stream-timers");
    let log = |admin: u16| dir.0.join(format!("{admin}.log"));
    let pair = Pair::start(|listen, admin| {
        let hcm = json!({
            "stream_idle_timeout": "0.6s",
            "request_timeout": "1.5s",
            "access_log": [{
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": log(admin).display().to_string(),
                }
            }]
        });
        http_bootstrap(listen, admin, &hcm, &routes, &[static_cluster("slow", backend, false)])
    })
    .await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: t.test\r\n\r\n");
    let post =
        |n: usize| format!("POST /answer HTTP/1.1\r\nhost: t.test\r\ncontent-length: {n}\r\n\r\n");
    let gap = Duration::from_millis(200);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("headers then stall", get("/headers-then-stall"), vec![]),
        ("trickling response", get("/trickle"), vec![]),
        ("body stops half way", post(10), vec!["abcde"]),
        (
            "body trickles past the request timeout",
            post(12),
            vec!["x"; 12],
        ),
        ("whole body in time", post(4), vec!["ab", "cd"]),
        (
            "local reply to a request whose body came with it",
            "POST /direct HTTP/1.1\r\nhost: t.test\r\ncontent-length: 4\r\n\r\nabcd".into(),
            vec![],
        ),
        (
            "local reply before the body",
            "POST /direct HTTP/1.1\r\nhost: t.test\r\ncontent-length: 4\r\n\r\n".into(),
            vec!["abcd"],
        ),
    ];
    let mut seen = Vec::new();
    for (what, head, parts) in &cases {
        let e = exchange(pair.envoy_port, head, parts, gap).await;
        let w = exchange(pair.weft_port, head, parts, gap).await;
        assert_eq!(w, e, "{what}: weft differs from Envoy");
        seen.push(e);
    }
    assert!(seen[0].contains("cut short true"), "{}", seen[0]);
    assert!(seen[1].contains("\"xxxxxx\""), "{}", seen[1]);
    assert!(seen[2].starts_with("HTTP/1.1 408"), "{}", seen[2]);
    assert!(seen[2].contains("stream timeout"), "{}", seen[2]);
    assert!(seen[3].contains("request timeout"), "{}", seen[3]);
    assert!(seen[4].contains("\"ok\""), "{}", seen[4]);

    let (e, w) = pair.stop_and_read_logs(log, cases.len()).await;
    let e: Vec<String> = e.lines().map(log_core).collect();
    let w: Vec<String> = w.lines().map(log_core).collect();
    assert_eq!(w, e, "weft's access log differs from Envoy's");
    assert!(e[0].contains(" 200 SI "), "{}", e[0]);
}
