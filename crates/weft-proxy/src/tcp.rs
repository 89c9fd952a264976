//! `tcp_proxy`: one upstream connection per downstream connection, bytes
//! copied both ways until either side closes or the idle timeout passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::access_log::Entry;
use crate::chain::TcpSettings;
use crate::io::{lifetime, Activity, Verdict};
use crate::snapshot::Snapshot;
use crate::transport::Stream;

/// A downstream connection as the listener hands it over.
pub struct Downstream {
    pub stream: Stream,
    /// Bytes listener filters already read, which go upstream first.
    pub early: BytesMut,
    /// The destination before redirection, for ORIGINAL_DST clusters.
    pub original_dst: Option<std::net::SocketAddr>,
    /// The chain's network RBAC filters, which see every read from
    /// downstream (`None` without them).
    pub(crate) gate: Option<crate::rbac::Gate>,
}

/// Serves one connection; it is closed when `closing` resolves (the
/// listener drained and its drain time passed).
pub async fn serve(
    snapshot: Arc<Snapshot>,
    settings: Arc<TcpSettings>,
    down: Downstream,
    closing: impl std::future::Future<Output = ()>,
) {
    let Downstream {
        stream: mut down,
        early,
        original_dst,
        gate,
    } = down;
    let started = std::time::Instant::now();
    let mut entry = Entry {
        start: Some(std::time::SystemTime::now()),
        downstream_local: down.local_addr().ok(),
        downstream_remote: down.peer_addr().ok(),
        ..Default::default()
    };
    settings.stats.downstream_cx_total.inc();
    let (received, sent) = serve_inner(
        &snapshot,
        &settings,
        Conn {
            down: &mut down,
            early,
            original_dst,
            gate,
        },
        &mut entry,
        closing,
    )
    .await;
    settings.stats.downstream_cx_rx_bytes_total.add(received);
    settings.stats.downstream_cx_tx_bytes_total.add(sent);
    if !settings.access_logs.is_empty() {
        entry.bytes_received = received;
        entry.bytes_sent = sent;
        entry.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let entry = std::sync::Arc::new(entry);
        for l in &settings.access_logs {
            l.write(std::sync::Arc::clone(&entry));
        }
    }
}

/// The downstream side of a connection being served.
struct Conn<'a> {
    down: &'a mut Stream,
    early: BytesMut,
    original_dst: Option<std::net::SocketAddr>,
    gate: Option<crate::rbac::Gate>,
}

/// Returns bytes received from and sent to downstream.
async fn serve_inner(
    snapshot: &Snapshot,
    settings: &TcpSettings,
    conn: Conn<'_>,
    entry: &mut Entry,
    closing: impl std::future::Future<Output = ()>,
) -> (u64, u64) {
    let Conn {
        down,
        early,
        original_dst,
        mut gate,
    } = conn;
    let name = settings.pick();
    entry.upstream_cluster = Some(name.to_string());
    let Some(cluster) = snapshot.clusters.get(name) else {
        entry.flags = Some("NC");
        return (0, 0);
    };
    let ctx = crate::cluster::PickContext {
        original_dst,
        headers: None,
        hash: None,
    };
    let Some(endpoint) = cluster.pick(&ctx) else {
        cluster.stats.upstream_cx_none_healthy.inc();
        entry.flags = Some("UH");
        return (0, 0);
    };
    entry.upstream_host = Some(endpoint.addr.to_string());
    let up = cluster.connect(&endpoint).await;
    let mut up = match up {
        Ok(s) => s,
        Err(_) => {
            cluster.stats.upstream_cx_total.inc();
            cluster.stats.upstream_cx_connect_fail.inc();
            cluster.report(&endpoint, crate::outlier::Result::ConnectFailed);
            entry.flags = Some("UF");
            return (0, 0);
        }
    };
    entry.upstream_local = up.local_addr().ok();
    // A connection made is a success to outlier detection, as Envoy's
    // TCP proxy reports it.
    cluster.report(&endpoint, crate::outlier::Result::Status(200));
    cluster.stats.upstream_cx_total.inc();
    let _ = down.set_nodelay(true);
    if !early.is_empty() {
        // The bytes listener filters read are the first data the
        // network filters see.
        if let Some(Verdict::Refuse(delay)) = gate.as_mut().map(|g| g.on_data()) {
            refuse(delay).await;
            let _ = down.shutdown().await;
            return (early.len() as u64, 0);
        }
        if up.write_all(&early).await.is_err() {
            return (early.len() as u64, 0);
        }
    }
    endpoint.active.fetch_add(1, Ordering::Relaxed);
    let copied = copy_until_idle(down, &mut up, settings.idle_timeout, closing, gate).await;
    endpoint.active.fetch_sub(1, Ordering::Relaxed);
    if copied.idle {
        entry.flags = Some("UT");
    }
    if copied.refused {
        // Closed as Envoy closes it: a TLS client gets its close_notify.
        let _ = down.shutdown().await;
    }
    (copied.a_to_b + early.len() as u64, copied.b_to_a)
}

/// What copying both ways came to.
struct Copied {
    a_to_b: u64,
    b_to_a: u64,
    /// The idle timeout ended it.
    idle: bool,
    /// The network filters refused the connection.
    refused: bool,
}

/// The error a refused read ends the copy with.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused by the network RBAC filter")
    }
}

impl std::error::Error for Refused {}

/// Copies both ways at once; a half-close is passed on, and the
/// connection ends when both directions are done, either side fails,
/// nothing moved for `idle`, `closing` resolves, or `gate` refuses.
async fn copy_until_idle(
    a: &mut Stream,
    b: &mut Stream,
    idle: Option<Duration>,
    closing: impl std::future::Future<Output = ()>,
    gate: Option<crate::rbac::Gate>,
) -> Copied {
    match (a, b) {
        // TcpStream's own halves: no lock between the two directions. A
        // TLS stream (one record layer for both directions) will go
        // through tokio::io::split, as `tunnel` does.
        (Stream::Plain(a), Stream::Plain(b)) => {
            let (ar, aw) = a.split();
            let (br, bw) = b.split();
            join_halves((ar, aw), (br, bw), idle, closing, gate).await
        }
        (a, b) => {
            let (a, b) = (tokio::io::split(a), tokio::io::split(b));
            join_halves(a, b, idle, closing, gate).await
        }
    }
}

/// A connection the network filters refused: closed once the delay (if
/// any) has passed.
async fn refuse(delay: Option<Duration>) {
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
}

/// Joins two byte streams end to end (an upgraded HTTP stream and its
/// upstream) until both directions end, either side fails, or nothing
/// moved for `idle`.
pub(crate) async fn tunnel<A, B>(a: A, b: B, idle: Option<Duration>)
where
    A: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (a, b) = (tokio::io::split(a), tokio::io::split(b));
    join_halves(a, b, idle, std::future::pending(), None).await;
}

async fn join_halves(
    (ar, aw): (impl AsyncRead + Unpin, impl AsyncWrite + Unpin),
    (br, bw): (impl AsyncRead + Unpin, impl AsyncWrite + Unpin),
    idle: Option<Duration>,
    closing: impl std::future::Future<Output = ()>,
    gate: Option<crate::rbac::Gate>,
) -> Copied {
    // One timer for the whole connection (the HTTP side's idle timeout):
    // each read records when it happened, and the watchdog sleeps until
    // the last one plus `idle` (re-arming a timer per read costs more
    // than the copy). Without `idle` it never fires.
    let activity = Activity::new();
    let (a_to_b, b_to_a) = (AtomicU64::new(0), AtomicU64::new(0));
    let both = async {
        tokio::try_join!(
            pipe(ar, bw, &a_to_b, &activity, gate),
            pipe(br, aw, &b_to_a, &activity, None)
        )
    };
    let (timed_out, refused) = tokio::select! {
        r = both => (false, r.err().is_some_and(|e| e.get_ref().is_some_and(|e| e.is::<Refused>()))),
        _ = lifetime(&activity, idle, None) => (true, false),
        _ = closing => (false, false),
    };
    Copied {
        a_to_b: a_to_b.load(Ordering::Relaxed),
        b_to_a: b_to_a.load(Ordering::Relaxed),
        idle: timed_out,
        refused,
    }
}

/// One direction: read, write, until end of stream, which is passed on
/// as a half-close. A `gate` (downstream to upstream only) sees each
/// read first, and may refuse the connection: the error ends both
/// directions.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    count: &AtomicU64,
    activity: &Activity,
    mut gate: Option<crate::rbac::Gate>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        activity.touch();
        match gate.as_mut().map(|g| g.on_data()) {
            None | Some(Verdict::Pass) => {}
            Some(Verdict::Done) => gate = None,
            Some(Verdict::Refuse(delay)) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
                refuse(delay).await;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    Refused,
                ));
            }
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}
