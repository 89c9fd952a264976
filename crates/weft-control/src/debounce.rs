//! Letting a burst of changes settle before it is published, as Istio's
//! PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX do: after a change, wait
//! until none has come for the quiet time, but no longer than the cap
//! while changes keep coming. An editor saving five files, or a
//! `kubectl apply` of a directory, becomes one push instead of five.
//!
//! It knows nothing of where changes come from: it asks something that
//! can [`Wait`] for the next one, so it sits between any source and the
//! publish.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Something that is told of changes.
pub trait Wait {
    /// Waits at most `timeout` for a change, and says whether one came.
    fn wait(&mut self, timeout: Duration) -> impl Future<Output = bool> + Send;
}

/// The quiet time and the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Debounce {
    /// How long no change must come before a push.
    pub quiet: Duration,
    /// The longest a push waits after the first change of a burst.
    pub max: Duration,
}

impl Debounce {
    /// Quiet for `quiet`, at most ten times that (weft's `--debounce-ms`).
    pub fn new(quiet: Duration) -> Debounce {
        Debounce {
            quiet,
            max: quiet * 10,
        }
    }

    /// Called at the first change of a burst: waits until `changes` has
    /// had none for the quiet time, or until the cap has passed since the
    /// call. The number of further changes.
    pub async fn settle(&self, changes: &mut impl Wait) -> usize {
        let start = Instant::now();
        let mut more = 0;
        loop {
            let left = self.max.saturating_sub(start.elapsed());
            if left.is_zero() || !changes.wait(self.quiet.min(left)).await {
                return more;
            }
            more += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    const MS: Duration = Duration::from_millis(1);

    struct Feed(mpsc::UnboundedReceiver<()>);

    impl Wait for Feed {
        async fn wait(&mut self, timeout: Duration) -> bool {
            matches!(
                tokio::time::timeout(timeout, self.0.recv()).await,
                Ok(Some(()))
            )
        }
    }

    /// Changes at the given offsets (ms) from now, on a paused clock;
    /// how long `settle` took and how many changes it merged.
    async fn settle_with(d: Debounce, at: &'static [u64]) -> (Duration, usize) {
        let (tx, rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        tokio::spawn(async move {
            for ms in at {
                tokio::time::sleep_until(start + MS * (*ms as u32)).await;
                let _ = tx.send(());
            }
            // Kept open: a closed channel is not a change.
            std::future::pending::<()>().await;
        });
        let more = d.settle(&mut Feed(rx)).await;
        (start.elapsed(), more)
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_change_waits_the_quiet_time() {
        let (took, more) = settle_with(Debounce::new(100 * MS), &[]).await;
        assert_eq!((took, more), (100 * MS, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn each_change_restarts_the_quiet_time() {
        let (took, more) = settle_with(Debounce::new(100 * MS), &[50, 120, 200]).await;
        assert_eq!((took, more), (300 * MS, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn changes_that_keep_coming_are_pushed_at_the_cap() {
        const EVERY_50: &[u64] = &[
            50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 600, 650, 700, 750, 800, 850,
            900, 950, 1000, 1050, 1100, 1150, 1200,
        ];
        let (took, more) = settle_with(Debounce::new(100 * MS), EVERY_50).await;
        assert_eq!(took, 1000 * MS, "ten times the quiet time");
        assert_eq!(more, 19, "the changes at 50, 100, …, 950 ms");
        let capped = Debounce {
            quiet: 100 * MS,
            max: 130 * MS,
        };
        let (took, more) = settle_with(capped, &[50, 120, 200]).await;
        assert_eq!(
            (took, more),
            (130 * MS, 2),
            "the last wait is cut to the cap"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_after_the_quiet_time_is_the_next_burst() {
        let (took, more) = settle_with(Debounce::new(100 * MS), &[150]).await;
        assert_eq!((took, more), (100 * MS, 0));
    }
}
