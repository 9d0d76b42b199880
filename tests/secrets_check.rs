//! Proves the start-up secrets check of `serve` on the built binary: with any
//! required secret missing, empty, unreadable or malformed the process exits
//! with code 1 after printing exactly one JSON line that names every problem
//! and quotes no secret value.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use common::pki::{LeafSpec, TestCa};

const SENTINEL: &str = "sentinel-pw-0000-secrets-check";

const SECRETS: [&str; 6] = [
    "DATABASE_URL",
    "REDIS_URL",
    "nkey.creds",
    "tls.crt",
    "tls.key",
    "ca.crt",
];

/// A complete, well-formed set of secret files under `dir`. Each file holds
/// the sentinel on a line of its own outside the PEM or key blocks (which
/// parsers skip), so a leak of any file's text is easy to see.
fn write_secret_files(dir: &Path) -> Material {
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    std::fs::create_dir_all(dir.join("nats")).unwrap();
    let material = Material::new();
    let files = [
        ("tls/tls.crt", &material.cert),
        ("tls/tls.key", &material.key),
        ("tls/ca.crt", &material.ca),
        ("nats/nkey.creds", &material.creds),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), format!("{SENTINEL}-{name}\n{text}")).unwrap();
    }
    material
}

/// Valid secret material: a CA, a server certificate and key, and NATS
/// credentials with a real user seed.
struct Material {
    ca: String,
    cert: String,
    key: String,
    seed: String,
    creds: String,
}

impl Material {
    fn new() -> Material {
        let ca = TestCa::new("cluster CA");
        let server = ca.server(1);
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.c2ln\n\
             ------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        Material {
            ca: ca.pem,
            cert: server.cert,
            key: server.key,
            seed,
            creds,
        }
    }

    /// Texts that must never be printed: the private key's body and the seed.
    fn secrets(&self) -> Vec<String> {
        let key_body = self.key.lines().nth(1).unwrap().to_owned();
        vec![key_body, self.seed.clone()]
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
        line["message"], "required secrets are missing, unreadable or malformed",
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
        let material = write_secret_files(dir.path());

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
        for text in material.secrets() {
            assert!(
                !printed.contains(&text),
                "{secret}: a secret leaked: {printed}"
            );
        }
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

/// Each secret present but malformed: a URL that does not parse or names
/// another database, credentials without a seed or with a broken one, a
/// certificate that is not PEM, has expired or is not valid yet, a key that is not PEM or does
/// not match the certificate, a CA bundle that is not PEM. Each is named,
/// stops the process, and its text is never quoted.
#[test]
fn each_malformed_secret_is_named_and_stops_the_process() {
    let jwt_only = "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.c2ln\n\
                    ------END NATS USER JWT------\n";
    let ca = TestCa::new("cluster CA");
    let expired = ca.leaf(&LeafSpec {
        dns: &["routing-engine"],
        uris: &[],
        usages: &[rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        valid: Some(((2020, 1, 1), (2021, 1, 1))),
        serial: 7,
    });
    let not_yet = ca.leaf(&LeafSpec {
        dns: &["routing-engine"],
        uris: &[],
        usages: &[rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        valid: Some(((2030, 1, 1), (2031, 1, 1))),
        serial: 9,
    });
    let cases: Vec<(&str, Spoil)> = vec![
        (
            "DATABASE_URL",
            Spoil::Env(format!("postgres//re:{SENTINEL}@db/routing")),
        ),
        (
            "DATABASE_URL",
            Spoil::Env(format!("mysql://re:{SENTINEL}@db/routing")),
        ),
        (
            "REDIS_URL",
            Spoil::Env(format!("redis//:{SENTINEL}@cache:6379")),
        ),
        (
            "REDIS_URL",
            Spoil::Env(format!("https://:{SENTINEL}@cache:6379")),
        ),
        ("nkey.creds", Spoil::File(format!("{SENTINEL}\n{jwt_only}"))),
        (
            "nkey.creds",
            Spoil::File(format!("SU{}", SENTINEL.to_uppercase())),
        ),
        (
            "nkey.creds",
            Spoil::File(format!("{SENTINEL} not credentials")),
        ),
        (
            "tls.crt",
            Spoil::File(format!("{SENTINEL} not a certificate")),
        ),
        ("tls.crt", Spoil::Pair(expired.cert, expired.key)),
        ("tls.crt", Spoil::Pair(not_yet.cert, not_yet.key)),
        ("tls.key", Spoil::File(format!("{SENTINEL} not a key"))),
        ("tls.key", Spoil::File(ca.server(8).key)),
        ("ca.crt", Spoil::File(format!("{SENTINEL} not a CA"))),
    ];

    for (secret, spoil) in cases {
        let dir = tempfile::tempdir().unwrap();
        let material = write_secret_files(dir.path());
        let case = format!("{secret} {spoil:?}");

        let (code, printed) = run_serve(dir.path(), |dir, command| match &spoil {
            Spoil::Env(value) => {
                command.env(secret, value);
            }
            Spoil::File(text) => std::fs::write(dir.join(file_of(secret).unwrap()), text).unwrap(),
            Spoil::Pair(cert, key) => {
                std::fs::write(dir.join("tls/tls.crt"), cert).unwrap();
                std::fs::write(dir.join("tls/tls.key"), key).unwrap();
            }
        });

        assert_eq!(code, Some(1), "{case}: {printed}");
        let (line, names) = the_one_line(&printed);
        assert_eq!(names, [secret], "{case}: {line}");
        let problem = line["problems"][0]["problem"].as_str().unwrap();
        let expected = ["malformed", "expired", "not valid yet", "does not match"];
        assert!(
            expected.iter().any(|e| problem.starts_with(e)),
            "{case}: {line}"
        );
        for text in material.secrets() {
            assert!(
                !printed.contains(&text),
                "{case}: a secret leaked: {printed}"
            );
        }
    }
}

/// How a malformed case damages the otherwise complete set.
enum Spoil {
    Env(String),
    File(String),
    Pair(String, String),
}

impl std::fmt::Debug for Spoil {
    // The cases hold the sentinel: print only their kind.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Spoil::Env(_) => "(environment)",
            Spoil::File(_) => "(file)",
            Spoil::Pair(..) => "(certificate and key)",
        })
    }
}
