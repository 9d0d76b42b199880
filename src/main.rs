//! The routing-engine binary: `serve` in production, `dev` on a workstation,
//! `route` to ask a running service for a decision, `load` to fill the
//! database from the CSV files, `loadgen` to measure a running service.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

use routing_engine::client::{self, RouteArgs};
use routing_engine::config::{self, ServeArgs};
use routing_engine::core::clock::SystemClock;
use routing_engine::core::numbering;
use routing_engine::core::ports::Clock;
use routing_engine::core::router::{Router, RouterSettings};
use routing_engine::devmode;
use routing_engine::metrics::Metrics;
use routing_engine::secret::Secret;
use routing_engine::server::tls::{self, PemFiles, ServerTls};
use routing_engine::server::tls_reload::TlsReloader;
use routing_engine::server::{http, Edge};
use routing_engine::service;
use routing_engine::source::files::DataDirs;

#[derive(Parser)]
#[command(name = "routing-engine", version, about, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: check secrets, load the table from PostgreSQL, serve
    /// mutual-TLS gRPC and the management HTTP endpoints.
    #[command(after_help = "Secrets, from the environment only (never flags): \
        DATABASE_URL (the read-only role), REDIS_URL (password in the URL). \
        Files: nkey.creds at NATS_CREDS_FILE; tls.crt, tls.key and ca.crt in TLS_DIR.")]
    Serve(ServeArgs),
    /// Run the service for development: throwaway certificates, table from
    /// files, no secrets. Never in production.
    Dev(DevArgs),
    /// Ask a running service for a decision and print it.
    Route(RouteArgs),
    /// Load the CSV files into PostgreSQL.
    Load(LoadArgs),
    /// Publish one operator-health event to NATS JetStream.
    PublishHealth(routing_engine::tools::publish_health::PublishHealthArgs),
    /// Measure a running service on this machine against a no-op baseline.
    Loadgen(routing_engine::tools::loadgen::LoadgenArgs),
    /// Write the development CA and certificates (as `dev` does) and exit.
    DevCerts(DevCertsArgs),
    /// Write a fresh NATS user NKey seed (owner-only) and print its public key.
    Nkey(routing_engine::tools::nkey::NkeyArgs),
}

#[derive(clap::Args)]
struct DevCertsArgs {
    /// Where to write the development CA and certificates.
    #[arg(long, default_value = devmode::DEFAULT_TLS_DIR)]
    tls_dir: PathBuf,
}

#[derive(clap::Args)]
struct DevArgs {
    /// Where to write the development CA and certificates.
    #[arg(long, default_value = devmode::DEFAULT_TLS_DIR)]
    tls_dir: PathBuf,

    /// Data directory (e.g. ../shared/data); the bundled sample if omitted.
    #[arg(long)]
    data: Option<PathBuf>,

    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,

    #[arg(long, default_value = "127.0.0.1:3001")]
    http_addr: SocketAddr,
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Administrator connection URL (not the service's read-only one).
    #[arg(long, env = "ADMIN_DATABASE_URL", hide_env_values = true)]
    database_url: String,

    /// Directory of the carrier number-range files; found from the working
    /// directory (../shared/data, else sample/) when omitted.
    #[arg(long)]
    carrier_dir: Option<PathBuf>,

    /// Directory of operators.csv, routes.csv and ported.csv; found like
    /// --carrier-dir when omitted.
    #[arg(long)]
    routing_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return ExitCode::SUCCESS;
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match command {
            Command::Serve(args) => serve(args).await,
            Command::Dev(args) => dev(args).await,
            Command::Route(args) => route(args).await,
            Command::Load(args) => load(args).await,
            Command::PublishHealth(args) => {
                init_human_logs("warn");
                args.run().await.map(|()| ExitCode::SUCCESS)
            }
            Command::Loadgen(args) => {
                init_human_logs("warn");
                let report = args.run().await?;
                print!("{report}");
                Ok(ExitCode::SUCCESS)
            }
            Command::DevCerts(args) => dev_certs(args),
            Command::Nkey(args) => {
                init_human_logs("warn");
                args.run().map(|public_key| {
                    println!("{public_key}");
                    ExitCode::SUCCESS
                })
            }
        }
    });

    match outcome {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = causes(error.as_ref()), "routing-engine stopped");
            ExitCode::FAILURE
        }
    }
}

// === serve ===

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let (config, secrets) = match config::resolve(&args, |name| std::env::var_os(name)) {
        Ok(resolved) => resolved,
        Err(problems) => {
            // Nothing else has logged yet: this is the one line the pod prints.
            println!("{}", problems.log_line(&timestamp()));
            return Ok(ExitCode::from(1));
        }
    };

    init_json_logs();
    config.log();
    warm_up().await?;

    let tls_files = PemFiles {
        cert: secrets.tls_cert.clone().into_bytes(),
        key: secrets.tls_key.expose().as_bytes().to_vec(),
        ca: secrets.tls_ca.clone().into_bytes(),
    };
    let tls = ServerTls::with_allowed(&tls_files, config.allowed_clients.clone())
        .context("set up TLS from the mounted certificate")?;
    let tls = Arc::new(tls);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let live = &config.live;
    let pool = service::postgres_pool(&secrets.database_url)
        // The error text could quote the URL: say only which setting is wrong.
        .map_err(|_| anyhow::anyhow!("DATABASE_URL is not a PostgreSQL connection URL"))?;
    let store = service::table_store(pool, live.portability);
    let settings = RouterSettings {
        health_stale_after_ms: live.health_stale_after_secs.saturating_mul(1000) as i64,
        ..RouterSettings::default()
    };
    let metrics = Arc::new(Metrics::new().context("register metrics")?);
    let cache = service::shared_cache(&secrets.redis_url, live.replicas, clock.clone(), &metrics)
        .await
        .context("set up Redis")?;
    let router = Router::new(clock, settings)
        .with_store(store.clone())
        .with_cache(cache);
    let edge = Edge::new(Arc::new(router), metrics.clone()).await;
    metrics.watch_router(edge.router().clone());

    let (stop_tx, stop_rx) = watch::channel(false);
    let listeners = bind(config.grpc_addr, config.http_addr).await?;
    let servers = start_servers(&edge, tls.clone(), listeners, &stop_rx)?;
    let reloader = TlsReloader::new(tls, config.tls_dir.clone(), &tls_files, metrics.clone());
    let tls_watch = tokio::spawn(reloader.run(config.tls_reload_poll));
    let health_feed = service::spawn_health_feed(
        edge.router().clone(),
        live.nats_url.clone(),
        config.nats_creds_file.clone(),
        metrics.clone(),
    );

    let poll = live.reload_poll;
    let router = edge.router().clone();
    tokio::select! {
        watcher = service::load_and_watch(router, store, metrics, poll, config.store_retry_max) => {
            edge.serving().await;
            shutdown_signal().await;
            watcher.abort();
        }
        () = shutdown_signal() => {}
    }
    health_feed.abort();
    tls_watch.abort();
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    servers.await?;
    Ok(ExitCode::SUCCESS)
}

// === dev ===

async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    init_human_logs("info");
    eprintln!("{}", devmode::BANNER);
    tracing::warn!(
        "development mode: throwaway certificates, no secrets check; not for production"
    );

    // The ports are taken before the certificates are touched, so a second
    // `dev` started by mistake stops here and leaves the first one's alone.
    let listeners = bind(args.grpc_addr, args.http_addr).await?;
    let tls_dir = devmode::absolute(&args.tls_dir);
    let certificates =
        devmode::ensure_dev_tls(&tls_dir).context("write development certificates")?;
    let done = match certificates {
        devmode::DevTls::Reused => "kept from an earlier start in",
        devmode::DevTls::Written => "written to",
    };
    eprintln!("development certificates {done} {}", tls_dir.display());

    warm_up().await?;
    let router = Router::new(Arc::new(SystemClock), RouterSettings::default());
    let edge = new_edge(router).await?;
    let repo_root = std::env::current_dir().context("find the working directory")?;
    let data = args.data.clone();
    let table =
        tokio::task::spawn_blocking(move || devmode::load_table(data.as_deref(), &repo_root))
            .await??;
    edge.install(table).await;

    let tls = ServerTls::from_dir(&tls_dir).context("read development certificates")?;
    let tls = Arc::new(tls);
    let (stop_tx, stop_rx) = watch::channel(false);
    let servers = start_servers(&edge, tls, listeners, &stop_rx)?;
    // Under `cargo run` the binary is not on the PATH: say it the README's way.
    let command = if std::env::var_os("CARGO").is_some() {
        "cargo run --"
    } else {
        "routing-engine"
    };
    eprintln!(
        "try: {command} route +447400123456 --account acme-bank --sender ACMEBANK \
         --server https://{} --tls-dir {}",
        args.grpc_addr,
        tls_dir.display()
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    servers.await?;
    Ok(ExitCode::SUCCESS)
}

fn dev_certs(args: DevCertsArgs) -> anyhow::Result<ExitCode> {
    init_human_logs("warn");
    let tls_dir = devmode::absolute(&args.tls_dir);
    let done = match devmode::ensure_dev_tls(&tls_dir).context("write development certificates")? {
        devmode::DevTls::Reused => "kept (still valid) in",
        devmode::DevTls::Written => "written to",
    };
    println!("development certificates {done} {}", tls_dir.display());
    Ok(ExitCode::SUCCESS)
}

// === route and load ===

async fn route(args: RouteArgs) -> anyhow::Result<ExitCode> {
    init_human_logs("warn");
    match client::run(&args).await {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{}", causes(&error));
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    init_human_logs("info");
    let url = Secret::new(args.database_url);
    let (carrier, routing) = match (args.carrier_dir, args.routing_dir) {
        (Some(carrier), Some(routing)) => (carrier, routing),
        (carrier, routing) => {
            let cwd = std::env::current_dir().context("find the working directory")?;
            let found = DataDirs::discover(&cwd);
            (
                carrier.unwrap_or(found.carrier),
                routing.unwrap_or(found.routing),
            )
        }
    };

    let report = routing_engine::loader::run_load(url.expose(), &carrier, &routing)
        .await
        .context("load the CSV files into PostgreSQL")?;
    println!(
        "loaded table version {}: {} operators, {} rules, {} number ranges, \
         {} ported numbers in {:.1?}",
        report.version,
        report.operators,
        report.rules,
        report.ranges,
        report.ported,
        report.elapsed
    );
    Ok(ExitCode::SUCCESS)
}

// === shared start-up ===

async fn new_edge(router: Router) -> anyhow::Result<Edge> {
    let metrics = Arc::new(Metrics::new().context("register metrics")?);
    Ok(Edge::new(Arc::new(router), metrics).await)
}

/// Compiles the phone-number metadata before the service reports ready, so
/// no request pays for it.
async fn warm_up() -> anyhow::Result<()> {
    let report = tokio::task::spawn_blocking(numbering::warm_up).await?;
    tracing::info!(
        regions = report.regions,
        examples = report.examples,
        "phone-number metadata warmed up"
    );
    Ok(())
}

/// The gRPC and the HTTP listener.
struct Listeners {
    grpc: TcpListener,
    http: TcpListener,
}

/// Binds both listeners; an address in use fails here, before anything else
/// has been changed.
async fn bind(grpc_addr: SocketAddr, http_addr: SocketAddr) -> anyhow::Result<Listeners> {
    let grpc = TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("listen for gRPC on {grpc_addr}"))?;
    let http = TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("listen for HTTP on {http_addr}"))?;
    tracing::info!(grpc.addr = %grpc_addr, http.addr = %http_addr, "listening");
    Ok(Listeners { grpc, http })
}

/// Serves on `listeners` until `stop` turns true. The returned future ends
/// when both servers have stopped.
fn start_servers(
    edge: &Edge,
    tls: Arc<ServerTls>,
    listeners: Listeners,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    let Listeners {
        grpc: grpc_listener,
        http: http_listener,
    } = listeners;

    let routes = edge.grpc_routes()?;
    let grpc = tokio::spawn(tls::serve(
        grpc_listener,
        tls,
        routes,
        edge.metrics().clone(),
        stopped(stop.clone()),
    ));
    let http = tokio::spawn(http::serve(
        http_listener,
        edge.clone(),
        stopped(stop.clone()),
    ));

    Ok(async move {
        grpc.await?.context("serve gRPC")?;
        http.await?.context("serve HTTP")?;
        Ok(())
    })
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        _ = interrupt => {}
        () = terminate => {}
    }
}

// === logging ===

/// The filter `RUST_LOG` gives, else `default`. The NATS client logs every
/// connection event itself, several a second while the server is away; the
/// service says the same once, so the client's lines wait for `RUST_LOG`.
fn env_filter(default: &str) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;

    let fallback = || EnvFilter::new(format!("{default},async_nats=warn"));
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text).unwrap_or_else(|error| {
            eprintln!("RUST_LOG {text:?} is not a log filter ({error}); using {default:?}");
            fallback()
        }),
        _ => fallback(),
    }
}

/// One JSON object a line on stdout, fields at the top level.
fn init_json_logs() {
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(env_filter("info"))
        .init();
}

/// Readable lines on stderr, leaving stdout to command output.
fn init_human_logs(default: &str) {
    use std::io::IsTerminal;

    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(env_filter(default))
        .init();
}

/// An error and its causes, each cause only where the text before it does
/// not already quote it (many error types print their source themselves).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

/// Now, formatted as the JSON log lines format it.
fn timestamp() -> String {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

    let mut text = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut text));
    text
}
