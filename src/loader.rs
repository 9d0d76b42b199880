//! The `load` command: checks the routing files, and only when every row is
//! valid replaces the routing table in PostgreSQL with them.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;

use crate::adapters::postgres::{admin_load, LoadReport};
use crate::source::files::{self, LoadError};

/// Reads and checks `carrier_dir` and `routing_dir`, then writes them through
/// `admin_database_url` (a role that owns the tables). Each problem is printed
/// to stderr as `file:line: message`; on any problem nothing is written and
/// the error is a [`LoadError`].
pub async fn run_load(
    admin_database_url: &str,
    carrier_dir: &Path,
    routing_dir: &Path,
) -> anyhow::Result<LoadReport> {
    let (carrier, routing) = (carrier_dir.to_path_buf(), routing_dir.to_path_buf());
    let checked = tokio::task::spawn_blocking(move || files::load(&carrier, &routing))
        .await
        .context("reading the routing files stopped")?;

    let files = match checked {
        Ok(files) => files,
        Err(LoadError::Invalid(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            tracing::error!(
                problems = problems.len(),
                "the routing files have problems; nothing was written"
            );
            return Err(LoadError::Invalid(problems).into());
        }
    };

    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(admin_database_url)
        .await
        .context("connecting to PostgreSQL")?;

    let report = admin_load(&pool, &files).await;
    pool.close().await;
    Ok(report?)
}
