//! Certificates made to order for the TLS tests: a CA, and leaves with the
//! names, purposes, validity dates and serial numbers a test asks for.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose as Eku, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// A certificate authority of the tests' own.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

/// A calendar day: year, month, day.
pub type Day = (i32, u8, u8);

/// What a leaf certificate carries.
pub struct LeafSpec<'a> {
    pub dns: &'a [&'a str],
    pub uris: &'a [&'a str],
    /// Extended key usages; empty leaves the extension out.
    pub usages: &'a [Eku],
    /// Validity as (year, month, day) pairs; `None` is rcgen's wide default.
    pub valid: Option<(Day, Day)>,
    pub serial: u64,
}

/// A certificate and its private key, in PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        TestCa { issuer, pem }
    }

    /// A leaf signed by this CA with a fresh key.
    pub fn leaf(&self, spec: &LeafSpec<'_>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = self.leaf_with_key(spec, &key);
        Leaf {
            cert,
            key: key.serialize_pem(),
        }
    }

    /// A leaf certificate for `key`, which the caller keeps.
    pub fn leaf_with_key(&self, spec: &LeafSpec<'_>, key: &KeyPair) -> String {
        let dns: Vec<String> = spec.dns.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(dns).unwrap();
        let name = spec.dns.first().or(spec.uris.first()).unwrap_or(&"leaf");
        params.distinguished_name.push(DnType::CommonName, *name);
        for uri in spec.uris {
            let uri = (*uri).try_into().unwrap();
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = spec.usages.to_vec();
        params.serial_number = Some(SerialNumber::from(spec.serial));
        if let Some(((y1, m1, d1), (y2, m2, d2))) = spec.valid {
            params.not_before = date_time_ymd(y1, m1, d1);
            params.not_after = date_time_ymd(y2, m2, d2);
        }
        params.signed_by(key, &self.issuer).unwrap().pem()
    }

    /// The server certificate the tests' clients expect: `routing-engine`.
    pub fn server(&self, serial: u64) -> Leaf {
        self.leaf(&LeafSpec {
            dns: &["routing-engine"],
            uris: &[],
            usages: &[Eku::ServerAuth],
            valid: None,
            serial,
        })
    }

    /// A client certificate naming `dns` and `uris`, for client auth.
    pub fn client(&self, dns: &[&str], uris: &[&str], serial: u64) -> Leaf {
        self.leaf(&LeafSpec {
            dns,
            uris,
            usages: &[Eku::ClientAuth],
            valid: None,
            serial,
        })
    }
}
