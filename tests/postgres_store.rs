//! Proves the PostgreSQL routing table against a real server: what the files
//! hold is what the read-only role reads, that role can do nothing else, bad
//! files write nothing, and every committed change is versioned and announced.
//!
//! The server comes from `TEST_DATABASE_URL` (default: trust auth as
//! `postgres` on 127.0.0.1). Each test works in a database of its own. The
//! read-only role logs in without a password unless `TEST_RO_PASSWORD` is set.

use std::fs;
use std::path::Path;
use std::time::Duration;

mod common;

use common::{repo_root, TestDb, TABLES};
use routing_engine::adapters::postgres::{
    admin_load, AdminError, PgStore, CHANGE_CHANNEL, READ_ONLY_ROLE,
};
use routing_engine::core::model::{RuleTarget, TableSource};
use routing_engine::core::ports::TableStore;
use routing_engine::loader::run_load;
use routing_engine::source::files::{DataDirs, LoadError, LoadedFiles};
use sqlx::postgres::{PgListener, PgPool};
use sqlx::Executor;

/// A copy of the sample data in a temporary directory, to break.
fn sample_copy() -> (tempfile::TempDir, DataDirs) {
    let dir = tempfile::tempdir().unwrap();
    let sample = DataDirs::sample(&repo_root());
    let copy = DataDirs {
        carrier: dir.path().join("carrier"),
        routing: dir.path().join("routing"),
        shared: false,
    };

    for (from, to) in [
        (&sample.carrier, &copy.carrier),
        (&sample.routing, &copy.routing),
    ] {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    (dir, copy)
}

/// Replaces the first occurrence of `from` in a file, returning its line.
fn edit(path: &Path, from: &str, to: &str) -> u64 {
    let text = fs::read_to_string(path).unwrap();
    let at = text
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} is not in {}", path.display()));
    fs::write(path, text.replacen(from, to, 1)).unwrap();
    text[..at].matches('\n').count() as u64 + 1
}

/// The table with every list in a fixed order, to compare two sources.
fn sorted(mut source: TableSource) -> TableSource {
    source.operators.sort_by(|a, b| a.id.cmp(&b.id));
    source.rules.sort_by(|a, b| a.id.cmp(&b.id));
    source.ranges.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    source.ported.sort_by(|a, b| a.e164.cmp(&b.e164));
    source
}

async fn load_sample(db: &TestDb) -> u64 {
    let sample = DataDirs::sample(&repo_root());
    let report = run_load(&db.admin_url(), &sample.carrier, &sample.routing)
        .await
        .expect("the sample loads");
    report.version
}

/// Row counts of every table, as the administrator sees them.
async fn counts(pool: &PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        counts.push(sqlx::query_scalar(&sql).fetch_one(pool).await.unwrap());
    }
    counts
}

fn is_permission_denied(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42501")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_loads_and_reads_back_as_the_read_only_role() {
    let db = TestDb::create("full").await;
    let dirs = DataDirs::discover(&repo_root());
    if dirs.shared {
        println!("loading the full data from {}", dirs.routing.display());
    } else {
        println!("../shared is absent: loading the sample data set from sample/ instead");
    }

    let started = tokio::time::Instant::now();
    let report = run_load(&db.admin_url(), &dirs.carrier, &dirs.routing)
        .await
        .expect("the data loads");
    println!(
        "load of {} ranges, {} ported numbers, {} rules: {:?} in total, {:?} writing",
        report.ranges,
        report.ported,
        report.rules,
        started.elapsed(),
        report.elapsed
    );

    let files = dirs.load().unwrap();
    let pool = db.read_only_pool().await;
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, READ_ONLY_ROLE);
    let store = PgStore::new(pool);
    let stored = sorted(
        store
            .load()
            .await
            .expect("the read-only role reads the table"),
    );
    let expected = sorted(files.source.clone());

    assert_eq!(stored.version, report.version);
    assert_eq!(store.version().await.unwrap(), report.version);
    assert_eq!(stored.operators, expected.operators);
    assert_eq!(stored.rules, expected.rules);
    assert_eq!(stored.ranges.len(), expected.ranges.len());
    assert_eq!(stored.ported.len(), expected.ported.len());
    assert_eq!(stored.ranges, expected.ranges);
    assert_eq!(stored.ported, expected.ported);
    assert!(stored.rules.iter().any(|r| r.target == RuleTarget::Block));
    if dirs.shared {
        assert_eq!(stored.operators.len(), 10);
        assert_eq!(stored.rules.len(), 31);
        assert!(stored.ranges.len() > 28_000 && stored.ported.len() > 100_000);
    }

    let ported = &expected.ported[expected.ported.len() / 2];
    let network = store.ported_network(&ported.e164).await.unwrap();
    assert_eq!(network.as_deref(), Some(ported.network.as_str()));
    assert_eq!(store.ported_network("+10000000000").await.unwrap(), None);

    for secret in &files.secrets {
        let password = secret.password.expose();
        assert!(!format!("{stored:?}").contains(password));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_role_can_read_and_nothing_else() {
    let db = TestDb::create("ro").await;
    load_sample(&db).await;
    let admin = db.admin_pool().await;
    let read_only = db.read_only_pool().await;

    let mut statements = vec![
        "INSERT INTO operators VALUES ('op-x', 'X', 'x', 'smpp.x', 2775, 1, true, true)".into(),
        "INSERT INTO operator_secrets VALUES ('op-legacy', 'x') ON CONFLICT DO NOTHING".into(),
        "INSERT INTO number_ranges VALUES ('999123', 999, 'X')".into(),
        "INSERT INTO ported_numbers VALUES ('+447000000001', '44:EE')".into(),
        "INSERT INTO rules (id, account, match_type, match_value, priority, operator_id, \
         weight, cost_micros, sender_type) \
         VALUES ('r-x', '*', 'default', '', 9, 'op-global-a', 1, 1, 'any')"
            .into(),
        "INSERT INTO routing_table_version (singleton, version) VALUES (true, 0) \
         ON CONFLICT DO NOTHING"
            .into(),
        "UPDATE operators SET enabled = NOT enabled".into(),
        "UPDATE operator_secrets SET password = 'x'".into(),
        "UPDATE number_ranges SET network = ''".into(),
        "UPDATE ported_numbers SET network = network".into(),
        "UPDATE rules SET weight = weight + 1 WHERE operator_id IS NOT NULL".into(),
        "UPDATE routing_table_version SET version = version + 1".into(),
        "CREATE TABLE intruder (x int)".to_string(),
        "CREATE TABLE public.intruder (x int)".to_string(),
        "SELECT password FROM operator_secrets".to_string(),
    ];
    for table in TABLES {
        // Rules still name every operator; delete only the ones they do not.
        let unused =
            " WHERE id NOT IN (SELECT operator_id FROM rules WHERE operator_id IS NOT NULL)";
        let filter = if table == "operators" { unused } else { "" };
        statements.push(format!("DELETE FROM {table}{filter}"));
        statements.push(format!("TRUNCATE {table} CASCADE"));
    }

    for sql in &statements {
        let denied = read_only.execute(sql.as_str()).await;
        match &denied {
            Err(error) if is_permission_denied(error) => {}
            other => panic!("the read-only role ran `{sql}`: {other:?}"),
        }

        let mut tx = admin.begin().await.unwrap();
        let allowed = tx.execute(sql.as_str()).await;
        assert!(
            allowed.is_ok(),
            "the administrator could not run `{sql}`: {allowed:?}"
        );
        tx.rollback().await.unwrap();
    }

    for table in TABLES.into_iter().filter(|t| *t != "operator_secrets") {
        let sql = format!("SELECT count(*) FROM {table}");
        let count: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&read_only)
            .await
            .unwrap();
        assert!(count > 0, "{table} is empty");
    }

    let grants: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, privilege_type::text \
         FROM information_schema.role_table_grants \
         WHERE grantee = $1 ORDER BY table_name, privilege_type",
    )
    .bind(READ_ONLY_ROLE)
    .fetch_all(&admin)
    .await
    .unwrap();
    let expected: Vec<(String, String)> = [
        "number_ranges",
        "operators",
        "ported_numbers",
        "routing_table_version",
        "rules",
    ]
    .iter()
    .map(|t| (t.to_string(), "SELECT".to_string()))
    .collect();
    assert_eq!(grants, expected);

    let role: (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
    )
    .bind(READ_ONLY_ROLE)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(role, (false, false, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_refuse_the_load_and_write_nothing() {
    let db = TestDb::create("bad").await;
    let version = load_sample(&db).await;
    let admin = db.admin_pool().await;
    let before = counts(&admin).await;

    let cases: [(&str, &str, &str); 4] = [
        (
            "routing/routes.csv",
            "44,1,op-eu-value,",
            "44,1,op-nowhere,",
        ),
        (
            "routing/routes.csv",
            "op-global-b,30,9500",
            "op-global-b,0,9500",
        ),
        ("routing/routes.csv", "22:00-06:00", "25:00-01:00"),
        ("carrier/44.txt", "447400|Three", "44x7400|Three"),
    ];
    for (file, from, to) in cases {
        let (dir, dirs) = sample_copy();
        let path = dir.path().join(file);
        let line = edit(&path, from, to);

        let error = run_load(&db.admin_url(), &dirs.carrier, &dirs.routing)
            .await
            .expect_err("a bad row must refuse the load");
        let Some(LoadError::Invalid(problems)) = error.downcast_ref::<LoadError>() else {
            panic!("{to}: not a data problem: {error:?}");
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!((&problems[0].file, problems[0].line), (&path, line), "{to}");

        let store = PgStore::new(admin.clone());
        assert_eq!(store.version().await.unwrap(), version, "{to}");
        assert_eq!(counts(&admin).await, before, "{to}");
    }

    // Rows that bypass the file checks are refused by the database itself,
    // and the transaction leaves the previous table in place.
    let sample = DataDirs::sample(&repo_root()).load().unwrap();
    let breakages: [fn(&mut LoadedFiles); 3] = [
        |files| files.source.rules[1].weight = 0,
        |files| files.source.rules[1].target = RuleTarget::Operator("op-nowhere".into()),
        |files| files.source.ranges[3].prefix = "44x7400".into(),
    ];
    for (index, breakage) in breakages.into_iter().enumerate() {
        let mut files = sample.clone();
        breakage(&mut files);

        let refused = admin_load(&admin, &files).await;
        assert!(
            matches!(refused, Err(AdminError::Write(_))),
            "{index}: {refused:?}"
        );
        let store = PgStore::new(admin.clone());
        assert_eq!(store.version().await.unwrap(), version, "{index}");
        assert_eq!(counts(&admin).await, before, "{index}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_changes_bump_the_version_once_and_notify() {
    let db = TestDb::create("notify").await;
    let version = load_sample(&db).await;
    let admin = db.admin_pool().await;
    let read_only = db.read_only_pool().await;
    let store = PgStore::new(read_only.clone());
    let mut listener = PgListener::connect_with(&read_only).await.unwrap();
    listener.listen(CHANGE_CHANNEL).await.unwrap();

    let mut tx = admin.begin().await.unwrap();
    tx.execute("UPDATE operators SET enabled = false WHERE id = 'op-night-saver'")
        .await
        .unwrap();
    tx.execute("UPDATE rules SET cost_micros = 650 WHERE id = 'r-91-night'")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification arrives")
        .unwrap();
    assert_eq!(notification.channel(), CHANGE_CHANNEL);
    assert_eq!(notification.payload(), (version + 1).to_string());
    assert_eq!(store.version().await.unwrap(), version + 1);
    let table = store.load().await.unwrap();
    assert_eq!(table.version, version + 1);
    let night = table.operators.iter().find(|o| o.id == "op-night-saver");
    assert!(!night.unwrap().enabled);

    let mut tx = admin.begin().await.unwrap();
    tx.execute("DELETE FROM ported_numbers").await.unwrap();
    tx.rollback().await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(500), listener.recv()).await;
    assert!(
        quiet.is_err(),
        "a rolled-back change was announced: {quiet:?}"
    );
    assert_eq!(store.version().await.unwrap(), version + 1);

    let reloaded = load_sample(&db).await;
    assert_eq!(reloaded, version + 2);
    let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a reload is announced")
        .unwrap();
    assert_eq!(notification.payload(), reloaded.to_string());
}
