//! The plaintext HTTP backend behind the proxies, run as a process of
//! its own (`mtls-bench backend PORT`, `authz-bench backend PORT`) so
//! its CPU is told apart from the generator's. Every path answers a
//! short body at once, except three bench/mtls's idle-memory
//! measurement uses to make the client proxy open one upstream mTLS
//! connection per downstream connection (an HTTP/1.1 connection carries
//! one request at a time, so N requests held at the backend at once need
//! N connections at every hop):
//!
//! - `/hold` waits until `/release`;
//! - `/held` (asked directly, not through the proxies) answers how many
//!   `/hold` requests are waiting;
//! - `/release` answers every waiting `/hold` and sets the count to 0.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub const BODY: &[u8] = b"hello from the weft bench backend\n";

static HELD: AtomicUsize = AtomicUsize::new(0);

/// Bumped by `/release`; a `/hold` request waits for it to change.
fn generation() -> &'static tokio::sync::watch::Sender<u64> {
    static GEN: OnceLock<tokio::sync::watch::Sender<u64>> = OnceLock::new();
    GEN.get_or_init(|| tokio::sync::watch::channel(0).0)
}

async fn answer(path: &str) -> Bytes {
    match path {
        "/hold" => {
            // Subscribed before counted: a release the generator sends
            // once it sees this request counted is never missed.
            let mut rx = generation().subscribe();
            HELD.fetch_add(1, Ordering::SeqCst);
            let _ = rx.changed().await;
            Bytes::from_static(BODY)
        }
        "/held" => Bytes::from(HELD.load(Ordering::SeqCst).to_string()),
        "/release" => {
            HELD.store(0, Ordering::SeqCst);
            generation().send_modify(|g| *g += 1);
            Bytes::from_static(b"released\n")
        }
        _ => Bytes::from_static(BODY),
    }
}

/// Serves forever when `args` are `backend PORT` (the bench started
/// again as its backend by [`crate::procs::spawn_backend`]); otherwise
/// returns false at once.
pub fn serve_if_asked(args: &[String], rt: &tokio::runtime::Runtime) -> bool {
    if args.first().map(String::as_str) != Some("backend") {
        return false;
    }
    let port: u16 = crate::arg(args, 1, "backend PORT");
    rt.block_on(run(port));
    true
}

/// Serves 127.0.0.1:`port` forever, each connection (no Nagle) in a task
/// of its own.
pub async fn run(port: u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("backend port");
    loop {
        let Ok((s, _)) = listener.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let body = answer(req.uri().path()).await;
                Ok::<_, Infallible>(hyper::Response::new(Full::new(body)))
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}
