//! `tcp_proxy`: one upstream connection per downstream connection, bytes
//! copied both ways until either side closes or the idle timeout passes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::snapshot::{Snapshot, TcpSettings};

pub async fn serve(snapshot: Arc<Snapshot>, settings: Arc<TcpSettings>, mut down: TcpStream) {
    let Some(cluster) = snapshot.clusters.get(settings.pick()) else {
        return;
    };
    let Some(endpoint) = cluster.pick() else {
        tracing::debug!(cluster = %cluster.name, "no healthy upstream (UH)");
        return;
    };
    let up = tokio::time::timeout(cluster.connect_timeout, TcpStream::connect(endpoint.addr)).await;
    let mut up = match up {
        Ok(Ok(s)) => s,
        _ => {
            tracing::debug!(cluster = %cluster.name, addr = %endpoint.addr, "connect failure (UF)");
            return;
        }
    };
    let _ = up.set_nodelay(true);
    let _ = down.set_nodelay(true);
    endpoint.active.fetch_add(1, Ordering::Relaxed);
    copy_until_idle(&mut down, &mut up, settings.idle_timeout).await;
    endpoint.active.fetch_sub(1, Ordering::Relaxed);
}

/// Copies both ways; a half-close is passed on, and the connection ends
/// when both directions are done or nothing moved for `idle`.
async fn copy_until_idle(a: &mut TcpStream, b: &mut TcpStream, idle: Option<Duration>) {
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let idle = idle.unwrap_or(Duration::MAX);
    while a_open || b_open {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = ar.read(&mut buf_a), if a_open => match r {
                    Ok(0) | Err(_) => { a_open = false; let _ = bw.shutdown().await; Ok(()) }
                    Ok(n) => bw.write_all(&buf_a[..n]).await,
                },
                r = br.read(&mut buf_b), if b_open => match r {
                    Ok(0) | Err(_) => { b_open = false; let _ = aw.shutdown().await; Ok(()) }
                    Ok(n) => aw.write_all(&buf_b[..n]).await,
                },
            }
        })
        .await;
        match step {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}
