//! `tcp_proxy`: one upstream connection per downstream connection, bytes
//! copied both ways until either side closes or the idle timeout passes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::access_log::Entry;
use crate::snapshot::{Snapshot, TcpSettings};

pub async fn serve(snapshot: Arc<Snapshot>, settings: Arc<TcpSettings>, mut down: TcpStream) {
    let started = std::time::Instant::now();
    let mut entry = Entry {
        start: Some(std::time::SystemTime::now()),
        protocol: "-",
        ..Default::default()
    };
    settings.stats.downstream_cx_total.inc();
    let (received, sent) = serve_inner(&snapshot, &settings, &mut down, &mut entry).await;
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
    down: &mut TcpStream,
    entry: &mut Entry,
) -> (u64, u64) {
    let Some(cluster) = snapshot.clusters.get(settings.pick()) else {
        entry.flags = Some("NC");
        return (0, 0);
    };
    let Some(endpoint) = cluster.pick() else {
        cluster.stats.upstream_cx_none_healthy.inc();
        entry.flags = Some("UH");
        return (0, 0);
    };
    entry.upstream_host = Some(endpoint.addr.to_string());
    let up = tokio::time::timeout(cluster.connect_timeout, TcpStream::connect(endpoint.addr)).await;
    let mut up = match up {
        Ok(Ok(s)) => s,
        _ => {
            cluster.stats.upstream_cx_total.inc();
            cluster.stats.upstream_cx_connect_fail.inc();
            entry.flags = Some("UF");
            return (0, 0);
        }
    };
    cluster.stats.upstream_cx_total.inc();
    let _ = up.set_nodelay(true);
    let _ = down.set_nodelay(true);
    endpoint.active.fetch_add(1, Ordering::Relaxed);
    let counts = copy_until_idle(down, &mut up, settings.idle_timeout).await;
    endpoint.active.fetch_sub(1, Ordering::Relaxed);
    if counts.2 {
        entry.flags = Some("UT");
    }
    (counts.0, counts.1)
}

/// Copies both ways; a half-close is passed on, and the connection ends
/// when both directions are done or nothing moved for `idle`. Returns
/// bytes a→b, bytes b→a, and whether the idle timeout ended it.
async fn copy_until_idle(
    a: &mut TcpStream,
    b: &mut TcpStream,
    idle: Option<Duration>,
) -> (u64, u64, bool) {
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let idle = idle.unwrap_or(Duration::MAX);
    let (mut a_to_b, mut b_to_a) = (0u64, 0u64);
    while a_open || b_open {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = ar.read(&mut buf_a), if a_open => match r {
                    Ok(0) | Err(_) => { a_open = false; let _ = bw.shutdown().await; Ok(()) }
                    Ok(n) => { a_to_b += n as u64; bw.write_all(&buf_a[..n]).await }
                },
                r = br.read(&mut buf_b), if b_open => match r {
                    Ok(0) | Err(_) => { b_open = false; let _ = aw.shutdown().await; Ok(()) }
                    Ok(n) => { b_to_a += n as u64; aw.write_all(&buf_b[..n]).await }
                },
            }
        })
        .await;
        match step {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return (a_to_b, b_to_a, false),
            Err(_) => return (a_to_b, b_to_a, true),
        }
    }
    (a_to_b, b_to_a, false)
}
