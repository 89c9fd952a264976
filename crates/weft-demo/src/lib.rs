//! A Bookinfo-like demo for the local mesh (`weft up examples/bookinfo`):
//! productpage, details, reviews v1/v2/v3 and ratings, with Bookinfo's
//! HTTP API shapes and call graph — productpage calls details and
//! reviews, reviews v2 and v3 call ratings — so every traffic-management
//! scenario of Istio's Bookinfo tour can be tried with curl.
//!
//! Each application calls the others through its sidecar's egress
//! listener (an address given at start), naming the service in the
//! `Host` header, and propagates the logged-in user (`end-user`) and the
//! tracing headers as Bookinfo does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

mod page;

/// The port Bookinfo's services listen on, and that clients name.
pub const SERVICE_PORT: u16 = 9080;

/// Headers Bookinfo's services pass on from the request they serve to
/// the requests they make, so traces join up and routing by user works.
pub const PROPAGATED: &[&str] = &[
    "end-user",
    "user-agent",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum App {
    ProductPage,
    Details,
    /// v1 shows no stars, v2 black ones, v3 red ones.
    Reviews(String),
    Ratings,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0:?} is not a Bookinfo application (productpage, details, reviews, ratings)")]
    UnknownApp(String),
    #[error("reviews version {0:?} is not v1, v2 or v3")]
    UnknownVersion(String),
    #[error("the demo application cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl App {
    /// An application by its `app` label and, for reviews, `version`.
    pub fn from_labels(app: &str, version: &str) -> Result<App, DemoError> {
        Ok(match app {
            "productpage" => App::ProductPage,
            "details" => App::Details,
            "ratings" => App::Ratings,
            "reviews" => match version {
                "v1" | "v2" | "v3" => App::Reviews(version.to_string()),
                other => return Err(DemoError::UnknownVersion(other.into())),
            },
            other => return Err(DemoError::UnknownApp(other.into())),
        })
    }
}

struct State {
    app: App,
    /// The workload's name, reported as `podname` as Bookinfo does.
    workload: String,
    /// The sidecar's egress listener.
    egress: Option<SocketAddr>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

type Body = Full<Bytes>;

/// Starts `app` on `listen`; it reaches other services through `egress`.
pub async fn serve(
    app: App,
    workload: &str,
    listen: SocketAddr,
    egress: Option<SocketAddr>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), DemoError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| DemoError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| DemoError::Bind {
        addr: listen,
        source,
    })?;
    let state = Arc::new(State {
        app,
        workload: workload.to_string(),
        egress,
        client: Client::builder(TokioExecutor::new()).build_http(),
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(handle(&state, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("static response parts")
}

fn json_reply(status: StatusCode, v: &Value) -> Response<Body> {
    reply(status, "application/json", v.to_string())
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if path == "/health" {
        return json_reply(StatusCode::OK, &json!({"status": "healthy"}));
    }
    match (&state.app, req.method(), segments.as_slice()) {
        (App::Details, &Method::GET, ["details", id]) => match id.parse::<u32>() {
            Ok(id) => json_reply(StatusCode::OK, &details(id)),
            Err(_) => json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": "please provide numeric product id"}),
            ),
        },
        (App::Ratings, &Method::GET, ["ratings", id]) => match id.parse::<u32>() {
            Ok(id) => json_reply(
                StatusCode::OK,
                &json!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}),
            ),
            Err(_) => json_reply(
                StatusCode::BAD_REQUEST,
                &json!({"error": "please provide numeric product id"}),
            ),
        },
        (App::Reviews(version), &Method::GET, ["reviews", id]) => {
            let id: u32 = id.parse().unwrap_or(0);
            reviews(state, version, id, req.headers()).await
        }
        (App::ProductPage, _, _) => page::handle(state, req).await,
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn details(id: u32) -> Value {
    json!({
        "id": id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    })
}

async fn reviews(state: &State, version: &str, id: u32, headers: &HeaderMap) -> Response<Body> {
    let texts = [
        ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
        ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."),
    ];
    let color = match version {
        "v2" => Some("black"),
        "v3" => Some("red"),
        _ => None,
    };
    let ratings = match color {
        // Bookinfo's reviews gives ratings 10 s.
        Some(_) => Some(
            call(
                state,
                "ratings",
                &format!("/ratings/{id}"),
                headers,
                RATINGS_TIMEOUT,
            )
            .await,
        ),
        None => None,
    };
    let list: Vec<Value> = texts
        .iter()
        .map(|(reviewer, text)| {
            let mut r = json!({"reviewer": reviewer, "text": text});
            match (&ratings, color) {
                (Some(Ok(v)), Some(color)) => {
                    if let Some(stars) = v["ratings"][reviewer].as_u64() {
                        r["rating"] = json!({"stars": stars, "color": color});
                    }
                }
                (Some(Err(_)), Some(_)) => {
                    r["rating"] = json!({"error": "Ratings service is currently unavailable"});
                }
                _ => {}
            }
            r
        })
        .collect();
    json_reply(
        StatusCode::OK,
        &json!({"id": id.to_string(), "podname": state.workload, "clustername": "null", "reviews": list}),
    )
}

/// Why a call to another service failed.
#[derive(Debug)]
pub(crate) struct CallError(pub String);

const RATINGS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// GET `path` from `service` through the sidecar, passing on the
/// propagated headers, giving it `timeout`; the JSON answer, or why
/// there is none.
pub(crate) async fn call(
    state: &State,
    service: &str,
    path: &str,
    incoming: &HeaderMap,
    timeout: std::time::Duration,
) -> Result<Value, CallError> {
    let egress = state
        .egress
        .ok_or_else(|| CallError("no sidecar egress configured".into()))?;
    let mut req = Request::builder()
        .uri(format!("http://{egress}{path}"))
        .header("host", format!("{service}:{SERVICE_PORT}"));
    for name in PROPAGATED {
        for v in incoming.get_all(*name) {
            req = req.header(*name, v);
        }
    }
    let req = req
        .body(Full::new(Bytes::new()))
        .map_err(|e| CallError(e.to_string()))?;
    let resp = tokio::time::timeout(timeout, state.client.request(req))
        .await
        .map_err(|_| CallError(format!("{service}: no answer in {timeout:?}")))?
        .map_err(|e| CallError(format!("{service}: {e}")))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| CallError(format!("{service}: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(CallError(format!(
            "{service}: {status} {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    serde_json::from_slice(&body).map_err(|e| CallError(format!("{service}: {e}")))
}
