//! The routing table in PostgreSQL: the service reads it through [`PgStore`]
//! as a read-only role, and the `load` command replaces it with [`admin_load`].

use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::core::model::{NumberRange, Operator, PortedNumber, Rule, RuleTarget, TableSource};
use crate::core::ports::{PortError, TableStore};
use crate::source::fields::{self, ANY_ACCOUNT};
use crate::source::files::LoadedFiles;

/// The schema, its triggers and the read-only role, from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!();

/// The channel every committed change announces the new version on.
pub const CHANGE_CHANNEL: &str = "routing_table_changed";

/// The role the service connects as; it cannot read operator passwords.
pub const READ_ONLY_ROLE: &str = "routing_engine_ro";

const WHAT: &str = "the routing table in PostgreSQL";

/// Reads the routing table; works connected as [`READ_ONLY_ROLE`].
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Whether `load` reads the ported numbers into the snapshot; when not,
    /// the router asks [`TableStore::ported_network`] per destination.
    ported_in_snapshot: bool,
}

type PgTx<'a> = Transaction<'a, Postgres>;
type OperatorRow = (String, String, String, String, i32, i64, bool, bool);
type RangeRow = (String, i16, String);
type RuleRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    i64,
    String,
    Option<String>,
);

impl PgStore {
    pub fn new(pool: PgPool) -> PgStore {
        PgStore {
            pool,
            ported_in_snapshot: true,
        }
    }

    /// Leaves ported numbers out of `load`: for tables too large to hold in
    /// every replica, looked up per destination (through the cache) instead.
    pub fn without_ported_in_snapshot(mut self) -> PgStore {
        self.ported_in_snapshot = false;
        self
    }

    /// Connects a small pool to `database_url`.
    pub async fn connect(database_url: &str) -> Result<PgStore, PortError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(database_url)
            .await
            .map_err(|error| port_error(error, Duration::from_secs(5)))?;
        Ok(PgStore::new(pool))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn error(&self, error: sqlx::Error) -> PortError {
        port_error(error, self.pool.options().get_acquire_timeout())
    }

    async fn read_all(&self, tx: &mut PgTx<'_>) -> Result<TableSource, PortError> {
        let version: i64 = sqlx::query_scalar("SELECT version FROM routing_table_version")
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.error(e))?;

        let operators: Vec<OperatorRow> = sqlx::query_as(
            "SELECT id, name, system_id, smpp_host, smpp_port, tps_limit, \
             alphanumeric_sender, enabled FROM operators ORDER BY id",
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| self.error(e))?;

        let ranges: Vec<RangeRow> = sqlx::query_as(
            "SELECT prefix, country_code, network FROM number_ranges ORDER BY prefix",
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| self.error(e))?;

        let ported: Vec<(String, String)> = if self.ported_in_snapshot {
            sqlx::query_as("SELECT e164, network FROM ported_numbers ORDER BY e164")
                .fetch_all(&mut **tx)
                .await
                .map_err(|e| self.error(e))?
        } else {
            Vec::new()
        };

        let rules: Vec<RuleRow> = sqlx::query_as(
            "SELECT id, account, match_type, match_value, priority, operator_id, weight, \
             cost_micros, sender_type, window_utc FROM rules ORDER BY id",
        )
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| self.error(e))?;

        Ok(TableSource {
            version: number("the version", version)?,
            operators: operators
                .into_iter()
                .map(operator)
                .collect::<Result<_, _>>()?,
            ranges: ranges.into_iter().map(range).collect::<Result<_, _>>()?,
            ported: ported
                .into_iter()
                .map(|(e164, network)| PortedNumber { e164, network })
                .collect(),
            rules: rules.into_iter().map(rule).collect::<Result<_, _>>()?,
        })
    }
}

#[async_trait]
impl TableStore for PgStore {
    async fn load(&self) -> Result<TableSource, PortError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| self.error(e))?;

        let source = self.read_all(&mut tx).await?;

        tx.commit().await.map_err(|e| self.error(e))?;
        tracing::debug!(
            version = source.version,
            operators = source.operators.len(),
            rules = source.rules.len(),
            ranges = source.ranges.len(),
            ported = source.ported.len(),
            "routing table read from PostgreSQL"
        );
        Ok(source)
    }

    async fn version(&self) -> Result<u64, PortError> {
        let version: i64 = sqlx::query_scalar("SELECT version FROM routing_table_version")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        number("the version", version)
    }

    async fn ported_network(&self, e164: &str) -> Result<Option<String>, PortError> {
        sqlx::query_scalar("SELECT network FROM ported_numbers WHERE e164 = $1")
            .bind(e164)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error(e))
    }
}

fn port_error(error: sqlx::Error, acquire_timeout: Duration) -> PortError {
    // Callers decide how loud a failure is: the reloader reports outages
    // once, and per-request lookups must not log at all above debug.
    tracing::debug!(%error, "PostgreSQL call failed");
    match error {
        sqlx::Error::PoolTimedOut => PortError::Timeout {
            what: WHAT,
            after: acquire_timeout,
        },
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => PortError::Corrupt {
            what: WHAT,
            detail: error.to_string(),
        },
        other => PortError::Unavailable {
            what: WHAT,
            detail: other.to_string(),
        },
    }
}

fn corrupt(detail: String) -> PortError {
    PortError::Corrupt { what: WHAT, detail }
}

/// A database integer as the model's unsigned type.
fn number<From, To>(what: &str, value: From) -> Result<To, PortError>
where
    From: Copy + std::fmt::Display,
    To: TryFrom<From>,
{
    To::try_from(value).map_err(|_| corrupt(format!("{what} {value} is out of range")))
}

fn operator(row: OperatorRow) -> Result<Operator, PortError> {
    let (id, name, system_id, smpp_host, port, tps, alphanumeric_sender, enabled) = row;
    Ok(Operator {
        smpp_port: number(&format!("operator {id}: smpp_port"), port)?,
        tps_limit: number(&format!("operator {id}: tps_limit"), tps)?,
        id,
        name,
        system_id,
        smpp_host,
        alphanumeric_sender,
        enabled,
    })
}

fn range(row: RangeRow) -> Result<NumberRange, PortError> {
    let (prefix, country_code, network) = row;
    Ok(NumberRange {
        country_code: number(&format!("range {prefix}: country_code"), country_code)?,
        prefix,
        network,
    })
}

fn rule(row: RuleRow) -> Result<Rule, PortError> {
    let (id, account, kind, value, priority, operator_id, weight, cost, sender, window) = row;
    let bad = |message: String| corrupt(format!("rule {id}: {message}"));

    Ok(Rule {
        account: (account != ANY_ACCOUNT).then_some(account),
        matcher: fields::parse_match(&kind, &value).map_err(bad)?,
        priority: number(&format!("rule {id}: priority"), priority)?,
        target: operator_id.map_or(RuleTarget::Block, RuleTarget::Operator),
        weight: number(&format!("rule {id}: weight"), weight)?,
        cost_micros: number(&format!("rule {id}: cost_micros"), cost)?,
        sender: fields::parse_sender(&sender).map_err(bad)?,
        window: fields::parse_window(window.as_deref().unwrap_or("")).map_err(bad)?,
        id,
    })
}

/// What [`admin_load`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadReport {
    /// The table version after the load.
    pub version: u64,
    pub operators: usize,
    pub rules: usize,
    pub ranges: usize,
    pub ported: usize,
    /// Time spent writing, migrations included.
    pub elapsed: Duration,
}

/// Why [`admin_load`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("migrating the routing schema failed: {0}")]
    Migrate(#[from] MigrateError),
    #[error("writing the routing table failed: {0}")]
    Write(#[from] sqlx::Error),
    #[error("{what} {value} does not fit its database column")]
    OutOfRange { what: String, value: u64 },
}

/// Brings the schema up to date, then replaces every row of the routing
/// table with `files` in one transaction, bumping the version once. Nothing
/// is written when anything fails. Needs a role that owns the tables.
pub async fn admin_load(pool: &PgPool, files: &LoadedFiles) -> Result<LoadReport, AdminError> {
    let started = tokio::time::Instant::now();
    MIGRATOR.run(pool).await?;

    let mut tx = pool.begin().await?;
    // Concurrent loads queue here instead of interleaving their rows.
    sqlx::query("SELECT version FROM routing_table_version FOR UPDATE")
        .execute(&mut *tx)
        .await?;

    for table in [
        "rules",
        "operator_secrets",
        "ported_numbers",
        "number_ranges",
        "operators",
    ] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await?;
    }

    insert_operators(&mut tx, files).await?;
    insert_ranges(&mut tx, &files.source.ranges).await?;
    insert_ported(&mut tx, &files.source.ported).await?;
    insert_rules(&mut tx, &files.source.rules).await?;

    let version: i64 = sqlx::query_scalar("SELECT version FROM routing_table_version")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;

    let source = &files.source;
    let report = LoadReport {
        version: version as u64,
        operators: source.operators.len(),
        rules: source.rules.len(),
        ranges: source.ranges.len(),
        ported: source.ported.len(),
        elapsed: started.elapsed(),
    };
    tracing::info!(
        version = report.version,
        operators = report.operators,
        rules = report.rules,
        ranges = report.ranges,
        ported = report.ported,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "routing table replaced"
    );
    Ok(report)
}

async fn insert_operators(tx: &mut PgTx<'_>, files: &LoadedFiles) -> Result<(), AdminError> {
    let operators = &files.source.operators;
    let column = |f: fn(&Operator) -> &str| -> Vec<&str> { operators.iter().map(f).collect() };

    sqlx::query(
        "INSERT INTO operators (id, name, system_id, smpp_host, smpp_port, tps_limit, \
         alphanumeric_sender, enabled) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::int4[], $6::int8[], $7::bool[], $8::bool[])",
    )
    .bind(column(|o| &o.id))
    .bind(column(|o| &o.name))
    .bind(column(|o| &o.system_id))
    .bind(column(|o| &o.smpp_host))
    .bind(
        operators
            .iter()
            .map(|o| i32::from(o.smpp_port))
            .collect::<Vec<_>>(),
    )
    .bind(
        operators
            .iter()
            .map(|o| i64::from(o.tps_limit))
            .collect::<Vec<_>>(),
    )
    .bind(
        operators
            .iter()
            .map(|o| o.alphanumeric_sender)
            .collect::<Vec<_>>(),
    )
    .bind(operators.iter().map(|o| o.enabled).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;

    sqlx::query(
        "INSERT INTO operator_secrets (operator_id, password) \
         SELECT * FROM UNNEST($1::text[], $2::text[])",
    )
    .bind(
        files
            .secrets
            .iter()
            .map(|s| s.operator_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        files
            .secrets
            .iter()
            .map(|s| s.password.expose())
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_ranges(tx: &mut PgTx<'_>, ranges: &[NumberRange]) -> Result<(), AdminError> {
    let country_codes = ranges
        .iter()
        .map(|r| fit::<i16>("country_code", u64::from(r.country_code)))
        .collect::<Result<Vec<_>, _>>()?;

    sqlx::query(
        "INSERT INTO number_ranges (prefix, country_code, network) \
         SELECT * FROM UNNEST($1::text[], $2::int2[], $3::text[])",
    )
    .bind(ranges.iter().map(|r| r.prefix.as_str()).collect::<Vec<_>>())
    .bind(country_codes)
    .bind(
        ranges
            .iter()
            .map(|r| r.network.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_ported(tx: &mut PgTx<'_>, ported: &[PortedNumber]) -> Result<(), AdminError> {
    sqlx::query(
        "INSERT INTO ported_numbers (e164, network) \
         SELECT * FROM UNNEST($1::text[], $2::text[])",
    )
    .bind(ported.iter().map(|p| p.e164.as_str()).collect::<Vec<_>>())
    .bind(
        ported
            .iter()
            .map(|p| p.network.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_rules(tx: &mut PgTx<'_>, rules: &[Rule]) -> Result<(), AdminError> {
    let matches: Vec<(&str, String)> = rules
        .iter()
        .map(|r| fields::match_columns(&r.matcher))
        .collect();
    let costs = rules
        .iter()
        .map(|r| fit::<i64>("cost_micros", r.cost_micros))
        .collect::<Result<Vec<_>, _>>()?;

    sqlx::query(
        "INSERT INTO rules (id, account, match_type, match_value, priority, operator_id, \
         weight, cost_micros, sender_type, window_utc) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
         $6::text[], $7::int8[], $8::int8[], $9::text[], $10::text[])",
    )
    .bind(rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
    .bind(
        rules
            .iter()
            .map(|r| r.account.as_deref().unwrap_or(ANY_ACCOUNT))
            .collect::<Vec<_>>(),
    )
    .bind(matches.iter().map(|(kind, _)| *kind).collect::<Vec<_>>())
    .bind(
        matches
            .iter()
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rules
            .iter()
            .map(|r| i64::from(r.priority))
            .collect::<Vec<_>>(),
    )
    .bind(
        rules
            .iter()
            .map(|r| match &r.target {
                RuleTarget::Operator(id) => Some(id.as_str()),
                RuleTarget::Block => None,
            })
            .collect::<Vec<_>>(),
    )
    .bind(
        rules
            .iter()
            .map(|r| i64::from(r.weight))
            .collect::<Vec<_>>(),
    )
    .bind(costs)
    .bind(
        rules
            .iter()
            .map(|r| fields::sender_column(r.sender))
            .collect::<Vec<_>>(),
    )
    .bind(
        rules
            .iter()
            .map(|r| r.window.map(|w| w.to_string()))
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A model number as the database column's signed type.
fn fit<T: TryFrom<u64>>(what: &str, value: u64) -> Result<T, AdminError> {
    T::try_from(value).map_err(|_| AdminError::OutOfRange {
        what: what.to_string(),
        value,
    })
}

/// Wakes `changed` on every committed change announced on
/// [`CHANGE_CHANNEL`], reconnecting after failures. Runs until dropped.
///
/// Notifications only make reloads prompt: the reloader also polls the
/// version, so a notification lost while disconnected delays a change by
/// one poll interval at most.
pub async fn forward_changes(pool: PgPool, changed: std::sync::Arc<tokio::sync::Notify>) {
    loop {
        if let Err(e) = listen(&pool, &changed).await {
            tracing::debug!(error = %e, "change notifications interrupted");
        }
        changed.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen(pool: &PgPool, changed: &tokio::sync::Notify) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(CHANGE_CHANNEL).await?;

    // A change committed while the listener was connecting sent its
    // notification to nobody: have the version checked once now.
    changed.notify_one();
    loop {
        listener.recv().await?;
        changed.notify_one();
    }
}
