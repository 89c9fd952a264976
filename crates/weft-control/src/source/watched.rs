//! The configuration directory as a [`Source`]: told of changes by the
//! kernel's notifications (inotify) where it can be, rescanned when
//! told and at every poll as a safety net (a full notification queue, a
//! file system without notifications).

use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use weft_config::Resource;

use super::{Batch, ConfigDir, Source, Wait};

/// A watched [`ConfigDir`].
pub struct WatchedDir {
    dir: ConfigDir,
    /// Notifications; `None` where the directory cannot be watched.
    rx: Option<UnboundedReceiver<()>>,
    /// Kept alive while the directory is watched.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl WatchedDir {
    /// Starts watching `path` (nothing is read until [`Source::read`]).
    pub fn new(path: &Path) -> WatchedDir {
        use notify::Watcher;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
            if e.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| w.watch(path, notify::RecursiveMode::Recursive).map(|()| w));
        let (rx, watcher) = match watcher {
            Ok(w) => (Some(rx), Some(w)),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} for changes ({e}); rescanning it instead",
                    path.display()
                );
                (None, None)
            }
        };
        WatchedDir {
            dir: ConfigDir::new(path),
            rx,
            _watcher: watcher,
        }
    }
}

impl Wait for WatchedDir {
    async fn wait(&mut self, timeout: Duration) -> bool {
        match &mut self.rx {
            Some(rx) => {
                let told = matches!(tokio::time::timeout(timeout, rx.recv()).await, Ok(Some(())));
                // One rescan covers every notification queued so far.
                while rx.try_recv().is_ok() {}
                told
            }
            None => {
                tokio::time::sleep(timeout).await;
                false
            }
        }
    }
}

impl Source for WatchedDir {
    fn notifies(&self) -> bool {
        self.rx.is_some()
    }

    fn read(&mut self) -> Batch {
        let scan = self.dir.scan();
        Batch {
            events: scan.events,
            problems: scan.problems,
            validations: scan.validations,
        }
    }

    fn objects(&self) -> Vec<&Resource> {
        self.dir.resources()
    }
}
