//! Proves the start-up secrets check of `serve` on the built binary: with any
//! required secret missing, empty or unreadable the process exits with code 1
//! after printing exactly one JSON line that names every problem and quotes
//! no secret value.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SENTINEL: &str = "sentinel-pw-0000-secrets-check";

const SECRETS: [&str; 6] = [
    "DATABASE_URL",
    "REDIS_URL",
    "nkey.creds",
    "tls.crt",
    "tls.key",
    "ca.crt",
];

/// A complete set of secret files under `dir`, every value holding the
/// sentinel so a leak is easy to see.
fn write_secret_files(dir: &Path) {
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    std::fs::create_dir_all(dir.join("nats")).unwrap();
    for name in [
        "tls/tls.crt",
        "tls/tls.key",
        "tls/ca.crt",
        "nats/nkey.creds",
    ] {
        std::fs::write(dir.join(name), format!("{SENTINEL}-{name}\n")).unwrap();
    }
}

fn file_of(secret: &str) -> Option<&'static str> {
    match secret {
        "nkey.creds" => Some("nats/nkey.creds"),
        "tls.crt" => Some("tls/tls.crt"),
        "tls.key" => Some("tls/tls.key"),
        "ca.crt" => Some("tls/ca.crt"),
        _ => None,
    }
}

/// Runs `serve` with every secret present except those `spoil` damaged;
/// returns the exit code and everything printed.
fn run_serve(dir: &Path, spoil: impl Fn(&Path, &mut Command)) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_routing-engine"));
    command
        .arg("serve")
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("postgres://re:{SENTINEL}@db/routing"),
        )
        .env("REDIS_URL", format!("redis://:{SENTINEL}@cache:6379"))
        .env("TLS_DIR", dir.join("tls"))
        .env("NATS_CREDS_FILE", dir.join("nats/nkey.creds"))
        // Ports nothing else uses, in case the check wrongly lets it start.
        .env("GRPC_ADDR", "127.0.0.1:1")
        .env("HTTP_ADDR", "127.0.0.1:1");
    spoil(dir, &mut command);

    let output = command.output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), printed)
}

/// The single line printed, parsed, with its problems' names.
fn the_one_line(printed: &str) -> (Value, Vec<String>) {
    let lines: Vec<&str> = printed.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{printed}");
    assert!(
        !printed.contains("sentinel-pw-"),
        "a secret leaked:\n{printed}"
    );

    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["level"], "ERROR", "{line}");
    assert_eq!(
        line["message"], "required secrets are missing or unreadable",
        "{line}"
    );
    let names = line["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    (line, names)
}

#[test]
fn each_missing_secret_is_named_and_stops_the_process() {
    for secret in SECRETS {
        let dir = tempfile::tempdir().unwrap();
        write_secret_files(dir.path());

        let (code, printed) = run_serve(dir.path(), |dir, command| match file_of(secret) {
            Some(file) => std::fs::remove_file(dir.join(file)).unwrap(),
            None => {
                command.env_remove(secret);
            }
        });

        assert_eq!(code, Some(1), "{secret}: {printed}");
        let (line, names) = the_one_line(&printed);
        assert_eq!(names, [secret], "{line}");
        assert_eq!(line["problems"][0]["problem"], "missing", "{line}");
    }
}

#[test]
fn empty_and_unreadable_secrets_are_named_together() {
    let dir = tempfile::tempdir().unwrap();
    write_secret_files(dir.path());

    let (code, printed) = run_serve(dir.path(), |dir, command| {
        command.env("REDIS_URL", " ");
        std::fs::write(dir.join("tls/tls.key"), "").unwrap();
        // A directory where the file should be cannot be read as one.
        std::fs::remove_file(dir.join("tls/ca.crt")).unwrap();
        std::fs::create_dir(dir.join("tls/ca.crt")).unwrap();
    });

    assert_eq!(code, Some(1), "{printed}");
    let (line, names) = the_one_line(&printed);
    assert_eq!(names, ["REDIS_URL", "tls.key", "ca.crt"], "{line}");
    let problems = &line["problems"];
    assert_eq!(problems[0]["problem"], "empty", "{line}");
    assert_eq!(problems[1]["problem"], "empty", "{line}");
    let unreadable = problems[2]["problem"].as_str().unwrap();
    assert!(unreadable.starts_with("unreadable"), "{line}");
}

#[test]
fn with_nothing_mounted_every_secret_is_named_in_one_line() {
    let dir = tempfile::tempdir().unwrap();

    let (code, printed) = run_serve(dir.path(), |_, command| {
        command.env_remove("DATABASE_URL").env_remove("REDIS_URL");
    });

    assert_eq!(code, Some(1), "{printed}");
    let (_, names) = the_one_line(&printed);
    assert_eq!(names, SECRETS);
}
