//! Development mode: a throwaway certificate authority and certificates, and
//! a routing table read from the CSV files, so the service runs on a laptop
//! without any of the production secrets. Never for production.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::core::table::{RoutingTable, TableError};
use crate::server::tls::{self, PemFiles};
use crate::source::files::{DataDirs, LoadError};

/// Where development certificates go unless told otherwise.
pub const DEFAULT_TLS_DIR: &str = "./dev-state/tls";

/// The name on the development client certificate: sms-orchestrator's, one
/// of the callers `serve` and `dev` admit by default.
pub const CLIENT_NAME: &str = crate::server::identity::ORCHESTRATOR_DNS;

/// The banner printed when development mode starts.
pub const BANNER: &str = "\
=====================================================================
  routing-engine DEVELOPMENT MODE
  Throwaway certificates, routing table from files, no secrets check.
  Do not run this in production.
=====================================================================";

/// Why development mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("generate development certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    #[error("write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("read the routing files: {0}")]
    Source(#[from] LoadError),
    #[error("build the routing table from files: {0}")]
    Table(#[from] TableError),
}

/// A CA and the two certificates it signed, all in PEM.
pub struct DevPki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl DevPki {
    /// A fresh CA, a server certificate for `routing-engine`, `localhost` and
    /// `127.0.0.1`, and a client certificate carrying sms-orchestrator's DNS
    /// name and SPIFFE ID.
    pub fn generate() -> Result<DevPki, rcgen::Error> {
        let ca = certificate_authority("routing-engine development CA")?;

        let server_names = ["routing-engine", "localhost", "127.0.0.1"];
        let (server_cert, server_key) =
            leaf(&server_names, ExtendedKeyUsagePurpose::ServerAuth, &ca)?;
        let (client_cert, client_key) =
            leaf(&[CLIENT_NAME], ExtendedKeyUsagePurpose::ClientAuth, &ca)?;

        Ok(DevPki {
            ca_cert: ca.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
        })
    }

    /// Writes `ca.crt`, `tls.crt`, `tls.key` (the production layout),
    /// `client.crt` and `client.key` into `dir`, keys readable by the owner.
    pub fn write(&self, dir: &Path) -> Result<(), DevError> {
        let write_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| DevError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;

        let files = [
            ("ca.crt", &self.ca_cert, false),
            ("tls.crt", &self.server_cert, false),
            ("tls.key", &self.server_key, true),
            ("client.crt", &self.client_cert, false),
            ("client.key", &self.client_key, true),
        ];
        for (name, pem, private) in files {
            let path = dir.join(name);
            std::fs::write(&path, pem).map_err(write_err(&path))?;
            if private {
                owner_only(&path).map_err(write_err(&path))?;
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn owner_only(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn certificate_authority(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

/// A certificate for `names` signed by `issuer`, and its key, in PEM.
fn leaf(
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), rcgen::Error> {
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name.push(DnType::CommonName, names[0]);
    if usage == ExtendedKeyUsagePurpose::ClientAuth {
        let spiffe = crate::server::identity::ORCHESTRATOR_SPIFFE.try_into()?;
        params.subject_alt_names.push(SanType::URI(spiffe));
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];

    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Generates and writes fresh development certificates into `dir`.
pub fn write_dev_tls(dir: &Path) -> Result<DevPki, DevError> {
    let pki = DevPki::generate()?;
    pki.write(dir)?;
    Ok(pki)
}

/// What [`ensure_dev_tls`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevTls {
    /// The certificates already in the directory were kept.
    Reused,
    /// Fresh ones were written.
    Written,
}

/// Keeps the development certificates already in `dir` when they are all
/// there, valid today, matched by their keys and issued by its `ca.crt`, so
/// clients holding them keep working across restarts; otherwise writes fresh
/// ones.
pub fn ensure_dev_tls(dir: &Path) -> Result<DevTls, DevError> {
    if reusable(dir) {
        return Ok(DevTls::Reused);
    }
    write_dev_tls(dir)?;
    Ok(DevTls::Written)
}

fn reusable(dir: &Path) -> bool {
    let server = PemFiles::read_server(dir);
    let client = PemFiles::read(dir, "client.crt", "client.key");
    let (Ok(server), Ok(client)) = (server, client) else {
        return false;
    };

    tls::file_problems(&server).is_empty()
        && tls::file_problems(&client).is_empty()
        && issued_by_ca(&server, &client)
}

/// Whether the server certificate serves `localhost` and the client
/// certificate authenticates a client, both chaining to `ca.crt`, as the
/// development server and the `route` command will check them.
fn issued_by_ca(server: &PemFiles, client: &PemFiles) -> bool {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
    use rustls::server::WebPkiClientVerifier;

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&server.ca).flatten() {
        if roots.add(ca).is_err() {
            return false;
        }
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (Ok(server_cert), Ok(client_cert)) = (
        CertificateDer::from_pem_slice(&server.cert),
        CertificateDer::from_pem_slice(&client.cert),
    ) else {
        return false;
    };
    let now = UnixTime::now();

    let host = ServerName::from(std::net::Ipv4Addr::LOCALHOST);
    let server_ok = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .is_ok_and(|v| {
            v.verify_server_cert(&server_cert, &[], &host, &[], now)
                .is_ok()
        });
    let client_ok = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .is_ok_and(|v| v.verify_client_cert(&client_cert, &[], now).is_ok());
    server_ok && client_ok
}

/// Builds the routing table from the CSV files: the full data set under
/// `data` (laid out as `numbering/carrier` and `routing`) when given, else
/// the sample shipped in `<repo_root>/sample`. The operators' SMPP
/// passwords the files hold are dropped here, before the core sees a row.
pub fn load_table(data: Option<&Path>, repo_root: &Path) -> Result<RoutingTable, DevError> {
    let dirs = match data {
        Some(dir) => DataDirs {
            carrier: dir.join("numbering").join("carrier"),
            routing: dir.join("routing"),
            shared: true,
        },
        None => DataDirs::sample(repo_root),
    };

    tracing::info!(
        carrier = %dirs.carrier.display(),
        routing = %dirs.routing.display(),
        "reading routing files"
    );
    let files = dirs.load()?;
    Ok(RoutingTable::build(files.source)?)
}

/// The directory the development client and server share, made absolute so
/// the path printed can be pasted anywhere.
pub fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    #[test]
    fn server_and_client_certificates_carry_their_names() {
        let pki = DevPki::generate().unwrap();

        let server = rustls_der(&pki.server_cert);
        let (_, cert) = X509Certificate::from_der(&server).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names[..2], ["routing-engine", "localhost"]);
        assert_eq!(names[2], format!("{:?}", [127u8, 0, 0, 1]));

        let client = rustls_der(&pki.client_cert);
        let (_, cert) = X509Certificate::from_der(&client).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        assert!(matches!(
            sans.value.general_names[..],
            [
                GeneralName::DNSName(CLIENT_NAME),
                GeneralName::URI(crate::server::identity::ORCHESTRATOR_SPIFFE)
            ]
        ));
    }

    #[test]
    fn certificates_in_the_directory_are_kept_while_they_are_valid() {
        // A second start keeps the first start's CA, so a client holding it
        // (or a `dev` still running) is not cut off; a damaged set, or one
        // mixing two CAs, is replaced whole.
        let dir = tempfile::tempdir().unwrap();
        let ca = || std::fs::read(dir.path().join("ca.crt")).unwrap();
        assert_eq!(ensure_dev_tls(dir.path()).unwrap(), DevTls::Written);
        let first_ca = ca();

        assert_eq!(ensure_dev_tls(dir.path()).unwrap(), DevTls::Reused);
        assert_eq!(ca(), first_ca);

        std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
        assert_eq!(ensure_dev_tls(dir.path()).unwrap(), DevTls::Written);
        assert_ne!(ca(), first_ca);
        assert_eq!(ensure_dev_tls(dir.path()).unwrap(), DevTls::Reused);

        let other = DevPki::generate().unwrap();
        std::fs::write(dir.path().join("client.crt"), &other.client_cert).unwrap();
        std::fs::write(dir.path().join("client.key"), &other.client_key).unwrap();
        assert_eq!(ensure_dev_tls(dir.path()).unwrap(), DevTls::Written);
        assert_eq!(ensure_dev_tls(dir.path()).unwrap(), DevTls::Reused);

        std::fs::remove_file(dir.path().join("client.key")).unwrap();
        assert_eq!(ensure_dev_tls(dir.path()).unwrap(), DevTls::Written);
    }

    fn rustls_der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        let cert = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        cert.to_vec()
    }
}
