//! Certificate rotation without a restart: watches the server certificate,
//! key and CA bundle under `TLS_DIR` and puts a changed, valid set in place
//! for new handshakes, keeping the previous set when the new one is broken.
//!
//! The files are polled, not watched with inotify: cert-manager's secret is
//! mounted by the kubelet, which writes a new `..data` directory and swaps a
//! symlink, so the watched inodes are replaced rather than modified and an
//! inotify watch on them goes quiet after the first rotation. Reading three
//! small files every few seconds is cheap, works on every filesystem and
//! needs no extra dependency, and renewal happens 30 days before expiry, so
//! a delay of seconds does not matter.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_128;

use super::tls::{PemFiles, ServerTls, TlsError};
use crate::metrics::Metrics;

/// What one look at the files found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Same contents as the set in use, or as the last refused set.
    Unchanged,
    /// A new set is in use for new handshakes.
    Applied,
    /// A new set was refused; the previous one stays in use.
    Refused,
    /// A file could not be read, or the files changed while being read;
    /// looked at again next time.
    Unsettled,
}

/// Watches one TLS directory for one server.
pub struct TlsReloader {
    tls: Arc<ServerTls>,
    dir: PathBuf,
    metrics: Arc<Metrics>,
    /// Fingerprint of the contents last applied or refused, so a broken set
    /// is reported once, not at every look.
    seen: u128,
}

impl TlsReloader {
    /// Starts from `current`, the files `tls` was built from.
    pub fn new(
        tls: Arc<ServerTls>,
        dir: PathBuf,
        current: &PemFiles,
        metrics: Arc<Metrics>,
    ) -> TlsReloader {
        TlsReloader {
            tls,
            dir,
            metrics,
            seen: fingerprint(current),
        }
    }

    /// Looks at the files every `every` for as long as the task runs.
    pub async fn run(mut self, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.check().await;
        }
    }

    /// Reads the files once and applies them if they changed and are valid.
    pub async fn check(&mut self) -> ReloadOutcome {
        let Some(files) = self.read().await else {
            return ReloadOutcome::Unsettled;
        };
        let print = fingerprint(&files);
        if print == self.seen {
            return ReloadOutcome::Unchanged;
        }

        match self.tls.replace(&files) {
            Ok(()) => {
                self.seen = print;
                self.metrics.record_tls_reload("applied");
                log_applied(&files);
                ReloadOutcome::Applied
            }
            Err(error) => self.refuse(print, error).await,
        }
    }

    /// A set that fails may have been read half-way through a swap: it is
    /// refused only if a second reading finds the very same contents.
    async fn refuse(&mut self, print: u128, error: TlsError) -> ReloadOutcome {
        let again = self.read().await.map(|files| fingerprint(&files));
        if again != Some(print) {
            return ReloadOutcome::Unsettled;
        }

        self.seen = print;
        self.metrics.record_tls_reload("refused");
        tracing::error!(
            tls.dir = %self.dir.display(),
            error = %error,
            "new TLS certificate, key or CA bundle refused; the previous ones stay in use"
        );
        ReloadOutcome::Refused
    }

    async fn read(&self) -> Option<PemFiles> {
        let dir = self.dir.clone();
        let read = tokio::task::spawn_blocking(move || PemFiles::read_server(&dir)).await;
        match read {
            Ok(Ok(files)) => Some(files),
            Ok(Err(error)) => {
                // Between two kubelet writes a file can be briefly missing.
                tracing::debug!(error = %error, "TLS files not readable yet");
                None
            }
            Err(_) => None,
        }
    }
}

fn fingerprint(files: &PemFiles) -> u128 {
    [&files.cert, &files.key, &files.ca]
        .iter()
        .fold(0u128, |acc, bytes| acc.rotate_left(1) ^ xxh3_128(bytes))
}

/// Says which certificate is now in use, by serial and expiry: public facts.
fn log_applied(files: &PemFiles) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use x509_parser::prelude::{FromDer, X509Certificate};

    let Ok(der) = CertificateDer::from_pem_slice(&files.cert) else {
        return;
    };
    if let Ok((_, cert)) = X509Certificate::from_der(&der) {
        tracing::info!(
            tls.serial = %cert.raw_serial_as_string(),
            tls.not_after = %cert.validity().not_after,
            "new TLS certificate in use for new connections"
        );
    }
}
