//! Proves who may call and that certificates rotate without a restart, over
//! real TLS handshakes on loopback. Only a client certificate of the cluster
//! CA that is valid today, issued for client authentication and naming an
//! allowed caller passes the handshake; every other one is refused by the
//! same server with the TLS alert that says why. Replacing the mounted files
//! the way the kubelet does puts a new certificate in use for new handshakes
//! while open connections carry on, and a broken new set is refused and
//! counted while the previous one keeps serving.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rcgen::ExtendedKeyUsagePurpose as Eku;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use x509_parser::prelude::{FromDer, X509Certificate};

use common::pki::{Leaf, LeafSpec, TestCa};
use routing_engine::core::clock::ManualClock;
use routing_engine::core::model::*;
use routing_engine::core::router::{Router, RouterSettings};
use routing_engine::core::table::RoutingTable;
use routing_engine::metrics::Metrics;
use routing_engine::proto::routing_engine_client::RoutingEngineClient;
use routing_engine::proto::SelectOperatorRequest;
use routing_engine::server::identity::{AllowedClients, ORCHESTRATOR_DNS, ORCHESTRATOR_SPIFFE};
use routing_engine::server::tls::{self, PemFiles, ServerTls};
use routing_engine::server::tls_reload::TlsReloader;
use routing_engine::server::Edge;

/// A gRPC server with a table installed, on an ephemeral loopback port.
struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    _stop: watch::Sender<bool>,
}

impl Server {
    async fn start(tls: Arc<ServerTls>) -> Server {
        let router = Router::new(
            Arc::new(ManualClock::at_utc(12, 0)),
            RouterSettings::default(),
        );
        let metrics = Arc::new(Metrics::new().unwrap());
        let edge = Edge::new(Arc::new(router), metrics.clone()).await;
        edge.install(RoutingTable::build(table_source()).unwrap())
            .await;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let until = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let routes = edge.grpc_routes().unwrap();
        tokio::spawn(tls::serve(listener, tls, routes, metrics.clone(), until));
        Server {
            addr,
            metrics,
            _stop: stop,
        }
    }
}

fn table_source() -> TableSource {
    TableSource {
        version: 1,
        operators: vec![Operator {
            id: "op-uk".into(),
            name: "UK".into(),
            system_id: "sys-uk".into(),
            smpp_host: "smpp.example".into(),
            smpp_port: 2775,
            tps_limit: 1_000_000,
            alphanumeric_sender: true,
            enabled: true,
        }],
        ranges: vec![],
        ported: vec![],
        rules: vec![Rule {
            id: "r-44".into(),
            account: None,
            matcher: RuleMatch::Country(44),
            priority: 1,
            target: RuleTarget::Operator("op-uk".into()),
            weight: 1,
            cost_micros: 1,
            sender: SenderFilter::Any,
            window: None,
        }],
    }
}

fn request(n: u64) -> SelectOperatorRequest {
    SelectOperatorRequest {
        message_id: format!("msg-{n}"),
        destination: "+447400123456".into(),
        sender: "ACMEBANK".into(),
        ..Default::default()
    }
}

fn files(server: &Leaf, ca: &str) -> PemFiles {
    PemFiles {
        cert: server.cert.clone().into_bytes(),
        key: server.key.clone().into_bytes(),
        ca: ca.as_bytes().to_vec(),
    }
}

/// A TLS client trusting `ca` and presenting `identity`, if any.
fn client_config(ca: &str, identity: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let cert = CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap();
            let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(vec![cert], key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// Completes a handshake and reads the server's first HTTP/2 frame, which
/// with TLS 1.3 is where a refused client certificate shows up as an alert.
/// Returns the serial of the server's certificate, or the error.
async fn exchange(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from(tls::SERVER_NAME).unwrap();
    let mut stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let serial = peer_serial(stream.get_ref().1);

    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut frame = [0u8; 9];
    stream
        .read_exact(&mut frame)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(serial)
}

fn peer_serial(connection: &rustls::ClientConnection) -> String {
    let certs = connection
        .peer_certificates()
        .expect("a server certificate");
    let (_, cert) = X509Certificate::from_der(&certs[0]).unwrap();
    cert.raw_serial_as_string()
}

/// The serial of a PEM certificate, as `peer_serial` prints it.
fn serial_of(leaf: &Leaf) -> String {
    let der = CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.raw_serial_as_string()
}

#[tokio::test]
async fn only_allowed_callers_with_valid_client_certificates_pass_the_handshake() {
    let ca = TestCa::new("cluster CA");
    let server_leaf = ca.server(1);
    let tls = ServerTls::new(&files(&server_leaf, &ca.pem)).unwrap();
    let server = Server::start(Arc::new(tls)).await;
    let orchestrator = |spec: &LeafSpec<'_>| ca.leaf(spec);
    let spec = |dns, uris, usages, valid| LeafSpec {
        dns,
        uris,
        usages,
        valid,
        serial: 9,
    };

    let stranger_ca = TestCa::new("another CA");
    let refusals: Vec<(&str, Option<Leaf>, &[&str])> = vec![
        ("no certificate", None, &["CertificateRequired"]),
        (
            "another CA",
            Some(stranger_ca.client(&[ORCHESTRATOR_DNS], &[ORCHESTRATOR_SPIFFE], 9)),
            &["UnknownCA"],
        ),
        (
            "expired",
            Some(orchestrator(&spec(
                &[ORCHESTRATOR_DNS],
                &[],
                &[Eku::ClientAuth],
                Some(((2020, 1, 1), (2021, 1, 1))),
            ))),
            &["CertificateExpired"],
        ),
        (
            "not yet valid",
            Some(orchestrator(&spec(
                &[ORCHESTRATOR_DNS],
                &[],
                &[Eku::ClientAuth],
                Some(((2090, 1, 1), (2091, 1, 1))),
            ))),
            &["CertificateExpired"],
        ),
        (
            "another service's identity",
            Some(ca.client(
                &["billing.sms-gateway.svc"],
                &["spiffe://cluster.local/ns/sms-gateway/sa/billing"],
                9,
            )),
            &["AccessDenied"],
        ),
        (
            "a SPIFFE ID of another namespace",
            Some(ca.client(&[], &["spiffe://cluster.local/ns/other/sa/x"], 9)),
            &["AccessDenied"],
        ),
        (
            "a server-only certificate",
            Some(orchestrator(&spec(
                &[ORCHESTRATOR_DNS],
                &[],
                &[Eku::ServerAuth],
                None,
            ))),
            &["UnsupportedCertificate"],
        ),
        (
            "a certificate stating no purpose",
            Some(orchestrator(&spec(&[ORCHESTRATOR_DNS], &[], &[], None))),
            &["UnsupportedCertificate"],
        ),
    ];

    let count = refusals.len() as u64;
    for (case, identity, alerts) in refusals {
        let outcome = exchange(server.addr, client_config(&ca.pem, identity.as_ref())).await;
        let error = outcome.expect_err(&format!("{case}: the handshake passed"));
        assert!(
            alerts.iter().any(|alert| error.contains(alert)),
            "{case}: {error}"
        );
    }
    assert_eq!(server.metrics.tls_handshake_failures(), count);

    // The same server admits sms-orchestrator by either of its names.
    let by_dns = ca.client(&[ORCHESTRATOR_DNS], &[], 10);
    let by_uri = ca.client(&[], &[ORCHESTRATOR_SPIFFE], 11);
    for identity in [by_dns, by_uri] {
        let serial = exchange(server.addr, client_config(&ca.pem, Some(&identity))).await;
        assert_eq!(serial.unwrap(), serial_of(&server_leaf));
    }
    let identity = ca.client(&[ORCHESTRATOR_DNS], &[ORCHESTRATOR_SPIFFE], 12);
    let files = PemFiles {
        cert: identity.cert.into_bytes(),
        key: identity.key.into_bytes(),
        ca: ca.pem.clone().into_bytes(),
    };
    let url = format!("https://{}", server.addr);
    let channel = tls::client_channel(&url, &files).await.unwrap();
    let decision = RoutingEngineClient::new(channel)
        .select_operator(request(1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decision.operator.unwrap().operator_id, "op-uk");
    assert_eq!(server.metrics.tls_handshake_failures(), count);
}

/// A configured allow-list replaces the default one: sms-orchestrator is
/// then refused and the named caller admitted.
#[tokio::test]
async fn the_allow_list_is_configurable() {
    let ca = TestCa::new("cluster CA");
    let allowed = AllowedClients::parse("billing.sms-gateway.svc").unwrap();
    let server_leaf = ca.server(1);
    let tls = ServerTls::with_allowed(&files(&server_leaf, &ca.pem), allowed).unwrap();
    let server = Server::start(Arc::new(tls)).await;

    let orchestrator = ca.client(&[ORCHESTRATOR_DNS], &[ORCHESTRATOR_SPIFFE], 2);
    let refused = exchange(server.addr, client_config(&ca.pem, Some(&orchestrator))).await;
    assert!(refused.unwrap_err().contains("AccessDenied"));

    let billing = ca.client(&["billing.sms-gateway.svc"], &[], 3);
    let admitted = exchange(server.addr, client_config(&ca.pem, Some(&billing))).await;
    assert_eq!(admitted.unwrap(), serial_of(&server_leaf));
}

/// A mounted secret laid out as the kubelet writes it: each generation in
/// its own directory, `..data` a symlink to the current one, and the files
/// symlinks through `..data`.
struct MountedSecret {
    dir: PathBuf,
    generation: usize,
}

impl MountedSecret {
    fn new(dir: &Path, files: &PemFiles) -> MountedSecret {
        let mut mounted = MountedSecret {
            dir: dir.to_owned(),
            generation: 0,
        };
        mounted.publish(files);
        for name in ["tls.crt", "tls.key", "ca.crt"] {
            let target = Path::new("..data").join(name);
            std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
        }
        mounted
    }

    /// Writes a new generation, then swaps `..data` to it in one rename.
    fn publish(&mut self, files: &PemFiles) {
        self.generation += 1;
        let name = format!("..gen_{}", self.generation);
        let generation = self.dir.join(&name);
        std::fs::create_dir(&generation).unwrap();
        std::fs::write(generation.join("tls.crt"), &files.cert).unwrap();
        std::fs::write(generation.join("tls.key"), &files.key).unwrap();
        std::fs::write(generation.join("ca.crt"), &files.ca).unwrap();

        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &staged).unwrap();
        std::fs::rename(&staged, self.dir.join("..data")).unwrap();
    }
}

/// A client connector that does its own TLS handshake, so the test can
/// count the connections a channel opens and see the server's serial.
#[derive(Clone)]
struct Recorder {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    connects: Arc<AtomicUsize>,
    serials: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn new(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Recorder {
        Recorder {
            addr,
            config,
            connects: Arc::default(),
            serials: Arc::default(),
        }
    }

    async fn channel(&self) -> Channel {
        let recorder = self.clone();
        let connector = tower::service_fn(move |_: http::Uri| {
            let recorder = recorder.clone();
            async move {
                let tcp = TcpStream::connect(recorder.addr).await?;
                let connector = tokio_rustls::TlsConnector::from(recorder.config.clone());
                let name = ServerName::try_from(tls::SERVER_NAME).unwrap();
                let stream = connector.connect(name, tcp).await?;
                recorder.connects.fetch_add(1, Ordering::SeqCst);
                let serial = peer_serial(stream.get_ref().1);
                recorder.serials.lock().unwrap().push(serial);
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        Endpoint::from_static("http://routing-engine.test")
            .connect_with_connector(connector)
            .await
            .unwrap()
    }

    fn last_serial(&self) -> String {
        self.serials
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

/// Requests from long-lived channels and from a new channel per request,
/// counted until `stop`.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Load {
    fn record(&self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                self.failures.lock().unwrap().push(error);
            }
        }
    }

    async fn long_lived(self: Arc<Self>, recorder: Recorder, worker: u64) {
        let mut client = RoutingEngineClient::new(recorder.channel().await);
        let mut n = worker * 1_000_000;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let outcome = client.select_operator(request(n)).await;
            self.record(outcome.map(drop).map_err(|s| format!("{s:?}")));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn fresh_connections(self: Arc<Self>, recorder: Recorder) {
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let mut client = RoutingEngineClient::new(recorder.channel().await);
            let outcome = client.select_operator(request(n)).await;
            self.record(outcome.map(drop).map_err(|s| format!("{s:?}")));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `more` further requests have succeeded.
    async fn progress(&self, more: u64) {
        let target = self.ok.load(Ordering::SeqCst) + more;
        wait_for("requests to succeed", || {
            self.ok.load(Ordering::SeqCst) >= target
        })
        .await;
    }
}

/// Polls `done` until it holds. The bound only keeps a broken build from
/// hanging; nothing is measured.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_dropping_a_request() {
    let ca = TestCa::new("cluster CA");
    let temp = tempfile::tempdir().unwrap();
    let leaves: Vec<Leaf> = (1..=5).map(|serial| ca.server(serial)).collect();
    let first = files(&leaves[0], &ca.pem);
    let mut mounted = MountedSecret::new(temp.path(), &first);

    let tls = Arc::new(ServerTls::from_dir(temp.path()).unwrap());
    let server = Server::start(tls.clone()).await;
    let metrics = server.metrics.clone();
    let reloader = TlsReloader::new(tls, temp.path().to_owned(), &first, metrics.clone());
    let watcher = tokio::spawn(reloader.run(Duration::from_millis(20)));

    let orchestrator = ca.client(&[ORCHESTRATOR_DNS], &[ORCHESTRATOR_SPIFFE], 100);
    let config = client_config(&ca.pem, Some(&orchestrator));
    let load = Arc::new(Load::default());
    let long_lived: Vec<Recorder> = (0..3)
        .map(|_| Recorder::new(server.addr, config.clone()))
        .collect();
    let mut tasks = Vec::new();
    for (worker, recorder) in long_lived.iter().enumerate() {
        let task = load.clone().long_lived(recorder.clone(), worker as u64 + 1);
        tasks.push(tokio::spawn(task));
    }
    let fresh = Recorder::new(server.addr, config.clone());
    tasks.push(tokio::spawn(load.clone().fresh_connections(fresh.clone())));
    load.progress(30).await;
    let wanted = serial_of(&leaves[0]);
    wait_for("a new connection to see the first certificate", || {
        fresh.last_serial() == wanted
    })
    .await;

    // A renewal: new key, new serial, same CA.
    mounted.publish(&files(&leaves[1], &ca.pem));
    wait_for("the renewal", || metrics.tls_reloads("applied") == 1).await;
    let serial = exchange(server.addr, config.clone()).await.unwrap();
    assert_eq!(serial, serial_of(&leaves[1]));
    load.progress(30).await;
    let wanted = serial_of(&leaves[1]);
    wait_for("a new connection to see the renewed certificate", || {
        fresh.last_serial() == wanted
    })
    .await;

    // Half a certificate, as a writer interrupted half-way leaves it.
    let mut half = files(&leaves[2], &ca.pem);
    half.cert.truncate(half.cert.len() / 2);
    mounted.publish(&half);
    wait_for("the refusal", || metrics.tls_reloads("refused") == 1).await;
    let serial = exchange(server.addr, config.clone()).await.unwrap();
    assert_eq!(serial, serial_of(&leaves[1]));

    // A certificate with the key of another one.
    let mismatched = PemFiles {
        key: leaves[3].key.clone().into_bytes(),
        ..files(&leaves[2], &ca.pem)
    };
    mounted.publish(&mismatched);
    wait_for("the refusal", || metrics.tls_reloads("refused") == 2).await;
    let serial = exchange(server.addr, config.clone()).await.unwrap();
    assert_eq!(serial, serial_of(&leaves[1]));

    // A CA bundle rotation: the new CA joins the old one, and its clients
    // are admitted from then on.
    let next_ca = TestCa::new("next cluster CA");
    let next_client = next_ca.client(&[ORCHESTRATOR_DNS], &[], 101);
    let next_config = client_config(&ca.pem, Some(&next_client));
    assert!(exchange(server.addr, next_config.clone()).await.is_err());
    let bundle = format!("{}{}", ca.pem, next_ca.pem);
    mounted.publish(&files(&leaves[4], &bundle));
    wait_for("the new CA bundle", || metrics.tls_reloads("applied") == 2).await;
    let serial = exchange(server.addr, next_config).await.unwrap();
    assert_eq!(serial, serial_of(&leaves[4]));
    let wanted = serial_of(&leaves[4]);
    wait_for("a new connection to see the last certificate", || {
        fresh.last_serial() == wanted
    })
    .await;
    load.progress(30).await;

    load.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    watcher.abort();

    let failures = load.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    for recorder in &long_lived {
        assert_eq!(
            recorder.connects.load(Ordering::SeqCst),
            1,
            "a connection was dropped"
        );
        assert_eq!(recorder.last_serial(), serial_of(&leaves[0]));
    }
    assert_eq!(metrics.tls_reloads("applied"), 2);
    assert_eq!(metrics.tls_reloads("refused"), 2);
}
