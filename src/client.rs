//! The `route` command: asks a running service for a decision over mutual TLS
//! with the development client certificate and prints it for a person.

use std::fmt::Write as _;
use std::path::PathBuf;

use tonic::Status;
use tonic_types::StatusExt;

use crate::proto::routing_engine_client::RoutingEngineClient;
use crate::proto::{OperatorConfig, SelectOperatorRequest, SelectOperatorResponse};
use crate::server::tls::{client_channel, PemFiles, TlsError};

/// Flags of `route`.
#[derive(clap::Args, Debug, Clone)]
pub struct RouteArgs {
    /// The destination, e.g. +447400123456.
    pub destination: String,

    /// Account whose rules apply.
    #[arg(long, default_value = "")]
    pub account: String,

    /// Sender id, alphanumeric or numeric.
    #[arg(long)]
    pub sender: String,

    /// ISO 3166 region of a national destination number.
    #[arg(long, default_value = "")]
    pub region: String,

    /// Number of SMS parts.
    #[arg(long, default_value_t = 1)]
    pub parts: u32,

    /// Operators to skip; repeat for several.
    #[arg(long = "exclude", value_name = "OPERATOR_ID")]
    pub exclude: Vec<String>,

    /// List every candidate and why it was kept or dropped.
    #[arg(long)]
    pub explain: bool,

    /// Message id; the same id and table give the same operator.
    #[arg(long)]
    pub message_id: Option<String>,

    /// The service's gRPC address.
    #[arg(long, default_value = "https://127.0.0.1:50051")]
    pub server: String,

    /// Directory with ca.crt, client.crt and client.key.
    #[arg(long, default_value = crate::devmode::DEFAULT_TLS_DIR)]
    pub tls_dir: PathBuf,
}

/// Why `route` printed no decision.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{}", describe_status(.0))]
    Refused(Box<Status>),
    #[error("{0} is a plain-text address; the service accepts mutual TLS only: use https://")]
    PlainHttp(String),
}

/// Sends the request and renders the decision as text.
pub async fn run(args: &RouteArgs) -> Result<String, ClientError> {
    if args.server.starts_with("http://") {
        return Err(ClientError::PlainHttp(args.server.clone()));
    }
    let files = PemFiles::read(&args.tls_dir, "client.crt", "client.key")?;
    let channel = client_channel(&args.server, &files).await?;
    let mut client = RoutingEngineClient::new(channel);

    let request = SelectOperatorRequest {
        message_id: args
            .message_id
            .clone()
            .unwrap_or_else(|| format!("cli-{}", std::process::id())),
        account_id: args.account.clone(),
        destination: args.destination.clone(),
        destination_region: args.region.clone(),
        sender: args.sender.clone(),
        parts: args.parts,
        exclude_operator_ids: args.exclude.clone(),
        explain: args.explain,
    };
    let response = client
        .select_operator(request)
        .await
        .map_err(|status| ClientError::Refused(Box::new(status)))?;
    Ok(render(&response.into_inner()))
}

/// The gRPC code, the `ErrorInfo` reason and the message of a refusal. A
/// status without a reason came from the gRPC or TLS layers, not from the
/// routing rules; the most common causes are said with it.
pub fn describe_status(status: &Status) -> String {
    let code = code_name(status.code());
    let Some(info) = status.get_details_error_info() else {
        let hint = match status.code() {
            tonic::Code::Unknown | tonic::Code::Unavailable => {
                "; the connection failed before an answer: if the server is up, its log \
                 says whether it refused this client certificate (ALLOWED_CLIENT_IDS)"
            }
            tonic::Code::OutOfRange => "; the request is larger than the service decodes",
            _ => "",
        };
        return format!("refused: {code}: {}{hint}", status.message());
    };
    format!("refused: {code} ({}): {}", info.reason, status.message())
}

/// The canonical name of a gRPC code, as in `INVALID_ARGUMENT`.
fn code_name(code: tonic::Code) -> String {
    let camel = format!("{code:?}");
    let mut name = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

fn render(decision: &SelectOperatorResponse) -> String {
    let mut out = String::new();
    let operator = decision
        .operator
        .as_ref()
        .map(describe_operator)
        .unwrap_or_else(|| "-".to_owned());
    let network = if decision.network.is_empty() {
        "unknown"
    } else {
        &decision.network
    };

    let _ = writeln!(out, "operator      {operator}");
    for (n, fallback) in decision.fallbacks.iter().enumerate() {
        let _ = writeln!(out, "fallback {:<4} {}", n + 1, describe_operator(fallback));
    }
    let _ = writeln!(out, "rules         {}", decision.rule_ids.join(", "));
    let _ = writeln!(out, "destination   {}", decision.destination_e164);
    let _ = writeln!(out, "network       {network} ({})", decision.network_source);
    let _ = writeln!(out, "tier          {}", decision.tier);
    let _ = writeln!(
        out,
        "cost          {} micro-EUR per part",
        decision.cost_micros
    );
    let _ = writeln!(out, "table version {}", decision.routing_table_version);

    if !decision.explain.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<20} {:<20} {:>4} {:>6}  {:<9} reason",
            "operator", "rule", "tier", "weight", "outcome"
        );
        for trace in &decision.explain {
            let _ = writeln!(
                out,
                "{:<20} {:<20} {:>4} {:>6}  {:<9} {}",
                trace.operator_id,
                trace.rule_id,
                trace.tier,
                trace.weight,
                trace.outcome,
                trace.reason
            );
        }
    }
    out
}

fn describe_operator(operator: &OperatorConfig) -> String {
    format!(
        "{} ({}) smpp://{}@{}:{} tps {}",
        operator.operator_id,
        operator.name,
        operator.system_id,
        operator.smpp_host,
        operator.smpp_port,
        operator.tps_limit
    )
}
