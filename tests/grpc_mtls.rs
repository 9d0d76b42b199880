//! Proves the gRPC edge over real mutual-TLS handshakes on loopback: a
//! client holding the cluster CA's client certificate gets decisions, clients
//! without one or with another CA's are refused at the handshake by the same
//! server, refusals carry the contract's codes and reasons, and the
//! management endpoints report readiness and metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;
use tonic_types::StatusExt;

use routing_engine::core::clock::ManualClock;
use routing_engine::core::model::*;
use routing_engine::core::router::{Router, RouterSettings};
use routing_engine::core::table::RoutingTable;
use routing_engine::devmode::DevPki;
use routing_engine::metrics::Metrics;
use routing_engine::proto::routing_engine_client::RoutingEngineClient;
use routing_engine::proto::SelectOperatorRequest;
use routing_engine::server::tls::{self, PemFiles, ServerTls};
use routing_engine::server::{http, Edge};
use routing_engine::source::files::DataDirs;

/// A running server with its own CA, on ephemeral loopback ports.
struct Harness {
    edge: Edge,
    pki: DevPki,
    grpc_url: String,
    http_addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

impl Harness {
    async fn start() -> anyhow::Result<Harness> {
        let pki = DevPki::generate()?;
        let clock = Arc::new(ManualClock::at_utc(12, 0));
        let router = Router::new(clock, RouterSettings::default());
        let metrics = Arc::new(Metrics::new()?);
        let edge = Edge::new(Arc::new(router), metrics.clone()).await;

        let server_tls = ServerTls::new(&PemFiles {
            cert: pki.server_cert.clone().into_bytes(),
            key: pki.server_key.clone().into_bytes(),
            ca: pki.ca_cert.clone().into_bytes(),
        })?;
        let grpc = TcpListener::bind("127.0.0.1:0").await?;
        let http = TcpListener::bind("127.0.0.1:0").await?;
        let grpc_url = format!("https://{}", grpc.local_addr()?);
        let http_addr = http.local_addr()?;

        let (stop, stopped) = watch::channel(false);
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let routes = edge.grpc_routes()?;
        let tls = Arc::new(server_tls);
        tokio::spawn(tls::serve(
            grpc,
            tls,
            routes,
            metrics,
            until(stopped.clone()),
        ));
        tokio::spawn(http::serve(http, edge.clone(), until(stopped)));

        Ok(Harness {
            edge,
            pki,
            grpc_url,
            http_addr,
            _stop: stop,
        })
    }

    async fn install_table(&self) -> anyhow::Result<()> {
        self.edge
            .install(RoutingTable::build(table_source())?)
            .await;
        Ok(())
    }

    /// A client presenting the certificate this server's CA issued.
    async fn good_client(&self) -> anyhow::Result<RoutingEngineClient<Channel>> {
        let files = PemFiles {
            cert: self.pki.client_cert.clone().into_bytes(),
            key: self.pki.client_key.clone().into_bytes(),
            ca: self.pki.ca_cert.clone().into_bytes(),
        };
        let channel = tls::client_channel(&self.grpc_url, &files).await?;
        Ok(RoutingEngineClient::new(channel))
    }

    /// Tries one call trusting the right server CA but presenting `identity`
    /// (or none); returns the error text, or `None` if the call succeeded.
    async fn call_with(&self, identity: Option<Identity>) -> Option<String> {
        let mut config = ClientTlsConfig::new()
            .domain_name(tls::SERVER_NAME)
            .ca_certificate(Certificate::from_pem(&self.pki.ca_cert));
        if let Some(identity) = identity {
            config = config.identity(identity);
        }
        let endpoint = Channel::from_shared(self.grpc_url.clone())
            .unwrap()
            .tls_config(config)
            .unwrap();
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => return Some(format!("connect: {error:?}")),
        };
        match RoutingEngineClient::new(channel)
            .select_operator(request("+447400123456"))
            .await
        {
            Ok(_) => None,
            Err(status) => {
                // A refusal by the service would carry ErrorInfo; a refused
                // handshake never reaches it.
                assert!(status.get_details_error_info().is_none(), "{status:?}");
                assert!(
                    matches!(status.code(), Code::Unavailable | Code::Unknown),
                    "{status:?}"
                );
                Some(format!("call: {status:?}"))
            }
        }
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let mut stream = TcpStream::connect(self.http_addr).await?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;

        let status = response.split(' ').nth(1).context("status line")?.parse()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }
}

fn operator(id: &str) -> Operator {
    Operator {
        id: id.into(),
        name: format!("{id} name"),
        system_id: format!("sys-{id}"),
        smpp_host: "smpp.example".into(),
        smpp_port: 2775,
        tps_limit: 100,
        alphanumeric_sender: true,
        enabled: true,
    }
}

fn rule(id: &str, matcher: RuleMatch, target: RuleTarget, weight: u32) -> Rule {
    Rule {
        id: id.into(),
        account: None,
        matcher,
        priority: 1,
        target,
        weight,
        cost_micros: 4200,
        sender: SenderFilter::Any,
        window: None,
    }
}

/// Two UK operators sharing country 44; no default rule, so other countries
/// have no route.
fn table_source() -> TableSource {
    let to = |id: &str| RuleTarget::Operator(id.into());
    TableSource {
        version: 7,
        operators: vec![operator("op-uk-a"), operator("op-uk-b")],
        ranges: vec![NumberRange {
            country_code: 44,
            prefix: "447400".into(),
            network: "Three".into(),
        }],
        ported: vec![],
        rules: vec![
            rule("r-44-a", RuleMatch::Country(44), to("op-uk-a"), 70),
            rule("r-44-b", RuleMatch::Country(44), to("op-uk-b"), 30),
        ],
    }
}

fn request(destination: &str) -> SelectOperatorRequest {
    SelectOperatorRequest {
        message_id: "msg-1".into(),
        account_id: "acme-bank".into(),
        destination: destination.into(),
        sender: "ACMEBANK".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn only_clients_of_the_cluster_ca_pass_the_handshake() -> anyhow::Result<()> {
    let server = Harness::start().await?;
    server.install_table().await?;

    let no_cert = server.call_with(None).await;
    assert!(
        no_cert.is_some(),
        "a client without a certificate was served"
    );

    let other_ca = DevPki::generate()?;
    let stranger = Identity::from_pem(&other_ca.client_cert, &other_ca.client_key);
    let foreign = server.call_with(Some(stranger)).await;
    assert!(foreign.is_some(), "a client of another CA was served");

    let failures = server.edge.metrics().tls_handshake_failures();
    assert!(failures >= 2, "{failures} handshake failures counted");

    let mut good = server.good_client().await?;
    let decision = good.select_operator(request("+447400123456")).await?;
    let decision = decision.into_inner();
    let operator = decision.operator.context("an operator")?;
    assert!(["op-uk-a", "op-uk-b"].contains(&operator.operator_id.as_str()));
    assert_eq!(operator.system_id, format!("sys-{}", operator.operator_id));
    assert_eq!(decision.fallbacks.len(), 1);
    assert_eq!(decision.destination_e164, "+447400123456");
    assert_eq!(decision.network, "44:Three");
    assert_eq!(decision.routing_table_version, 7);
    assert!(decision.explain.is_empty(), "explain was not asked for");

    let explained = good
        .select_operator(SelectOperatorRequest {
            explain: true,
            ..request("+447400123456")
        })
        .await?
        .into_inner();
    assert_eq!(explained.explain.len(), 2);
    Ok(())
}

/// The refusals a raw TLS client sees name the reason: no certificate, or a
/// certificate no trusted CA signed; the server's own client gets through.
#[tokio::test]
async fn handshake_refusals_are_tls_alerts() -> anyhow::Result<()> {
    let server = Harness::start().await?;
    let other_ca = DevPki::generate()?;

    let without = raw_tls_exchange(&server, None).await;
    let alert = without.expect_err("a client without a certificate was let in");
    assert!(alert.contains("CertificateRequired"), "{alert}");

    let foreign = Some((&other_ca.client_cert, &other_ca.client_key));
    let alert = raw_tls_exchange(&server, foreign)
        .await
        .expect_err("a client of another CA was let in");
    // Both development CAs carry the same name, so the server finds a trust
    // anchor by name and then the signature fails to verify.
    let refusals = ["UnknownCA", "BadCertificate", "DecryptError"];
    assert!(refusals.iter().any(|r| alert.contains(r)), "{alert}");

    let own = Some((&server.pki.client_cert, &server.pki.client_key));
    raw_tls_exchange(&server, own)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Completes a handshake and reads the server's first HTTP/2 frame.
async fn raw_tls_exchange(
    server: &Harness,
    identity: Option<(&String, &String)>,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(server.pki.ca_cert.as_bytes()).unwrap();
    roots.add(ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let cert = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(vec![cert], key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec()];

    let addr = server.grpc_url.trim_start_matches("https://");
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(tls::SERVER_NAME).unwrap();
    let mut stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("{e:?}"))?;

    // With TLS 1.3 the server judges the client's certificate after the
    // client's side of the handshake is done: the verdict arrives on read.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut frame = [0u8; 9];
    stream
        .read_exact(&mut frame)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(())
}

/// Each refusal has the contract's code and `ErrorInfo` reason, and the
/// message says what was wrong.
#[tokio::test]
async fn refusals_carry_code_and_reason() -> anyhow::Result<()> {
    let server = Harness::start().await?;
    let mut client = server.good_client().await?;

    let not_ready = client
        .select_operator(request("+447400123456"))
        .await
        .unwrap_err();
    assert_eq!(not_ready.code(), Code::Unavailable);
    assert_eq!(reason(&not_ready), "NOT_READY");

    server.install_table().await?;
    let long_sender = SelectOperatorRequest {
        sender: "ACMEBANKLIMITED".into(),
        ..request("+447400123456")
    };
    let long_id = SelectOperatorRequest {
        message_id: "m".repeat(129),
        ..request("+447400123456")
    };
    let cases = [
        (
            request("+44 74x"),
            Code::InvalidArgument,
            "DESTINATION_INVALID",
        ),
        (long_sender, Code::InvalidArgument, "SENDER_INVALID"),
        (request("+33612345678"), Code::NotFound, "NO_ROUTE"),
        (long_id, Code::InvalidArgument, "REQUEST_INVALID"),
    ];
    for (req, code, expected) in cases {
        let status = client.select_operator(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(reason(&status), expected, "{status:?}");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.domain, "routing-engine");
        assert!(!status.message().is_empty());
    }

    // Far over any real request: refused before it is decoded.
    let huge = request(&"4".repeat(100 * 1024));
    let status = client.select_operator(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    Ok(())
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// `/ready` follows the table; `/metrics` counts decisions and leaks nothing.
#[tokio::test]
async fn management_endpoints_follow_the_table() -> anyhow::Result<()> {
    let server = Harness::start().await?;

    let (status, _) = server.get("/health").await?;
    assert_eq!(status, 200);
    let (status, body) = server.get("/ready").await?;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no routing table"), "{body}");

    server.install_table().await?;
    let (status, body) = server.get("/ready").await?;
    assert_eq!(status, 200, "{body}");
    let ready: HashMap<String, serde_json::Value> = serde_json::from_str(&body)?;
    assert_eq!(ready["table_version"], 7);
    assert_eq!(ready["operators"], 2);
    assert_eq!(ready["rules"], 2);

    let mut client = server.good_client().await?;
    client.select_operator(request("+447400123456")).await?;
    let _ = client.select_operator(request("+33612345678")).await;

    let (status, text) = server.get("/metrics").await?;
    assert_eq!(status, 200);
    let no_route = r#"routing_engine_decisions_total{operator="",outcome="NO_ROUTE"} 1"#;
    assert!(text.contains(no_route), "{text}");
    let chosen = text
        .lines()
        .filter(|l| l.starts_with(r#"routing_engine_decisions_total{operator="op-uk-"#))
        .filter(|l| l.contains(r#"outcome="ok""#))
        .count();
    assert_eq!(chosen, 1, "{text}");
    assert!(text.contains("routing_engine_table_version 7"), "{text}");
    assert!(!text.contains("sentinel-pw-"));
    Ok(())
}

/// With the table read from the files (the full shared data when present,
/// else the sample), whose operators all have SMPP passwords, no password
/// reaches a response or the metrics.
#[tokio::test]
async fn passwords_in_the_files_never_reach_callers() -> anyhow::Result<()> {
    let server = Harness::start().await?;
    let dirs = DataDirs::discover(Path::new(env!("CARGO_MANIFEST_DIR")));
    let files = tokio::task::spawn_blocking(move || dirs.load()).await??;
    server
        .edge
        .install(RoutingTable::build(files.source)?)
        .await;

    let mut client = server.good_client().await?;
    let explained = SelectOperatorRequest {
        explain: true,
        ..request("+447400123456")
    };
    let decision = client.select_operator(explained).await?.into_inner();
    assert!(decision.operator.is_some());
    assert!(!decision.explain.is_empty());

    let (_, metrics) = server.get("/metrics").await?;
    for text in [format!("{decision:?}"), metrics] {
        assert!(!text.contains("sentinel-pw-"), "{text}");
        assert!(!text.contains("sample-pw-"), "{text}");
    }
    Ok(())
}
