//! Who may call: a client certificate of the cluster CA is not enough, it
//! must also name one of the allowed callers in its subject alternative
//! names and be meant for client authentication. Checked inside the TLS
//! handshake, so a refused caller never reaches the gRPC service.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// sms-orchestrator's Kubernetes service name, as cert-manager puts it in
/// the DNS SAN of its client certificate.
pub const ORCHESTRATOR_DNS: &str = "sms-orchestrator.sms-gateway.svc";

/// sms-orchestrator's SPIFFE identity (namespace and service account), for
/// meshes and issuers that put a URI SAN in client certificates.
pub const ORCHESTRATOR_SPIFFE: &str = "spiffe://cluster.local/ns/sms-gateway/sa/sms-orchestrator";

/// The default of `ALLOWED_CLIENT_IDS`: sms-orchestrator, by either name.
pub const DEFAULT_ALLOWED_CLIENT_IDS: &str =
    "sms-orchestrator.sms-gateway.svc,spiffe://cluster.local/ns/sms-gateway/sa/sms-orchestrator";

/// The callers allowed to open a gRPC connection, each a DNS name or a URI
/// that must appear among the client certificate's subject alternative
/// names. The common name is not looked at: SANs are what issuers vouch for.
#[derive(Clone, PartialEq, Eq)]
pub struct AllowedClients {
    /// Lower-case DNS names, compared without regard to case.
    dns: Vec<String>,
    /// URIs (`spiffe://...`), compared exactly.
    uris: Vec<String>,
}

impl AllowedClients {
    /// Parses a comma-separated list: entries with `://` are URIs, the
    /// others DNS names. Wildcards are refused: each caller is named.
    pub fn parse(text: &str) -> Result<AllowedClients, String> {
        let mut allowed = AllowedClients {
            dns: Vec::new(),
            uris: Vec::new(),
        };
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.contains('*') {
                return Err(format!("{entry:?} is a wildcard; name each caller"));
            }
            if entry.contains("://") {
                allowed.uris.push(entry.to_owned());
            } else if entry.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(format!("{entry:?} is neither a DNS name nor a URI"));
            } else {
                allowed.dns.push(entry.to_ascii_lowercase());
            }
        }

        if allowed.dns.is_empty() && allowed.uris.is_empty() {
            return Err("no caller named: list at least one DNS name or URI".to_owned());
        }
        Ok(allowed)
    }

    /// True when one of `names` is allowed.
    fn admits(&self, names: &[SanName<'_>]) -> bool {
        names.iter().any(|name| match name {
            SanName::Dns(dns) => self.dns.iter().any(|a| a.eq_ignore_ascii_case(dns)),
            SanName::Uri(uri) => self.uris.iter().any(|a| a == uri),
        })
    }
}

impl Default for AllowedClients {
    fn default() -> AllowedClients {
        AllowedClients {
            dns: vec![ORCHESTRATOR_DNS.to_owned()],
            uris: vec![ORCHESTRATOR_SPIFFE.to_owned()],
        }
    }
}

impl fmt::Display for AllowedClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<&str> = self
            .dns
            .iter()
            .chain(&self.uris)
            .map(String::as_str)
            .collect();
        f.write_str(&all.join(","))
    }
}

impl fmt::Debug for AllowedClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AllowedClients({self})")
    }
}

/// A name a certificate carries in its subject alternative names.
#[derive(Debug)]
enum SanName<'a> {
    Dns(&'a str),
    Uri(&'a str),
}

impl<'a> SanName<'a> {
    fn text(&self) -> &'a str {
        match self {
            SanName::Dns(name) | SanName::Uri(name) => name,
        }
    }
}

/// The chain check of `inner` (the cluster CA, validity dates), then the
/// client-authentication purpose and the caller's name.
#[derive(Debug)]
pub struct IdentityVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: AllowedClients,
}

impl IdentityVerifier {
    pub fn new(inner: Arc<dyn ClientCertVerifier>, allowed: AllowedClients) -> IdentityVerifier {
        IdentityVerifier { inner, allowed }
    }

    fn check_identity(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let bad_encoding = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let (_, cert) = X509Certificate::from_der(end_entity).map_err(|_| bad_encoding())?;

        // The chain check already refuses a certificate whose extended key
        // usage excludes client authentication; this also refuses one
        // that states no purpose at all, which no issuer of ours produces.
        let client_auth = match cert.extended_key_usage() {
            Ok(Some(eku)) => eku.value.client_auth,
            Ok(None) => false,
            Err(_) => return Err(bad_encoding()),
        };
        if !client_auth {
            tracing::warn!(
                client.subject = %cert.subject(),
                "client certificate refused: not issued for client authentication"
            );
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }

        let names = san_names(&cert).map_err(|()| bad_encoding())?;
        if self.allowed.admits(&names) {
            return Ok(());
        }
        tracing::warn!(
            client.subject = %cert.subject(),
            client.names = %names.iter().map(SanName::text).collect::<Vec<_>>().join(","),
            allowed = %self.allowed,
            "client certificate refused: not an allowed caller"
        );
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
}

/// The DNS names and URIs among the certificate's subject alternative names.
fn san_names<'a>(cert: &'a X509Certificate<'a>) -> Result<Vec<SanName<'a>>, ()> {
    let Some(sans) = cert.subject_alternative_name().map_err(|_| ())? else {
        return Ok(Vec::new());
    };
    let names = sans
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(SanName::Dns(dns)),
            GeneralName::URI(uri) => Some(SanName::Uri(uri)),
            _ => None,
        })
        .collect();
    Ok(names)
}

impl ClientCertVerifier for IdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check_identity(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_parses_names_and_uris_and_refuses_vague_entries() {
        let allowed = AllowedClients::parse(DEFAULT_ALLOWED_CLIENT_IDS).unwrap();
        assert_eq!(allowed, AllowedClients::default());
        assert_eq!(allowed.to_string(), DEFAULT_ALLOWED_CLIENT_IDS);

        let one = AllowedClients::parse(" Billing.SMS-Gateway.svc ,").unwrap();
        assert!(one.admits(&[SanName::Dns("billing.sms-gateway.svc")]));
        assert!(!one.admits(&[SanName::Uri("billing.sms-gateway.svc")]));
        assert!(!one.admits(&[SanName::Dns(ORCHESTRATOR_DNS)]));
        assert!(allowed.admits(&[SanName::Dns("x"), SanName::Uri(ORCHESTRATOR_SPIFFE)]));
        assert!(!allowed.admits(&[]));

        for bad in ["", " , ", "*.sms-gateway.svc", "a b", "ns/sa"] {
            assert!(AllowedClients::parse(bad).is_err(), "{bad:?}");
        }
    }
}
