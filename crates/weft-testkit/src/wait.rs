//! Waiting for an observable state (a statistic, an ACKed version, an
//! answer) instead of for a time or a number of requests.
//!
//! A test that sleeps a fixed time, or expects an effect by the Nth
//! request, measures the machine: Envoy, for one, applies outlier
//! ejections, drains and warming timeouts on its main thread, which a
//! loaded machine runs late. These helpers poll the state itself with a
//! deadline long enough for a machine busy with other builds; a passing
//! test waits only as long as the state takes, and a failing one names
//! what it waited for and what it saw last.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long tests wait for a state before giving up. Far longer than any
/// state takes on an idle machine, so that only a state that never comes
/// fails a test, not a slow one.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How often a state is looked at again.
const POLL: Duration = Duration::from_millis(25);

/// Polls `probe` until it returns `Ok`, and returns that value; panics
/// after `within`, naming `what` it waited for and the last `Err` (what
/// the probe saw instead).
pub async fn wait_for<T, E: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) if start.elapsed() >= within => {
                panic!("waited {within:?} for {what}; last saw: {seen:?}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// [`wait_for`] for a condition: polls until `check` is true.
pub async fn wait_until<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) {
    wait_for(what, within, async || {
        if check().await {
            Ok(())
        } else {
            Err("not yet")
        }
    })
    .await
}

/// [`wait_for`] for tests without an async runtime (processes started
/// by a test, polled from its thread).
pub fn wait_for_blocking<T, E: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if start.elapsed() >= within => {
                panic!("waited {within:?} for {what}; last saw: {seen:?}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}
