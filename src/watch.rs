//! Watching the configuration: the file and the key files it names (JWT secrets, public
//! keys, JWKS), so an edited ConfigMap or a rotated Secret applies without a restart.
//!
//! Each file's directory is watched (not the file: kubelet updates a mounted ConfigMap or
//! Secret by swapping a `..data` symlink in that directory, and an editor may replace
//! the file). After a burst of events settles ([`SETTLE`]), the watched files are read
//! again; when any content differs from the last read, the stream yields and the caller
//! reloads, as on SIGHUP. The set of files is taken again from the configuration at
//! every change, so key files a reload adds are watched from then on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::Settings;

/// Quiet time after a file event before the files are read (one update is many events).
const SETTLE: Duration = Duration::from_millis(300);

/// The files of the configuration in `file`: itself and the key files it names.
fn files_of(file: &Path) -> Vec<PathBuf> {
    let mut files = vec![file.to_path_buf()];
    if let Ok(s) = Settings::load(file) {
        files.extend(s.key_files());
    }
    files
}

/// What the files hold now (`None`: unreadable).
fn contents(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}

struct State {
    file: PathBuf,
    watcher: RecommendedWatcher,
    dirs: HashSet<PathBuf>,
    events: mpsc::UnboundedReceiver<()>,
    files: Vec<PathBuf>,
    seen: Vec<Option<Vec<u8>>>,
}

impl State {
    /// Watch the directory of every file not watched yet.
    fn watch_dirs(&mut self) {
        for f in &self.files {
            let dir = match f.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            if self.dirs.contains(&dir) {
                continue;
            }
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for configuration changes");
                }
            }
        }
    }
}

/// A stream that yields each time the configuration in `file` (or a key file it names)
/// changes; never, when the platform cannot watch files (logged).
pub fn changes(file: PathBuf) -> BoxStream<'static, ()> {
    let (tx, events) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    });
    let watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration; reload with SIGHUP");
            return futures::stream::pending().boxed();
        }
    };
    let files = files_of(&file);
    let mut state = State {
        seen: contents(&files),
        files,
        file,
        watcher,
        dirs: HashSet::new(),
        events,
    };
    state.watch_dirs();
    futures::stream::unfold(state, |mut st| async move {
        loop {
            st.events.recv().await?;
            // Let the burst settle, then look.
            loop {
                tokio::time::sleep(SETTLE).await;
                let mut more = false;
                while st.events.try_recv().is_ok() {
                    more = true;
                }
                if !more {
                    break;
                }
            }
            st.files = files_of(&st.file);
            st.watch_dirs();
            let now = contents(&st.files);
            if now != st.seen {
                st.seen = now;
                tracing::info!(file = %st.file.display(), "configuration changed on disk; reloading");
                return Some(((), st));
            }
        }
    })
    .boxed()
}
