//! Small HTTP and TCP test peers: an echo backend that reports what it
//! received (and fails on demand), a TCP echo backend, and a plain
//! HTTP/1.1 or h2c client that opens a fresh connection per request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// An HTTP/1.1 + h2c backend that answers every request with what it
/// received, as JSON, and names itself in `x-backend`.
pub async fn echo_backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(
                    move |mut req: hyper::Request<hyper::body::Incoming>| async move {
                        if req.headers().contains_key("upgrade") {
                            // Accept the upgrade; echo raw bytes afterwards.
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                if let Ok(io) = on.await {
                                    let (mut r, mut w) = tokio::io::split(TokioIo::new(io));
                                    let _ = tokio::io::copy(&mut r, &mut w).await;
                                }
                            });
                            let resp = hyper::Response::builder()
                                .status(101)
                                .header("connection", "upgrade")
                                .header("upgrade", "websocket")
                                .header("x-backend", name)
                                .body(Full::new(Bytes::new()).boxed())
                                .unwrap();
                            return Ok::<_, std::io::Error>(resp);
                        }
                        let mut headers = BTreeMap::new();
                        for (k, v) in req.headers() {
                            headers
                                .entry(k.as_str().to_string())
                                .or_insert_with(Vec::new)
                                .push(v.to_str().unwrap_or("").to_string());
                        }
                        let seen = serde_json::json!({
                            "authority": req.uri().authority().map(|a| a.to_string()),
                            "backend": name,
                            "method": req.method().as_str(),
                            "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
                            "version": format!("{:?}", req.version()),
                            "headers": headers,
                        });
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let mut seen = seen;
                        seen["body"] =
                            serde_json::Value::String(String::from_utf8_lossy(&body).into_owned());
                        // `x-test-trailers: yes` asks for gRPC-style trailers.
                        let mut trailers = http::HeaderMap::new();
                        if seen["headers"].get("x-test-trailers").is_some() {
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            trailers.insert("grpc-message", http::HeaderValue::from_static("fine"));
                        }
                        let body = Full::new(Bytes::from(seen.to_string()))
                            .with_trailers(
                                async move { (!trailers.is_empty()).then_some(Ok(trailers)) },
                            )
                            .boxed();
                        // `x-test-status: N`, `x-test-respond: k=v;k=v` and
                        // `x-test-delay-ms: N` ask for a status, response
                        // headers and a delay before the answer.
                        let asked = |k: &str| seen["headers"][k][0].as_str().map(str::to_string);
                        // `x-test-fail: N;HOW` fails the first N requests
                        // carrying the same `x-test-key` (whichever backend
                        // gets them): HOW is a status, `reset`, `stall` or
                        // `grpc=CODE` (a trailers-only gRPC reply).
                        if let Some(key) = asked("x-test-key") {
                            SEEN.lock()
                                .unwrap()
                                .entry(key)
                                .or_default()
                                .push(seen.clone());
                        }
                        // `x-test-fail-on: NAME;HOW` fails every request
                        // that reaches the backend called NAME.
                        if let Some((who, how)) = asked("x-test-fail-on")
                            .as_deref()
                            .and_then(|s| s.split_once(';'))
                        {
                            if who == name {
                                return fail_with(how, name).await;
                            }
                        }
                        if let Some(fail) = asked("x-test-fail") {
                            let key = asked("x-test-key").unwrap_or_default();
                            HITS.lock()
                                .unwrap()
                                .entry(key.clone())
                                .or_default()
                                .push(name);
                            if let Some(how) = failing(&fail, &key) {
                                return fail_with(&how, name).await;
                            }
                        }
                        if let Some(ms) = asked("x-test-delay-ms").and_then(|s| s.parse().ok()) {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let status = asked("x-test-status")
                            .and_then(|s| s.parse::<u16>().ok())
                            .unwrap_or(200);
                        let mut resp = hyper::Response::builder()
                            .status(status)
                            .header("x-backend", name)
                            .header("content-type", "application/json");
                        for kv in asked("x-test-respond").unwrap_or_default().split(';') {
                            if let Some((k, v)) = kv.split_once('=') {
                                resp = resp.header(k.trim(), v.trim());
                            }
                        }
                        let resp = resp.body(body).unwrap();
                        Ok::<_, std::io::Error>(resp)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// How many `x-test-fail` requests each key has seen.
static FAILS: std::sync::Mutex<BTreeMap<String, u32>> = std::sync::Mutex::new(BTreeMap::new());

/// `Some(how)` when this request (`N;HOW`, under `key`) is one of the
/// first N of its key.
fn failing(spec: &str, key: &str) -> Option<String> {
    let (n, how) = spec.split_once(';')?;
    let n: u32 = n.trim().parse().ok()?;
    let mut seen = FAILS.lock().unwrap();
    let count = seen.entry(key.to_string()).or_insert(0);
    *count += 1;
    (*count <= n).then(|| how.trim().to_string())
}

/// Which backend got each `x-test-fail` request, by key.
static HITS: std::sync::Mutex<BTreeMap<String, Vec<&'static str>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// What the backends saw of each request carrying `x-test-key`, by key.
static SEEN: std::sync::Mutex<BTreeMap<String, Vec<serde_json::Value>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// What the backends saw of this key's requests, in arrival order.
pub fn seen_with_key(key: &str) -> Vec<serde_json::Value> {
    SEEN.lock().unwrap().get(key).cloned().unwrap_or_default()
}

/// The backends that got this key's requests, in order.
pub fn hits(key: &str) -> Vec<&'static str> {
    HITS.lock().unwrap().get(key).cloned().unwrap_or_default()
}

/// Requests with this key that the backends have seen so far.
pub fn attempts_seen(key: &str) -> u32 {
    FAILS.lock().unwrap().get(key).copied().unwrap_or(0)
}

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn fail_with(how: &str, name: &'static str) -> std::io::Result<hyper::Response<EchoBody>> {
    let empty = || Full::new(Bytes::new()).boxed();
    let builder = hyper::Response::builder().header("x-backend", name);
    if how == "reset" {
        // An error from the service makes hyper drop the connection
        // (HTTP/1) or reset the stream (HTTP/2) without answering.
        return Err(std::io::Error::other("reset asked for"));
    }
    if how == "stall" {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    if let Some(code) = how.strip_prefix("grpc=") {
        return Ok(builder
            .status(200)
            .header("content-type", "application/grpc")
            .header("grpc-status", code)
            .body(empty())
            .unwrap());
    }
    let status = how.parse::<u16>().unwrap_or(200);
    Ok(builder
        .status(status)
        .body(Full::new(Bytes::from(format!("failed by {name}"))).boxed())
        .unwrap())
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub trailers: BTreeMap<String, String>,
    pub body: String,
}

impl Reply {
    /// What the echo backend saw, when a backend answered.
    pub fn seen(&self) -> Option<serde_json::Value> {
        self.headers.get("x-backend")?;
        serde_json::from_str(&self.body).ok()
    }
}

/// One request on a fresh HTTP/1.1 connection.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
    request("GET", url, headers, false).await
}

/// `url` is `http://ADDRESS:PORT/path`; a `host` header, when given,
/// becomes the Host (HTTP/1.1) or `:authority` (HTTP/2) instead of the
/// URL's authority, so two proxies on different ports see the same one.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    h2: bool,
) -> Result<Reply, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let host = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.to_string())
        .unwrap_or(authority);
    let others: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .copied()
        .collect();
    // The URL's host is where to connect when it is an address.
    let ip = uri
        .host()
        .and_then(|h| h.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
    call_at(
        ip,
        &Call {
            method,
            port,
            path,
            host: &host,
            headers: &others,
            body: b"",
            h2,
        },
    )
    .await
}

/// One request on a fresh connection to 127.0.0.1:`port`.
pub struct Call<'a> {
    pub method: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// HTTP/2 with prior knowledge instead of HTTP/1.1.
    pub h2: bool,
}

pub async fn call(c: &Call<'_>) -> Result<Reply, String> {
    call_at(std::net::Ipv4Addr::LOCALHOST.into(), c).await
}

/// [`call`] to another loopback (or any) address than 127.0.0.1.
pub async fn call_at(ip: std::net::IpAddr, c: &Call<'_>) -> Result<Reply, String> {
    tokio::time::timeout(Duration::from_secs(10), call_inner(ip, c))
        .await
        .map_err(|_| "timeout".to_string())?
}

async fn call_inner(ip: std::net::IpAddr, c: &Call<'_>) -> Result<Reply, String> {
    let stream = tokio::net::TcpStream::connect((ip, c.port))
        .await
        .map_err(|e| e.to_string())?;
    let io = TokioIo::new(stream);
    let mut b = hyper::Request::builder().method(c.method);
    b = if c.h2 {
        b.uri(format!("http://{}{}", c.host, c.path))
    } else {
        b.uri(c.path).header("host", c.host)
    };
    for (k, v) in c.headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::copy_from_slice(c.body)))
        .map_err(|e| e.to_string())?;
    let resp = if c.h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await
    }
    .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut hdrs = BTreeMap::new();
    for (k, v) in resp.headers() {
        hdrs.insert(k.as_str().to_string(), v.to_str().unwrap_or("").to_string());
    }
    let collected = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut trailers = BTreeMap::new();
    for (k, v) in collected.trailers().into_iter().flatten() {
        trailers.insert(k.as_str().to_string(), v.to_str().unwrap_or("").to_string());
    }
    let body = collected.to_bytes();
    Ok(Reply {
        status,
        headers: hdrs,
        trailers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends an HTTP/1.1 WebSocket upgrade on a raw connection; returns the
/// status line and, after a 101, what comes back for `ping`.
pub async fn websocket_roundtrip(port: u16, path: &str) -> (String, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.lines().next().unwrap_or("").to_string();
    if !status.contains(" 101 ") {
        return (status, None);
    }
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    let echoed = match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Some(String::from_utf8_lossy(&buf).into_owned()),
        _ => None,
    };
    (status, echoed)
}

/// A TCP backend that writes its name, then echoes what it reads.
pub async fn tcp_echo_backend(name: &'static str) -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Connects, sends `data`, half-closes, and reads everything back.
pub async fn tcp_exchange(port: u16, data: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
