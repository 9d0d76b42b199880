//! Keeps the router's table current: the first load with backoff, then a new
//! snapshot whenever the store's version changes, built off the request path
//! and swapped in whole. A table that fails validation is refused and the
//! one in service stays.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::model::TableSource;
use super::ports::{PortError, TableStore};
use super::router::Router;
use super::table::{RoutingTable, TableError};

/// What the reloader reports, for metrics and readiness.
pub trait ReloadObserver: Send + Sync + 'static {
    /// A table of `version` is now in service.
    fn applied(&self, version: u64);
    /// A table was refused; the one in service stays.
    fn refused(&self, error: &TableError);
    /// Whether the store answered the last call.
    fn store_up(&self, up: bool);
}

/// An observer that records nothing.
pub struct NoopReloadObserver;

impl ReloadObserver for NoopReloadObserver {
    fn applied(&self, _: u64) {}
    fn refused(&self, _: &TableError) {}
    fn store_up(&self, _: bool) {}
}

/// How often and how patiently to read the store.
#[derive(Clone, Debug)]
pub struct ReloadSettings {
    /// Version poll interval, the upper bound on how stale a table can be
    /// when change notifications are lost.
    pub poll_every: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            poll_every: Duration::from_millis(500),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// Why one reload attempt did not install a table.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("read the routing table: {0}")]
    Store(#[from] PortError),
    #[error(transparent)]
    Invalid(#[from] TableError),
    #[error("building the routing table stopped: {0}")]
    Build(String),
}

/// Reads, validates and installs the store's table once.
pub async fn reload_once(
    router: &Router,
    store: &dyn TableStore,
    observer: &dyn ReloadObserver,
) -> Result<u64, ReloadError> {
    let source = store
        .load()
        .await
        .inspect_err(|_| observer.store_up(false))?;
    observer.store_up(true);

    #[cfg(feature = "planted")]
    super::planted::install_half_built(router, &source).await;

    let version = source.version;
    let table = build_aside(source)
        .await?
        .inspect_err(|e| observer.refused(e))?;
    router.install(table);
    observer.applied(version);
    Ok(version)
}

/// Builds the snapshot on the blocking pool: a full table takes tens of
/// milliseconds (seconds for a million ranges), which on a runtime worker
/// would hold up every request queued behind it.
async fn build_aside(source: TableSource) -> Result<Result<RoutingTable, TableError>, ReloadError> {
    // Under madsim the closure runs as an ordinary task, which is what a
    // simulation wants; madsim marks the function deprecated for that reason.
    #[allow(deprecated)]
    let built = tokio::task::spawn_blocking(move || RoutingTable::build(source)).await;
    built.map_err(|e| ReloadError::Build(e.to_string()))
}

/// Loads until a table is in service, backing off between failures.
pub async fn first_load(
    router: &Router,
    store: &dyn TableStore,
    observer: &dyn ReloadObserver,
    settings: &ReloadSettings,
) -> u64 {
    let mut backoff = settings.first_backoff;
    loop {
        match reload_once(router, store, observer).await {
            Ok(version) => {
                tracing::info!(table.version = version, "routing table loaded");
                return version;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "routing table not loaded yet");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(settings.max_backoff);
    }
}

/// Watches the store for a new version, woken early by `changed`, and swaps
/// in each new table. Runs until the task is dropped.
pub async fn watch(
    router: Arc<Router>,
    store: Arc<dyn TableStore>,
    observer: Arc<dyn ReloadObserver>,
    changed: Arc<Notify>,
    settings: ReloadSettings,
) {
    let mut refused_version = None;
    // Said once when the store stops answering and once when it is back,
    // not at every poll in between.
    let mut store_answered = true;
    loop {
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(settings.poll_every) => {}
        }

        let serving = router.table().map(|t| t.version());
        let version = match store.version().await {
            Ok(v) => v,
            Err(e) => {
                observer.store_up(false);
                if std::mem::replace(&mut store_answered, false) {
                    tracing::warn!(
                        error = %e,
                        table.version = serving.unwrap_or_default(),
                        "routing table store unreachable, serving the table in hand"
                    );
                }
                continue;
            }
        };
        observer.store_up(true);
        if !std::mem::replace(&mut store_answered, true) {
            tracing::info!("routing table store answers again");
        }
        if Some(version) == serving || Some(version) == refused_version {
            continue;
        }

        match reload_once(&router, store.as_ref(), observer.as_ref()).await {
            Ok(v) => {
                refused_version = None;
                let previous = serving.unwrap_or_default();
                tracing::info!(table.version = v, previous, "routing table reloaded");
            }
            Err(ReloadError::Invalid(e)) => {
                refused_version = Some(version);
                tracing::error!(table.version = version, error = %e, "routing table refused");
            }
            Err(e) => tracing::warn!(error = %e, "routing table reload failed"),
        }
    }
}
