//! Mutual TLS for the gRPC edge: the server accepts only clients whose
//! certificate chains to the cluster CA and names an allowed caller, and the
//! client helper presents one.
//!
//! TLS is not simulated, so this module exists only in the real build. The
//! server configuration sits behind an `ArcSwap` and every connection builds
//! its acceptor from the current one, so a renewed certificate can be put in
//! place without a restart (`super::tls_reload` watches the files).

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::service::Routes;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server};

use super::identity::{AllowedClients, IdentityVerifier};
use crate::metrics::Metrics;

/// The name the server certificate carries and clients check.
pub const SERVER_NAME: &str = "routing-engine";

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the gRPC server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read {what} at {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} is not valid PEM: {}", pem_problem(source))]
    Pem {
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} holds no PEM certificate")]
    NoCertificate { what: &'static str },
    #[error("server certificate has expired (not after {not_after})")]
    Expired { not_after: String },
    #[error("server certificate is not valid yet (not before {not_before})")]
    NotYetValid { not_before: String },
    #[error("server certificate is not valid X.509")]
    Malformed,
    #[error("CA bundle has a certificate that cannot be a trust anchor: {0}")]
    TrustAnchor(rustls::Error),
    #[error("build the client certificate verifier: {0}")]
    Verifier(#[from] VerifierBuilderError),
    #[error("build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("server address {0:?} is not a URI like https://host:port")]
    ServerUri(String),
    #[error("set up the gRPC channel: {0}")]
    Channel(#[from] tonic::transport::Error),
}

/// The PEM files of one TLS identity and the CA bundle it trusts.
pub struct PemFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

impl PemFiles {
    /// Reads the server's `tls.crt`, `tls.key` and `ca.crt` from `dir`.
    pub fn read_server(dir: &Path) -> Result<PemFiles, TlsError> {
        PemFiles::read(dir, "tls.crt", "tls.key")
    }

    /// Reads `cert_name`, `key_name` and `ca.crt` from `dir`.
    pub fn read(dir: &Path, cert_name: &str, key_name: &str) -> Result<PemFiles, TlsError> {
        Ok(PemFiles {
            cert: read_file(dir, cert_name, "certificate")?,
            key: read_file(dir, key_name, "private key")?,
            ca: read_file(dir, "ca.crt", "CA bundle")?,
        })
    }
}

fn read_file(dir: &Path, name: &str, what: &'static str) -> Result<Vec<u8>, TlsError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// The server side: the current configuration, replaceable at run time, and
/// the callers it admits.
pub struct ServerTls {
    config: ArcSwap<ServerConfig>,
    allowed: AllowedClients,
}

impl ServerTls {
    /// Admits the default callers (sms-orchestrator).
    pub fn new(files: &PemFiles) -> Result<ServerTls, TlsError> {
        ServerTls::with_allowed(files, AllowedClients::default())
    }

    /// Admits only clients whose certificate names one of `allowed`.
    pub fn with_allowed(files: &PemFiles, allowed: AllowedClients) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            config: ArcSwap::from_pointee(server_config(files, &allowed)?),
            allowed,
        })
    }

    /// Reads `tls.crt`, `tls.key` and `ca.crt` from `dir`, the layout of the
    /// mounted secret.
    pub fn from_dir(dir: &Path) -> Result<ServerTls, TlsError> {
        ServerTls::new(&PemFiles::read_server(dir)?)
    }

    /// Puts a renewed certificate, key or CA bundle in place for the
    /// connections accepted from now on; open connections keep theirs. On
    /// error the configuration in use is left as it was.
    pub fn replace(&self, files: &PemFiles) -> Result<(), TlsError> {
        self.config
            .store(Arc::new(server_config(files, &self.allowed)?));
        Ok(())
    }

    pub fn allowed(&self) -> &AllowedClients {
        &self.allowed
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

/// What is wrong with a PEM file, without the bytes the parser quotes: a
/// line of a key file is not something to log.
fn pem_problem(error: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;

    match error {
        Error::MissingSectionEnd { .. } => "a section has no END line (cut short?)",
        Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        Error::Base64Decode(_) => "a section's body is not base64",
        Error::NoItemsFound => "no PEM section of the expected kind",
        Error::SectionTooLarge => "a section is too large",
        _ => "it could not be read",
    }
}

/// TLS 1.2 and 1.3 with ring, a client certificate required, checked against
/// the CA bundle and the allowed callers, and HTTP/2 as the only application
/// protocol. Refuses a key that does not match the certificate and a
/// certificate outside its validity.
fn server_config(files: &PemFiles, allowed: &AllowedClients) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&files.cert, "server certificate")?;
    valid_now(&certs[0])?;
    let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|source| TlsError::Pem {
        what: "server private key",
        source,
    })?;

    let roots = Arc::new(root_store(&files.ca)?);
    let chain = WebPkiClientVerifier::builder_with_provider(roots, provider.clone()).build()?;
    let verifier = Arc::new(IdentityVerifier::new(chain, allowed.clone()));

    // `with_single_cert` refuses a key that does not match the certificate.
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// How far in the future a certificate's start may be: an issuer's clock a
/// little ahead of this replica's must not refuse a fresh certificate.
const NOT_BEFORE_SKEW_SECS: i64 = 300;

/// A certificate that has expired, or that starts later than clock skew
/// explains, is a mistake upstream: keeping the previous one is better than
/// serving one no client accepts.
fn valid_now(cert: &CertificateDer<'_>) -> Result<(), TlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};

    let (_, parsed) = X509Certificate::from_der(cert).map_err(|_| TlsError::Malformed)?;
    let now = x509_parser::time::ASN1Time::now().timestamp();
    let validity = parsed.validity();

    if validity.not_after.timestamp() < now {
        return Err(TlsError::Expired {
            not_after: validity.not_after.to_string(),
        });
    }
    if validity.not_before.timestamp() > now + NOT_BEFORE_SKEW_SECS {
        return Err(TlsError::NotYetValid {
            not_before: validity.not_before.to_string(),
        });
    }
    Ok(())
}

/// Judges the server's TLS files before `serve` starts, naming the file at
/// fault (`tls.crt`, `tls.key`, `ca.crt`) and what is wrong with it. The
/// parsers' own messages can quote a line of the file, so they are dropped.
pub fn file_problems(files: &PemFiles) -> Vec<(&'static str, &'static str)> {
    let mut problems = Vec::new();

    match certificates(&files.cert, "server certificate") {
        Err(_) => problems.push(("tls.crt", "malformed: no PEM certificate")),
        Ok(certs) => match valid_now(&certs[0]) {
            Err(TlsError::Expired { .. }) => problems.push(("tls.crt", "expired")),
            Err(TlsError::NotYetValid { .. }) => problems.push(("tls.crt", "not valid yet")),
            Err(_) => problems.push(("tls.crt", "malformed: not an X.509 certificate")),
            Ok(()) => {}
        },
    }
    if PrivateKeyDer::from_pem_slice(&files.key).is_err() {
        let problem = "malformed: no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)";
        problems.push(("tls.key", problem));
    }
    if root_store(&files.ca).is_err() {
        let problem = "malformed: no PEM CA certificate usable as a trust anchor";
        problems.push(("ca.crt", problem));
    }
    if !problems.is_empty() {
        return problems;
    }

    if let Err(error) = server_config(files, &AllowedClients::default()) {
        let problem = match error {
            TlsError::Config(rustls::Error::InconsistentKeys(_)) => {
                "does not match the certificate in tls.crt"
            }
            _ => "unusable with tls.crt and ca.crt",
        };
        problems.push(("tls.key", problem));
    }
    problems
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn root_store(ca_pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem, "CA bundle")? {
        roots.add(cert).map_err(TlsError::TrustAnchor)?;
    }
    Ok(roots)
}

/// Serves `routes` over mutual TLS on `listener` until `shutdown` resolves.
///
/// Handshakes run in their own tasks; one that fails is logged at debug and
/// counted, and the accept loop carries on.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    routes: Routes,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPTED_BACKLOG);
    let accept_loop = tokio::spawn(accept_loop(listener, tls, metrics, accepted_tx));

    let incoming = futures::stream::unfold(accepted_rx, |mut rx| async move {
        let stream = rx.recv().await?;
        Some((Ok::<_, Infallible>(stream), rx))
    });
    let served = Server::builder()
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;

    accept_loop.abort();
    served
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    metrics: Arc<Metrics>,
    accepted: mpsc::Sender<TlsStream<TcpStream>>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                // Usually out of file descriptors: wait for some to close.
                tracing::warn!(%error, "accept on the gRPC listener failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };

        let _ = tcp.set_nodelay(true);
        let acceptor = tls.acceptor();
        let metrics = metrics.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = accepted.send(stream).await;
                }
                Ok(Err(error)) => {
                    metrics.tls_handshake_failed();
                    tracing::debug!(peer.addr = %peer, %error, "TLS handshake refused");
                }
                Err(_) => {
                    metrics.tls_handshake_failed();
                    tracing::debug!(peer.addr = %peer, "TLS handshake timed out");
                }
            }
        });
    }
}

/// A channel to the service at `server` (`https://host:port`) that presents
/// the client certificate in `files` and trusts only the CA in `files`.
pub async fn client_channel(server: &str, files: &PemFiles) -> Result<Channel, TlsError> {
    let tls = ClientTlsConfig::new()
        .domain_name(SERVER_NAME)
        .ca_certificate(Certificate::from_pem(&files.ca))
        .identity(Identity::from_pem(&files.cert, &files.key));

    let channel = Channel::from_shared(server.to_owned())
        .map_err(|_| TlsError::ServerUri(server.to_owned()))?
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(channel)
}
