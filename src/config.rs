//! The `serve` configuration: flags and environment parsed whole, then
//! judged in one go together with the secrets the security model names, so
//! that a misconfigured pod says everything wrong with it in one log line.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::secret::Secret;
use crate::server::identity::{AllowedClients, DEFAULT_ALLOWED_CLIENT_IDS};
use crate::server::tls::{self, PemFiles};

/// Where the security model mounts the NATS credentials.
pub const DEFAULT_NATS_CREDS_FILE: &str = "/run/secrets/nats/nkey.creds";
/// Where the security model mounts the server certificate, key and CA.
pub const DEFAULT_TLS_DIR: &str = "/run/secrets/tls";

/// Flags of `serve`; each also reads the environment variable it names.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address the mutual-TLS gRPC service listens on.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:50051")]
    pub grpc_addr: String,

    /// Address of /health, /ready and /metrics; keep it off public interfaces.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:3001")]
    pub http_addr: String,

    /// Directory holding tls.crt, tls.key and ca.crt.
    #[arg(long, env = "TLS_DIR", default_value = DEFAULT_TLS_DIR)]
    pub tls_dir: String,

    /// The NATS NKey credentials file.
    #[arg(long, env = "NATS_CREDS_FILE", default_value = DEFAULT_NATS_CREDS_FILE)]
    pub nats_creds_file: String,

    /// Callers admitted over gRPC, comma-separated: DNS names or URIs (SPIFFE
    /// IDs) one of which the client certificate must carry as a SAN.
    #[arg(long, env = "ALLOWED_CLIENT_IDS", default_value = DEFAULT_ALLOWED_CLIENT_IDS)]
    pub allowed_client_ids: String,

    /// How often, in milliseconds, TLS_DIR is read for a renewed
    /// certificate, key or CA bundle (50 to 3600000).
    #[arg(long, env = "TLS_RELOAD_POLL_MS", default_value = "5000")]
    pub tls_reload_poll_ms: String,

    /// Longest wait, in seconds, between attempts to load the routing table.
    #[arg(long, env = "STORE_RETRY_MAX_SECS", default_value = "30")]
    pub store_retry_max_secs: String,

    #[command(flatten)]
    pub live: crate::service::LiveArgs,
}

/// The judged, non-secret configuration of `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub tls_dir: PathBuf,
    pub nats_creds_file: PathBuf,
    pub allowed_clients: AllowedClients,
    pub tls_reload_poll: Duration,
    pub store_retry_max: Duration,
    pub live: crate::service::Live,
}

/// The secrets `serve` needs, read once at start and judged well-formed.
pub struct Secrets {
    pub database_url: Secret,
    pub redis_url: Secret,
    pub nats_creds: Secret,
    pub tls_cert: String,
    pub tls_key: Secret,
    pub tls_ca: String,
}

/// One thing wrong with the configuration. It names the setting or secret
/// and where it was looked for, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub name: String,
    pub source: String,
    pub problem: String,
    #[serde(skip)]
    pub secret: bool,
}

/// Everything wrong with the configuration, found in one pass.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration problem(s)", problems.len())]
pub struct ConfigProblems {
    pub problems: Vec<Problem>,
}

impl ConfigProblems {
    /// The single JSON log line that reports every problem, in the shape of
    /// the service's other JSON log lines.
    pub fn log_line(&self, timestamp: &str) -> String {
        let message = if self.problems.iter().any(|p| p.secret) {
            "required secrets are missing, unreadable or malformed"
        } else {
            "configuration is invalid"
        };
        serde_json::json!({
            "timestamp": timestamp,
            "level": "ERROR",
            "message": message,
            "problems": self.problems,
            "target": module_path!(),
        })
        .to_string()
    }
}

/// Judges `args` and reads the secrets, reporting every problem at once.
pub fn resolve(
    args: &ServeArgs,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<(ServeConfig, Secrets), ConfigProblems> {
    let mut problems = Vec::new();

    let grpc_addr = socket_addr("GRPC_ADDR", &args.grpc_addr, &mut problems);
    let http_addr = socket_addr("HTTP_ADDR", &args.http_addr, &mut problems);
    let store_retry_max = number_in(
        "STORE_RETRY_MAX_SECS",
        &args.store_retry_max_secs,
        1..=3600,
        "seconds",
        &mut problems,
    );
    let tls_reload_poll = number_in(
        "TLS_RELOAD_POLL_MS",
        &args.tls_reload_poll_ms,
        50..=3_600_000,
        "milliseconds",
        &mut problems,
    );
    let allowed_clients = allowed_clients(&args.allowed_client_ids, &mut problems);
    let live = live(&args.live, &mut problems);
    let tls_dir = path_given("TLS_DIR", &args.tls_dir, &mut problems);
    let nats_creds_file = path_given("NATS_CREDS_FILE", &args.nats_creds_file, &mut problems);

    let database_url = env_secret("DATABASE_URL", &env, &mut problems);
    let redis_url = env_secret("REDIS_URL", &env, &mut problems);
    // An empty path was reported above; the secrets under it are then
    // looked for nowhere rather than in the working directory.
    let nats_creds = nats_creds_file
        .as_ref()
        .and_then(|path| file_secret("nkey.creds", path, &mut problems));
    let (tls_cert, tls_key, tls_ca) = match &tls_dir {
        Some(dir) => (
            file_secret("tls.crt", &dir.join("tls.crt"), &mut problems),
            file_secret("tls.key", &dir.join("tls.key"), &mut problems),
            file_secret("ca.crt", &dir.join("ca.crt"), &mut problems),
        ),
        None => (None, None, None),
    };

    // Each secret that was read is judged for its form; a problem empties it.
    let database_url = database_url.filter(|url| postgres_url_ok(url, &mut problems));
    let redis_url = redis_url.filter(|url| redis_url_ok(url, &mut problems));
    let nats_creds = nats_creds.filter(|text| {
        let path = nats_creds_file.as_deref().unwrap_or(Path::new(""));
        creds_ok(text, path, &mut problems)
    });
    let (tls_cert, tls_key, tls_ca) = match &tls_dir {
        Some(dir) => judge_tls(dir, (tls_cert, tls_key, tls_ca), &mut problems),
        None => (None, None, None),
    };

    // A value is `None` exactly when a problem was reported for it.
    let (
        Some(grpc_addr),
        Some(http_addr),
        Some(store_retry_max),
        Some(tls_reload_poll),
        Some(allowed_clients),
        Some(live),
        Some(tls_dir),
        Some(nats_creds_file),
        Some(database_url),
        Some(redis_url),
        Some(nats_creds),
        Some(tls_cert),
        Some(tls_key),
        Some(tls_ca),
    ) = (
        grpc_addr,
        http_addr,
        store_retry_max,
        tls_reload_poll,
        allowed_clients,
        live,
        tls_dir,
        nats_creds_file,
        database_url,
        redis_url,
        nats_creds,
        tls_cert,
        tls_key,
        tls_ca,
    )
    else {
        return Err(ConfigProblems { problems });
    };

    let config = ServeConfig {
        grpc_addr,
        http_addr,
        tls_dir,
        nats_creds_file,
        allowed_clients,
        tls_reload_poll: Duration::from_millis(tls_reload_poll),
        store_retry_max: Duration::from_secs(store_retry_max),
        live,
    };
    let secrets = Secrets {
        database_url: Secret::new(database_url),
        redis_url: Secret::new(redis_url),
        nats_creds: Secret::new(nats_creds),
        tls_cert,
        tls_key: Secret::new(tls_key),
        tls_ca,
    };
    Ok((config, secrets))
}

impl ServeConfig {
    /// Logs the effective configuration once; it holds no secret.
    pub fn log(&self) {
        if self.http_addr.ip().is_unspecified() {
            // Right inside a container's own network namespace (compose),
            // wrong on a host or a pod with other interfaces.
            tracing::warn!(
                http.addr = %self.http_addr,
                "management endpoints listen on every interface; \
                 set HTTP_ADDR to the pod address or 127.0.0.1 unless isolated"
            );
        }
        tracing::info!(
            grpc.addr = %self.grpc_addr,
            http.addr = %self.http_addr,
            tls.dir = %self.tls_dir.display(),
            nats.creds_file = %self.nats_creds_file.display(),
            grpc.allowed_clients = %self.allowed_clients,
            tls.reload_poll_ms = self.tls_reload_poll.as_millis() as u64,
            store.retry_max_secs = self.store_retry_max.as_secs(),
            nats.url = %crate::adapters::nats::without_credentials(&self.live.nats_url),
            replicas = self.live.replicas,
            health.stale_after_secs = self.live.health_stale_after_secs,
            portability = self.live.portability.name(),
            store.reload_poll_ms = self.live.reload_poll.as_millis() as u64,
            "effective configuration"
        );
    }
}

fn setting_problem(name: &str, problem: String) -> Problem {
    Problem {
        name: name.to_owned(),
        source: "setting".to_owned(),
        problem,
        secret: false,
    }
}

fn secret_problem(name: &str, source: String, problem: String) -> Problem {
    Problem {
        name: name.to_owned(),
        source,
        problem,
        secret: true,
    }
}

fn socket_addr(name: &str, text: &str, problems: &mut Vec<Problem>) -> Option<SocketAddr> {
    let parsed = text.trim().parse().ok();
    if parsed.is_none() {
        let problem = format!("{text:?} is not an address like 127.0.0.1:3001");
        problems.push(setting_problem(name, problem));
    }
    parsed
}

/// A whole number within `range`, or a problem naming the setting.
fn number_in<T>(
    name: &str,
    text: &str,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
    problems: &mut Vec<Problem>,
) -> Option<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match text.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Some(n),
        _ => {
            let (low, high) = (range.start(), range.end());
            let problem = format!("{text:?} is not a number of {unit} from {low} to {high}");
            problems.push(setting_problem(name, problem));
            None
        }
    }
}

/// A path that is not empty.
fn path_given(name: &str, text: &str, problems: &mut Vec<Problem>) -> Option<PathBuf> {
    if text.trim().is_empty() {
        problems.push(setting_problem(name, "is empty: give a path".into()));
        return None;
    }
    Some(PathBuf::from(text))
}

/// The live settings, each judged on its own.
fn live(
    args: &crate::service::LiveArgs,
    problems: &mut Vec<Problem>,
) -> Option<crate::service::Live> {
    let nats_url = nats_urls(&args.nats_url, problems);
    let replicas = number_in("REPLICAS", &args.replicas, 1..=1000, "replicas", problems);
    let stale = number_in(
        "HEALTH_STALE_AFTER_SECS",
        &args.health_stale_after_secs,
        1..=86_400,
        "seconds",
        problems,
    );
    let portability = crate::service::Portability::parse(&args.portability);
    if portability.is_none() {
        let problem = format!("{:?} is neither `lookup` nor `snapshot`", args.portability);
        problems.push(setting_problem("PORTABILITY", problem));
    }
    let poll = number_in(
        "RELOAD_POLL_MS",
        &args.reload_poll_ms,
        50..=60_000,
        "milliseconds",
        problems,
    );

    Some(crate::service::Live {
        nats_url: nats_url?,
        replicas: replicas?,
        health_stale_after_secs: stale?,
        portability: portability?,
        reload_poll: Duration::from_millis(poll?),
    })
}

/// One or more NATS server addresses, comma-separated.
fn nats_urls(text: &str, problems: &mut Vec<Problem>) -> Option<String> {
    if text.trim().is_empty() {
        problems.push(setting_problem(
            "NATS_URL",
            "is empty: give nats://host:port".into(),
        ));
        return None;
    }
    let bad = text
        .split(',')
        .find(|url| url.trim().parse::<async_nats::ServerAddr>().is_err());
    match bad {
        Some(url) => {
            let shown = crate::adapters::nats::without_credentials(url);
            let problem = format!("{shown:?} is not a NATS server address (nats://host:port)");
            problems.push(setting_problem("NATS_URL", problem));
            None
        }
        None => Some(text.to_owned()),
    }
}

fn allowed_clients(text: &str, problems: &mut Vec<Problem>) -> Option<AllowedClients> {
    match AllowedClients::parse(text) {
        Ok(allowed) => Some(allowed),
        Err(problem) => {
            problems.push(setting_problem("ALLOWED_CLIENT_IDS", problem));
            None
        }
    }
}

fn malformed(name: &str, source: String, problem: &str, problems: &mut Vec<Problem>) -> bool {
    problems.push(secret_problem(name, source, problem.to_owned()));
    false
}

/// A PostgreSQL URL sqlx can use. Its parser's message could quote the URL,
/// so only the fixed problem text is reported.
fn postgres_url_ok(url: &str, problems: &mut Vec<Problem>) -> bool {
    use std::str::FromStr;

    let url = url.trim();
    let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if scheme_ok && sqlx::postgres::PgConnectOptions::from_str(url).is_ok() {
        return true;
    }
    let problem = "malformed: not a URL like postgres://user:password@host:5432/database";
    malformed(
        "DATABASE_URL",
        "environment variable".to_owned(),
        problem,
        problems,
    )
}

/// A Redis URL the client can use (scheme, host, database number).
fn redis_url_ok(url: &str, problems: &mut Vec<Problem>) -> bool {
    if redis::IntoConnectionInfo::into_connection_info(url.trim()).is_ok() {
        return true;
    }
    let problem = "malformed: not a URL like redis://:password@host:6379/0";
    malformed(
        "REDIS_URL",
        "environment variable".to_owned(),
        problem,
        problems,
    )
}

fn creds_ok(text: &str, path: &Path, problems: &mut Vec<Problem>) -> bool {
    match crate::adapters::nats::credentials_problem(text) {
        None => true,
        Some(problem) => malformed("nkey.creds", path.display().to_string(), problem, problems),
    }
}

type TlsTexts = (Option<String>, Option<String>, Option<String>);

/// Once all three TLS files were read, judges them together: each parses,
/// the certificate has not expired and the key matches it.
fn judge_tls(dir: &Path, texts: TlsTexts, problems: &mut Vec<Problem>) -> TlsTexts {
    let (Some(cert), Some(key), Some(ca)) = texts else {
        return texts;
    };
    let files = PemFiles {
        cert: cert.clone().into_bytes(),
        key: key.clone().into_bytes(),
        ca: ca.clone().into_bytes(),
    };

    let found = tls::file_problems(&files);
    for (file, problem) in &found {
        let source = dir.join(file).display().to_string();
        problems.push(secret_problem(file, source, (*problem).to_owned()));
    }
    if found.is_empty() {
        (Some(cert), Some(key), Some(ca))
    } else {
        (None, None, None)
    }
}

/// A secret from an environment variable: present, UTF-8 and not blank.
fn env_secret(
    name: &str,
    env: &impl Fn(&str) -> Option<OsString>,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let source = || "environment variable".to_owned();
    let problem = match env(name).map(OsString::into_string) {
        None => "missing",
        Some(Err(_)) => "unreadable: not UTF-8",
        Some(Ok(value)) if value.trim().is_empty() => "empty",
        Some(Ok(value)) => return Some(value),
    };
    problems.push(secret_problem(name, source(), problem.to_owned()));
    None
}

/// A secret from a mounted file: present, readable, UTF-8 and not blank.
fn file_secret(name: &str, path: &Path, problems: &mut Vec<Problem>) -> Option<String> {
    let problem = match std::fs::read(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => "missing".to_owned(),
        Err(error) => format!("unreadable: {}", error.kind()),
        Ok(bytes) => match String::from_utf8(bytes) {
            Err(_) => "unreadable: not UTF-8 text".to_owned(),
            Ok(text) if text.trim().is_empty() => "empty".to_owned(),
            Ok(text) => return Some(text),
        },
    };
    let source = path.display().to_string();
    problems.push(secret_problem(name, source, problem));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path) -> ServeArgs {
        ServeArgs {
            grpc_addr: "0.0.0.0:50051".into(),
            http_addr: "127.0.0.1:3001".into(),
            tls_dir: dir.join("tls").display().to_string(),
            nats_creds_file: dir.join("nats/nkey.creds").display().to_string(),
            allowed_client_ids: DEFAULT_ALLOWED_CLIENT_IDS.into(),
            tls_reload_poll_ms: "5000".into(),
            store_retry_max_secs: "30".into(),
            live: crate::service::LiveArgs {
                nats_url: "nats://127.0.0.1:4222".into(),
                replicas: "1".into(),
                health_stale_after_secs: "30".into(),
                portability: "lookup".into(),
                reload_poll_ms: "500".into(),
            },
        }
    }

    /// The management endpoints are on loopback unless told otherwise.
    #[test]
    fn management_endpoints_default_to_loopback() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["serve"]).unwrap();

        let addr: SocketAddr = cli.serve.http_addr.parse().unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr, crate::server::http::DEFAULT_ADDR);
        let allowed = AllowedClients::parse(&cli.serve.allowed_client_ids).unwrap();
        assert_eq!(allowed, AllowedClients::default());
    }

    #[test]
    fn every_problem_is_reported_at_once_without_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        std::fs::write(dir.path().join("tls/tls.crt"), "  \n").unwrap();
        let mut bad = args(dir.path());
        bad.http_addr = "localhost".into();

        let env = |name: &str| (name == "REDIS_URL").then(|| "redis://:hunter2@r".into());
        let problems = resolve(&bad, env).err().unwrap().problems;

        let named: Vec<_> = problems.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            named,
            [
                "HTTP_ADDR",
                "DATABASE_URL",
                "nkey.creds",
                "tls.crt",
                "tls.key",
                "ca.crt"
            ]
        );
        assert_eq!(problems[3].problem, "empty");
        let line = ConfigProblems { problems }.log_line("t");
        assert!(line.contains("required secrets are missing, unreadable or malformed"));
        assert!(!line.contains("hunter2"));
    }

    #[test]
    fn settings_out_of_range_join_the_same_report() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = args(dir.path());
        bad.live.replicas = "0".into();
        bad.live.health_stale_after_secs = "-5".into();
        bad.live.portability = "".into();
        bad.live.reload_poll_ms = "abc".into();
        bad.live.nats_url = "nats://127.0.0.1:4222,::not a url".into();
        bad.tls_reload_poll_ms = "49".into();
        bad.tls_dir = " ".into();

        let problems = resolve(&bad, |_| None).err().unwrap().problems;

        let named: Vec<_> = problems.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            named,
            [
                "TLS_RELOAD_POLL_MS",
                "NATS_URL",
                "REPLICAS",
                "HEALTH_STALE_AFTER_SECS",
                "PORTABILITY",
                "RELOAD_POLL_MS",
                "TLS_DIR",
                "DATABASE_URL",
                "REDIS_URL",
                "nkey.creds",
            ]
        );
        assert_eq!(
            problems[2].problem,
            "\"0\" is not a number of replicas from 1 to 1000"
        );
    }

    #[test]
    fn settings_within_range_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut given = args(dir.path());
        given.live.replicas = "3".into();
        given.live.portability = "Snapshot".into();
        let live = live(&given.live, &mut Vec::new()).unwrap();
        assert_eq!(live.replicas, 3);
        assert_eq!(live.portability, crate::service::Portability::Snapshot);
        assert_eq!(live.reload_poll, Duration::from_millis(500));
    }
}
