//! Handing freed memory back to the system.
//!
//! glibc's allocator keeps what a program frees for its next
//! allocations, so after a burst (loading a large directory, the first
//! sync of a hundred proxies, a push) the process keeps the burst's size
//! for good. A control plane's bursts are rare and large, so once one is
//! over, the free pages go back (`malloc_trim`). The trim waits for a
//! quiet moment: it walks the heap under the allocator's lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How long activity must have stopped before a trim.
const QUIET: Duration = Duration::from_millis(300);

static PENDING: AtomicBool = AtomicBool::new(false);
/// When [`release_soon`] was last called, in ms since `EPOCH`.
static LAST: AtomicU64 = AtomicU64::new(0);
static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn now_ms() -> u64 {
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Returns freed memory to the system now.
pub fn release_now() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns freed memory to the system once calls to this have stopped
/// for [`QUIET`]; many calls in a burst make one trim. Needs a tokio
/// runtime.
pub fn release_soon() {
    LAST.store(now_ms(), Ordering::Relaxed);
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        let quiet = QUIET.as_millis() as u64;
        loop {
            let due = LAST.load(Ordering::Relaxed) + quiet;
            let now = now_ms();
            if now >= due {
                break;
            }
            tokio::time::sleep(Duration::from_millis(due - now)).await;
        }
        // Calls from here on schedule the next trim.
        PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(release_now).await;
    });
}
