//! `tcp_proxy`: one upstream connection per downstream connection, bytes
//! copied both ways until either side closes or the idle timeout passes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::access_log::Entry;
use crate::chain::TcpSettings;
use crate::io::{lifetime, Activity};
use crate::snapshot::Snapshot;
use crate::transport::Stream;

/// A downstream connection as the listener hands it over.
pub struct Downstream {
    pub stream: Stream,
    /// Bytes listener filters already read, which go upstream first.
    pub early: BytesMut,
    /// The destination before redirection, for ORIGINAL_DST clusters.
    pub original_dst: Option<std::net::SocketAddr>,
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
    } = down;
    let started = std::time::Instant::now();
    let mut entry = Entry {
        start: Some(std::time::SystemTime::now()),
        protocol: "-",
        ..Default::default()
    };
    settings.stats.downstream_cx_total.inc();
    let (received, sent) = serve_inner(
        &snapshot,
        &settings,
        &mut down,
        early,
        original_dst,
        &mut entry,
        closing,
    )
    .await;
    settings.stats.downstream_cx_rx_bytes_total.add(received);
    settings.stats.downstream_cx_tx_bytes_total.add(sent);
    if !settings.access_logs.is_empty() {
        let line = entry.format(received, sent, started.elapsed().as_millis());
        for l in &settings.access_logs {
            l.write(line.clone());
        }
    }
}

/// Returns bytes received from and sent to downstream.
async fn serve_inner(
    snapshot: &Snapshot,
    settings: &TcpSettings,
    down: &mut Stream,
    early: BytesMut,
    original_dst: Option<std::net::SocketAddr>,
    entry: &mut Entry,
    closing: impl std::future::Future<Output = ()>,
) -> (u64, u64) {
    let Some(cluster) = snapshot.clusters.get(settings.pick()) else {
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
    // A connection made is a success to outlier detection, as Envoy's
    // TCP proxy reports it.
    cluster.report(&endpoint, crate::outlier::Result::Status(200));
    cluster.stats.upstream_cx_total.inc();
    let _ = down.set_nodelay(true);
    if !early.is_empty() && up.write_all(&early).await.is_err() {
        return (early.len() as u64, 0);
    }
    endpoint.active.fetch_add(1, Ordering::Relaxed);
    let counts = copy_until_idle(down, &mut up, settings.idle_timeout, closing).await;
    endpoint.active.fetch_sub(1, Ordering::Relaxed);
    if counts.2 {
        entry.flags = Some("UT");
    }
    (counts.0 + early.len() as u64, counts.1)
}

/// Copies both ways at once; a half-close is passed on, and the
/// connection ends when both directions are done, either side fails,
/// nothing moved for `idle`, or `closing` resolves. Returns bytes a→b,
/// bytes b→a, and whether the idle timeout ended it.
async fn copy_until_idle(
    a: &mut Stream,
    b: &mut Stream,
    idle: Option<Duration>,
    closing: impl std::future::Future<Output = ()>,
) -> (u64, u64, bool) {
    match (a, b) {
        // TcpStream's own halves: no lock between the two directions. A
        // TLS stream (one record layer for both directions) will go
        // through tokio::io::split, as `tunnel` does.
        (Stream::Plain(a), Stream::Plain(b)) => {
            let (ar, aw) = a.split();
            let (br, bw) = b.split();
            join_halves((ar, aw), (br, bw), idle, closing).await
        }
        (a, b) => {
            let (a, b) = (tokio::io::split(a), tokio::io::split(b));
            join_halves(a, b, idle, closing).await
        }
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
    join_halves(a, b, idle, std::future::pending()).await;
}

async fn join_halves(
    (ar, aw): (impl AsyncRead + Unpin, impl AsyncWrite + Unpin),
    (br, bw): (impl AsyncRead + Unpin, impl AsyncWrite + Unpin),
    idle: Option<Duration>,
    closing: impl std::future::Future<Output = ()>,
) -> (u64, u64, bool) {
    // One timer for the whole connection (the HTTP side's idle timeout):
    // each read records when it happened, and the watchdog sleeps until
    // the last one plus `idle` (re-arming a timer per read costs more
    // than the copy). Without `idle` it never fires.
    let activity = Activity::new();
    let (a_to_b, b_to_a) = (AtomicU64::new(0), AtomicU64::new(0));
    let both = async {
        tokio::try_join!(
            pipe(ar, bw, &a_to_b, &activity),
            pipe(br, aw, &b_to_a, &activity)
        )
    };
    let timed_out = tokio::select! {
        _ = both => false,
        _ = lifetime(&activity, idle, None) => true,
        _ = closing => false,
    };
    (
        a_to_b.load(Ordering::Relaxed),
        b_to_a.load(Ordering::Relaxed),
        timed_out,
    )
}

/// One direction: read, write, until end of stream, which is passed on
/// as a half-close.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    count: &AtomicU64,
    activity: &Activity,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        activity.touch();
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}
