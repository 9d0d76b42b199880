//! Where the integration tests find PostgreSQL, Redis and NATS with
//! JetStream: containers started once per test binary when a Docker engine
//! is there (`ROUTING_ENGINE_TEST_CONTAINERS=1`, or a Docker socket that
//! answers), otherwise the servers named by `TEST_DATABASE_URL`,
//! `REDIS_URL_TEST` and `NATS_URL_TEST`, or their loopback defaults.
//!
//! Limitation: the container path needs a Docker engine, which the machine
//! this harness was written on lacks; only CI's `test` job exercises it.

use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

/// Connection URLs of the three services for this test binary.
pub struct Services {
    pub postgres_url: String,
    pub postgres_addr: SocketAddr,
    pub redis_url: String,
    pub nats_url: String,
}

pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        if use_containers() {
            // The blocking runner brings its own runtime, which may not be
            // started inside a test's: start the containers on a thread.
            std::thread::spawn(containers::start).join().unwrap()
        } else {
            from_env()
        }
    })
}

/// The administrator's URL of the PostgreSQL server.
pub fn postgres_url() -> String {
    services().postgres_url.clone()
}

/// The PostgreSQL server's address, for proxies put in front of it.
pub fn postgres_addr() -> SocketAddr {
    services().postgres_addr
}

pub fn redis_url() -> String {
    services().redis_url.clone()
}

pub fn nats_url() -> String {
    services().nats_url.clone()
}

fn use_containers() -> bool {
    match std::env::var("ROUTING_ENGINE_TEST_CONTAINERS").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => docker_answers(),
    }
}

/// True when the local Docker socket answers a ping.
fn docker_answers() -> bool {
    let Ok(mut socket) = std::os::unix::net::UnixStream::connect("/var/run/docker.sock") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
    let ping = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";
    let mut reply = String::new();
    socket.write_all(ping).is_ok()
        && socket.read_to_string(&mut reply).is_ok()
        && reply.starts_with("HTTP/1.")
        && reply.contains(" 200 ")
}

fn from_env() -> Services {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let postgres_url = var(
        "TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    );
    Services {
        postgres_addr: addr_of(&postgres_url, 5432),
        postgres_url,
        redis_url: var("REDIS_URL_TEST", "redis://127.0.0.1:6379"),
        nats_url: var("NATS_URL_TEST", "nats://127.0.0.1:4222"),
    }
}

/// `host:port` of a URL such as `postgres://user@host:port/db`.
fn addr_of(url: &str, default_port: u16) -> SocketAddr {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .expect("the database host resolves")
        .next()
        .expect("the database host has an address")
}

mod containers {
    use testcontainers_modules::nats::{Nats, NatsServerCmd};
    use testcontainers_modules::postgres::Postgres;
    use testcontainers_modules::redis::Redis;
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::ImageExt;

    use super::{addr_of, Services};

    /// Starts the three containers. They are never dropped, so they live
    /// as long as the Docker engine: on CI that is the runner's lifetime.
    pub fn start() -> Services {
        let postgres = Postgres::default().with_host_auth().start().unwrap();
        let redis = Redis::default().start().unwrap();
        let jetstream = NatsServerCmd::default().with_jetstream();
        let nats = Nats::default().with_cmd(&jetstream).start().unwrap();

        let host = postgres.get_host().unwrap().to_string();
        let pg_port = postgres.get_host_port_ipv4(5432).unwrap();
        let postgres_url = format!("postgres://postgres@{host}:{pg_port}/postgres");
        let services = Services {
            postgres_addr: addr_of(&postgres_url, 5432),
            postgres_url,
            redis_url: format!("redis://{host}:{}", redis.get_host_port_ipv4(6379).unwrap()),
            nats_url: format!("nats://{host}:{}", nats.get_host_port_ipv4(4222).unwrap()),
        };
        std::mem::forget((postgres, redis, nats));
        services
    }
}
