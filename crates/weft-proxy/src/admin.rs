//! The admin endpoint (Envoy's :9901 / Istio's 15000): readiness, what is
//! configured, and shutdown.

use std::sync::Arc;

use http::{Request, Response, StatusCode};

use crate::http::{full, Body};
use crate::server::Shared;

pub async fn handle(shared: Arc<Shared>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let snapshot = shared.snapshot.load_full();
    let (status, body) = match (req.method().as_str(), req.uri().path()) {
        (_, "/ready") => {
            if shared.draining() {
                (StatusCode::SERVICE_UNAVAILABLE, "DRAINING\n".to_string())
            } else {
                (StatusCode::OK, "LIVE\n".to_string())
            }
        }
        (_, "/listeners") => {
            let mut out = String::new();
            for l in &snapshot.listeners {
                out.push_str(&format!("{}::{}\n", l.name, l.addr));
            }
            (StatusCode::OK, out)
        }
        (_, "/clusters") => {
            let mut names: Vec<_> = snapshot.clusters.values().collect();
            names.sort_by(|a, b| a.name.cmp(&b.name));
            let mut out = String::new();
            for c in names {
                for e in &c.endpoints {
                    out.push_str(&format!(
                        "{}::{}::rq_active::{}\n",
                        c.name,
                        e.addr,
                        e.active.load(std::sync::atomic::Ordering::Relaxed)
                    ));
                }
            }
            (StatusCode::OK, out)
        }
        (_, "/stats") => (StatusCode::OK, snapshot.stats.text()),
        (_, "/stats/prometheus") => (StatusCode::OK, snapshot.stats.prometheus()),
        ("POST", "/quitquitquit") => {
            shared.shutdown();
            (StatusCode::OK, "OK\n".to_string())
        }
        _ => (
            StatusCode::NOT_FOUND,
            "weft admin: /ready /listeners /clusters /stats /stats/prometheus /quitquitquit (POST); the rest is not implemented yet\n".to_string(),
        ),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp
}
