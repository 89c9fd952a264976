//! The admin endpoint (Envoy's :9901 / Istio's 15000): readiness, what is
//! configured, and shutdown.

use std::sync::Arc;

use http::{Request, Response, StatusCode};

use crate::body::{full, Body};
use crate::server::Shared;

/// Changes the process's log level (Envoy's level names); installed by
/// the binary, which owns the logger. Returns the level now in force.
pub type LogLevelHook = Box<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

static LOG_HOOK: std::sync::OnceLock<(LogLevelHook, std::sync::Mutex<String>)> =
    std::sync::OnceLock::new();

/// Lets `POST /logging?level=LEVEL` change the log level; `current` is
/// the level at start.
pub fn set_log_level_hook(current: &str, hook: LogLevelHook) {
    let _ = LOG_HOOK.set((hook, std::sync::Mutex::new(current.to_string())));
}

fn logging(method: &str, query: Option<&str>) -> (StatusCode, String) {
    let Some((hook, current)) = LOG_HOOK.get() else {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "weft admin: this process's logger cannot be changed at run time\n".into(),
        );
    };
    let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
    let level = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("level="));
    match (method, level) {
        ("POST", Some(level)) => match hook(level) {
            Ok(now) => {
                *current = now;
                (
                    StatusCode::OK,
                    format!("active loggers:\n  weft: {current}\n"),
                )
            }
            Err(e) => (StatusCode::BAD_REQUEST, format!("error: {e}\n")),
        },
        (_, Some(_)) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "This endpoint requires POST to change the level\n".into(),
        ),
        _ if query.is_some_and(|q| !q.is_empty()) => (
            StatusCode::NOT_IMPLEMENTED,
            "weft admin: /logging takes only level= (per-logger paths are not implemented)\n"
                .into(),
        ),
        _ => (
            StatusCode::OK,
            format!("active loggers:\n  weft: {current}\n"),
        ),
    }
}

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
                for e in c.endpoints() {
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
        (_, "/config_dump") => match req.uri().query() {
            Some(q) if !q.is_empty() => (
                StatusCode::NOT_IMPLEMENTED,
                format!("weft admin: /config_dump query {q:?} (resource, mask, include_eds) is not implemented yet\n"),
            ),
            _ => {
                let dump = crate::config_dump::build(
                    &snapshot.source,
                    snapshot.loaded,
                    snapshot.xds.as_deref(),
                    &snapshot.secrets,
                );
                (StatusCode::OK, serde_json::to_string_pretty(&dump).unwrap_or_default())
            }
        },
        (m, "/logging") => logging(m, req.uri().query()),
        (_, "/stats") => (StatusCode::OK, snapshot.stats.text()),
        (_, "/stats/prometheus") => (StatusCode::OK, snapshot.stats.prometheus()),
        ("POST", "/quitquitquit") => {
            shared.shutdown();
            (StatusCode::OK, "OK\n".to_string())
        }
        _ => (
            StatusCode::NOT_FOUND,
            "weft admin: /ready /listeners /clusters /config_dump /logging /stats /stats/prometheus /quitquitquit (POST); the rest is not implemented yet\n".to_string(),
        ),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp
}
