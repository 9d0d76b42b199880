//! Proves that no secret leaves the running service: `serve` is started as
//! in production with debug logging, its secrets marked (database and Redis
//! passwords, the NKey seed, the TLS private key; the operators' SMPP
//! passwords sit in the database it reads), and driven through every path
//! that logs: start, decisions and each refusal status, a refused handshake,
//! a routing table reload, certificate rotation applied and refused, Redis
//! refusing its password, NATS unreachable, PostgreSQL lost and back, and
//! shutdown. Its whole output, /ready and /metrics must hold none of them,
//! and must show that each path was taken.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sqlx::Executor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::proxy::Proxy;
use common::{repo_root, TestDb};
use routing_engine::devmode::DevPki;
use routing_engine::loader::run_load;
use routing_engine::proto::routing_engine_client::RoutingEngineClient;
use routing_engine::proto::SelectOperatorRequest;
use routing_engine::server::tls::{self, PemFiles};
use routing_engine::source::files::DataDirs;

const DB_PASSWORD: &str = "sentinel-pw-leak-test-database";
const REDIS_PASSWORD: &str = "sentinel-pw-leak-test-redis";

/// The test Redis's URL with a password it does not expect.
fn with_password(redis_url: &str) -> String {
    let password = format!("redis://:{REDIS_PASSWORD}@");
    redis_url.replacen("redis://", &password, 1)
}

async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// The body lines of a PEM private key: what a leak would show.
fn key_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(str::to_owned)
        .collect()
}

fn write_tls(dir: &Path, pki: &DevPki) {
    std::fs::write(dir.join("tls.crt"), &pki.server_cert).unwrap();
    std::fs::write(dir.join("tls.key"), &pki.server_key).unwrap();
    std::fs::write(dir.join("ca.crt"), &pki.ca_cert).unwrap();
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// Polls `check` until it holds; the bound only stops a broken build from
/// hanging, nothing is measured.
async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

fn log_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("out.log")).unwrap_or_default()
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn request(destination: &str, sender: &str, message_id: &str) -> SelectOperatorRequest {
    SelectOperatorRequest {
        message_id: message_id.into(),
        account_id: "acme-bank".into(),
        destination: destination.into(),
        sender: sender.into(),
        explain: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_or_endpoints_on_any_path() {
    let db = TestDb::create("leaks").await;
    let dirs = DataDirs::discover(&repo_root());
    run_load(&db.admin_url(), &dirs.carrier, &dirs.routing)
        .await
        .unwrap();
    let postgres = Proxy::start(common::services::postgres_addr(), true).await;

    let temp = tempfile::tempdir().unwrap();
    let tls_dir = temp.path().join("tls");
    std::fs::create_dir(&tls_dir).unwrap();
    let pki = DevPki::generate().unwrap();
    write_tls(&tls_dir, &pki);
    let seed = nkeys::KeyPair::new_user().seed().unwrap();
    std::fs::write(temp.path().join("nkey.seed"), format!("{seed}\n")).unwrap();

    let mut secrets = vec![DB_PASSWORD.to_owned(), REDIS_PASSWORD.to_owned(), seed];
    secrets.extend(key_lines(&pki.server_key));
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().await));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port().await));
    let nats_closed = free_port().await;

    let out = std::fs::File::create(temp.path().join("out.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_routing-engine"))
        .arg("serve")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!(
                "postgres://routing_engine_ro:{DB_PASSWORD}@{}/{}",
                postgres.addr, db.name
            ),
        )
        // The local Redis has no password: it refuses this one, and the
        // service runs on its local limits.
        .env("REDIS_URL", with_password(&common::services::redis_url()))
        .env("NATS_URL", format!("nats://127.0.0.1:{nats_closed}"))
        .env("NATS_CREDS_FILE", temp.path().join("nkey.seed"))
        .env("TLS_DIR", &tls_dir)
        .env("TLS_RELOAD_POLL_MS", "100")
        .env("RELOAD_POLL_MS", "100")
        .env("GRPC_ADDR", grpc.to_string())
        .env("HTTP_ADDR", http.to_string())
        .env(
            "RUST_LOG",
            "debug,h2=info,hyper=info,rustls=info,tower=info",
        )
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let mut child = Stop(child);

    wait_for("the service to be ready", async || {
        matches!(get(http, "/ready").await, Some((200, _)))
    })
    .await;

    // Decisions, and each refusal the data can produce.
    let client_files = PemFiles {
        cert: pki.client_cert.clone().into_bytes(),
        key: pki.client_key.clone().into_bytes(),
        ca: pki.ca_cert.clone().into_bytes(),
    };
    let channel = tls::client_channel(&format!("https://{grpc}"), &client_files)
        .await
        .unwrap();
    let mut client = RoutingEngineClient::new(channel);
    let mut answers = Vec::new();
    let cases = [
        ("+447400123456", "ACMEBANK", "m-1"),
        ("+44 74x", "ACMEBANK", "m-2"),
        ("+447400123456", "ACMEBANKLIMITED", "m-3"),
        ("+447400123456", "ACMEBANK", ""),
        ("+999123", "ACMEBANK", "m-5"),
    ];
    for (destination, sender, id) in cases {
        let answer = client
            .select_operator(request(destination, sender, id))
            .await;
        answers.push(format!("{answer:?}"));
    }
    assert!(answers[0].starts_with("Ok("), "{}", answers[0]);

    // A caller of another CA.
    let stranger = DevPki::generate().unwrap();
    let stranger_files = PemFiles {
        cert: stranger.client_cert.into_bytes(),
        key: stranger.client_key.into_bytes(),
        ca: pki.ca_cert.clone().into_bytes(),
    };
    let refused = tls::client_channel(&format!("https://{grpc}"), &stranger_files).await;
    if let Ok(channel) = refused {
        let call = RoutingEngineClient::new(channel)
            .select_operator(request("+447400123456", "ACMEBANK", "m-6"))
            .await;
        assert!(call.is_err(), "a stranger was served");
    }

    // A routing table change, then certificate rotation: applied, refused.
    let admin = db.admin_pool().await;
    admin
        .execute("UPDATE operators SET tps_limit = tps_limit + 1")
        .await
        .unwrap();
    wait_for("the table reload", async || {
        log_text(temp.path()).contains("routing table reloaded")
    })
    .await;
    let renewed = DevPki::generate().unwrap();
    secrets.extend(key_lines(&renewed.server_key));
    write_tls(&tls_dir, &renewed);
    wait_for("the new certificate", async || {
        log_text(temp.path()).contains("new TLS certificate in use")
    })
    .await;
    std::fs::write(tls_dir.join("tls.key"), &pki.server_key).unwrap();
    wait_for("the refused certificate", async || {
        log_text(temp.path()).contains("TLS certificate, key or CA bundle refused")
    })
    .await;

    // PostgreSQL lost and back.
    postgres.set_up(false);
    admin
        .execute("UPDATE operators SET tps_limit = tps_limit + 1")
        .await
        .unwrap();
    wait_for("the failed reload", async || {
        log_text(temp.path()).contains("PostgreSQL call failed")
    })
    .await;
    postgres.set_up(true);

    let (_, ready) = get(http, "/ready").await.unwrap();
    let (_, metrics) = get(http, "/metrics").await.unwrap();
    assert!(
        metrics.contains("routing_engine_tls_reloads_total"),
        "{metrics}"
    );

    // SIGTERM, and the shutdown lines.
    let pid = child.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let _ = child.0.wait();
    let logs = log_text(temp.path());

    for path in [
        "effective configuration",
        "routing table loaded",
        "route refused",
        "TLS handshake refused",
        "shared throughput limits unavailable",
        "health bus unavailable",
        "routing table reloaded",
        "new TLS certificate in use",
        "refused; the previous ones stay in use",
        "PostgreSQL call failed",
        "shutting down",
    ] {
        assert!(
            logs.contains(path),
            "the path {path:?} was not taken:\n{logs}"
        );
    }
    let everything = [logs, ready, metrics, answers.join("\n")];
    for text in &everything {
        assert!(!text.contains("sentinel-pw-"), "a password leaked:\n{text}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret leaked:\n{text}");
        }
    }
}
