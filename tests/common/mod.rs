//! Helpers shared by the integration tests: where PostgreSQL, Redis and NATS
//! are (`services`), a PostgreSQL database of one's own per test, and where
//! the repository and its data are.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use routing_engine::adapters::postgres::READ_ONLY_ROLE;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Executor};

/// Every table of the routing schema.
pub const TABLES: [&str; 6] = [
    "operators",
    "operator_secrets",
    "number_ranges",
    "ported_numbers",
    "rules",
    "routing_table_version",
];

pub fn server_url() -> String {
    services::postgres_url()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    server: PgConnectOptions,
}

impl TestDb {
    pub async fn create(test: &str) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "routing_test_{test}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let server = PgConnectOptions::from_str(&server_url()).expect("TEST_DATABASE_URL");

        let mut conn = server
            .connect()
            .await
            .expect("the test server is reachable");
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .unwrap();
        TestDb { name, server }
    }

    /// The URL of this database for the administrator, as `load` takes it.
    pub fn admin_url(&self) -> String {
        let url = server_url();
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base.to_string(), format!("?{query}")),
            None => (url.clone(), String::new()),
        };
        let authority_end = base.find("://").map_or(0, |i| i + 3);
        let base = match base[authority_end..].find('/') {
            Some(slash) => base[..authority_end + slash].to_string(),
            None => base,
        };
        format!("{base}/{}{query}", self.name)
    }

    pub async fn admin_pool(&self) -> PgPool {
        let options = self.server.clone().database(&self.name);
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .unwrap()
    }

    pub async fn read_only_pool(&self) -> PgPool {
        self.read_only_pool_sized(2).await
    }

    /// How the read-only role connects to this database.
    pub fn read_only_options(&self) -> PgConnectOptions {
        let mut options = self
            .server
            .clone()
            .database(&self.name)
            .username(READ_ONLY_ROLE);
        if let Ok(password) = std::env::var("TEST_RO_PASSWORD") {
            options = options.password(&password);
        }
        options
    }

    /// A pool of `size` connections as the read-only role.
    pub async fn read_only_pool_sized(&self, size: u32) -> PgPool {
        let mut options = self
            .server
            .clone()
            .database(&self.name)
            .username(READ_ONLY_ROLE);
        if let Ok(password) = std::env::var("TEST_RO_PASSWORD") {
            options = options.password(&password);
        }
        PgPoolOptions::new()
            .max_connections(size)
            .connect_with(options)
            .await
            .expect("the read-only role logs in")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (name, server) = (self.name.clone(), self.server.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut conn = server.connect().await?;
                let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                conn.execute(drop.as_str()).await.map(|_| ())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

pub mod pki;
pub mod proxy;
pub mod services;
pub mod traffic;
