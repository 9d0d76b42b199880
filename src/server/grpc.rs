//! The `RoutingEngine` gRPC service: turns the contract's messages into the
//! core's request and decision, and the core's refusals into gRPC statuses.
//!
//! Metrics are recorded here rather than in a tower layer because layers do
//! not run when the service is driven by the simulation.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::Instrument;

use crate::core::error::RouteError;
use crate::core::model::Operator;
use crate::core::router::{CandidateTrace, Decision, RouteRequest, Router};
use crate::metrics::Metrics;
use crate::proto::routing_engine_server::RoutingEngine;
use crate::proto::{self, SelectOperatorRequest, SelectOperatorResponse};

/// The `domain` of every `google.rpc.ErrorInfo` the service returns.
pub const ERROR_DOMAIN: &str = "routing-engine";

/// The reason given for a request that breaks the size limits below.
pub const REQUEST_INVALID: &str = "REQUEST_INVALID";

const MAX_MESSAGE_ID: usize = 128;
const MAX_ACCOUNT_ID: usize = 64;
const MAX_SENDER: usize = 64;
const MAX_REGION: usize = 8;
const MAX_EXCLUSIONS: usize = 32;
const MAX_OPERATOR_ID: usize = 64;
const MAX_PARTS: u32 = 255;

/// The service over a shared router.
pub struct RoutingService {
    router: Arc<Router>,
    metrics: Arc<Metrics>,
}

impl RoutingService {
    pub fn new(router: Arc<Router>, metrics: Arc<Metrics>) -> RoutingService {
        RoutingService { router, metrics }
    }

    async fn decide(&self, request: SelectOperatorRequest) -> Result<Decision, Status> {
        validate(&request)?;

        let explain = request.explain;
        let route = to_route_request(request);
        let span = tracing::info_span!(
            "select_operator",
            message.id = %route.message_id,
            account.id = %route.account_id,
            explain,
        );

        let decided = self.router.route(&route).instrument(span.clone()).await;
        decided.map_err(|error| {
            span.in_scope(|| tracing::debug!(reason = error.reason(), %error, "route refused"));
            if let RouteError::AllThrottled { operator_ids, .. } = &error {
                for operator in operator_ids {
                    self.metrics.record_throttled(operator);
                }
            }
            status_from_route_error(&error)
        })
    }
}

#[tonic::async_trait]
impl RoutingEngine for RoutingService {
    async fn select_operator(
        &self,
        request: Request<SelectOperatorRequest>,
    ) -> Result<Response<SelectOperatorResponse>, Status> {
        // Under madsim tokio's `Instant` is std's, simulated, which the ban
        // names by its path; this is the `tokio::time` the ban asks for.
        #[allow(clippy::disallowed_methods)]
        let started = tokio::time::Instant::now();
        let request = request.into_inner();
        let explain = request.explain;

        let decided = self.decide(request).await;

        let seconds = started.elapsed().as_secs_f64();
        match &decided {
            Ok(decision) => {
                self.metrics
                    .record_decision("ok", &decision.operator.id, seconds);
                for operator in &decision.throttled {
                    self.metrics.record_throttled(operator);
                }
            }
            Err(status) => self.metrics.record_decision(reason_of(status), "", seconds),
        }

        decided.map(|decision| Response::new(to_response(decision, explain)))
    }
}

/// Maps a refused decision to the status the contract names for it, with a
/// `google.rpc.ErrorInfo` carrying the machine-readable reason. The message
/// is the error's own text, written for the caller.
pub fn status_from_route_error(error: &RouteError) -> Status {
    let code = match error {
        RouteError::DestinationInvalid(_) | RouteError::SenderInvalid(_) => Code::InvalidArgument,
        RouteError::Blocked { .. } => Code::FailedPrecondition,
        RouteError::NoRoute { .. } => Code::NotFound,
        RouteError::NoOperatorAvailable { .. }
        | RouteError::NoHealthyOperator { .. }
        | RouteError::NotReady => Code::Unavailable,
        RouteError::AllThrottled { .. } => Code::ResourceExhausted,
    };
    let details = ErrorDetails::with_error_info(error.reason(), ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, error.to_string(), details)
}

/// Refuses requests larger than any real one before the core reads them.
fn validate(request: &SelectOperatorRequest) -> Result<(), Status> {
    if request.message_id.is_empty() {
        return Err(request_invalid(
            "message_id",
            "message_id is required".into(),
        ));
    }
    let too_long = [
        ("message_id", request.message_id.len(), MAX_MESSAGE_ID),
        ("account_id", request.account_id.len(), MAX_ACCOUNT_ID),
        ("sender", request.sender.len(), MAX_SENDER),
        (
            "destination_region",
            request.destination_region.len(),
            MAX_REGION,
        ),
    ];
    for (field, len, max) in too_long {
        if len > max {
            let message = format!("{field} is {len} bytes long; at most {max} are allowed");
            return Err(request_invalid(field, message));
        }
    }

    let exclusions = &request.exclude_operator_ids;
    if exclusions.len() > MAX_EXCLUSIONS {
        let message = format!(
            "exclude_operator_ids has {} entries; at most {MAX_EXCLUSIONS} are allowed",
            exclusions.len()
        );
        return Err(request_invalid("exclude_operator_ids", message));
    }
    if exclusions.iter().any(|id| id.len() > MAX_OPERATOR_ID) {
        let message = format!("an excluded operator id is longer than {MAX_OPERATOR_ID} bytes");
        return Err(request_invalid("exclude_operator_ids", message));
    }

    if request.parts > MAX_PARTS {
        let message = format!(
            "parts is {}; at most {MAX_PARTS} are allowed",
            request.parts
        );
        return Err(request_invalid("parts", message));
    }
    Ok(())
}

fn request_invalid(field: &str, message: String) -> Status {
    let metadata = HashMap::from([("field".to_owned(), field.to_owned())]);
    let details = ErrorDetails::with_error_info(REQUEST_INVALID, ERROR_DOMAIN, metadata);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// The reason of a status this service made, as a bounded metric label.
fn reason_of(status: &Status) -> &'static str {
    let reason = status.get_details_error_info().map(|info| info.reason);
    KNOWN_REASONS
        .iter()
        .find(|known| reason.as_deref() == Some(**known))
        .copied()
        .unwrap_or("UNKNOWN")
}

const KNOWN_REASONS: [&str; 9] = [
    REQUEST_INVALID,
    "DESTINATION_INVALID",
    "SENDER_INVALID",
    "DESTINATION_BLOCKED",
    "NO_ROUTE",
    "NO_OPERATOR_AVAILABLE",
    "NO_HEALTHY_OPERATOR",
    "NOT_READY",
    "ALL_OPERATORS_THROTTLED",
];

fn to_route_request(request: SelectOperatorRequest) -> RouteRequest {
    RouteRequest {
        message_id: request.message_id,
        account_id: request.account_id,
        destination: request.destination,
        destination_region: request.destination_region,
        sender: request.sender,
        parts: request.parts.max(1),
        exclude_operator_ids: request.exclude_operator_ids,
        explain: request.explain,
    }
}

fn to_response(decision: Decision, explain: bool) -> SelectOperatorResponse {
    let traces = if explain {
        decision.explain.iter().map(to_trace).collect()
    } else {
        Vec::new()
    };

    SelectOperatorResponse {
        operator: Some(operator_config(&decision.operator)),
        fallbacks: decision.fallbacks.iter().map(operator_config).collect(),
        rule_ids: decision.rule_ids,
        destination_e164: decision.destination_e164,
        network: decision.network.unwrap_or_default(),
        tier: decision.tier,
        cost_micros: decision.cost_micros,
        routing_table_version: decision.table_version,
        explain: traces,
        network_source: decision.network_source.as_str().to_owned(),
    }
}

/// The connector's view of an operator; the core holds no password to leak.
fn operator_config(operator: &Operator) -> proto::OperatorConfig {
    proto::OperatorConfig {
        operator_id: operator.id.clone(),
        name: operator.name.clone(),
        system_id: operator.system_id.clone(),
        smpp_host: operator.smpp_host.clone(),
        smpp_port: u32::from(operator.smpp_port),
        tps_limit: operator.tps_limit,
        alphanumeric_sender: operator.alphanumeric_sender,
    }
}

fn to_trace(trace: &CandidateTrace) -> proto::CandidateTrace {
    proto::CandidateTrace {
        operator_id: trace.operator_id.clone(),
        rule_id: trace.rule_id.clone(),
        tier: trace.tier,
        weight: trace.weight,
        outcome: trace.outcome.as_str().to_owned(),
        reason: trace.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::numbering::DestinationError;

    fn request() -> SelectOperatorRequest {
        SelectOperatorRequest {
            message_id: "m-1".into(),
            destination: "+447400123456".into(),
            sender: "ACME".into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_refusal_has_its_code_and_reason() {
        let cases = [
            (
                RouteError::DestinationInvalid(DestinationError::Empty),
                Code::InvalidArgument,
            ),
            (RouteError::NotReady, Code::Unavailable),
            (
                RouteError::AllThrottled {
                    destination: "+447400123456".into(),
                    operator_ids: vec!["op-a".into()],
                },
                Code::ResourceExhausted,
            ),
            (
                RouteError::Blocked {
                    destination: "+447400123456".into(),
                    rule_id: "r-9".into(),
                },
                Code::FailedPrecondition,
            ),
        ];
        for (error, code) in cases {
            let status = status_from_route_error(&error);
            assert_eq!(status.code(), code, "{error}");
            assert_eq!(status.message(), error.to_string());
            let info = status.get_details_error_info().unwrap();
            assert_eq!(info.reason, error.reason());
            assert_eq!(info.domain, ERROR_DOMAIN);
            assert_eq!(reason_of(&status), error.reason());
        }
    }

    #[test]
    fn oversized_requests_are_refused_before_routing() {
        assert!(validate(&request()).is_ok());

        let mut cases = Vec::new();
        cases.push(SelectOperatorRequest {
            message_id: "m".repeat(129),
            ..request()
        });
        cases.push(SelectOperatorRequest {
            message_id: String::new(),
            ..request()
        });
        cases.push(SelectOperatorRequest {
            account_id: "a".repeat(65),
            ..request()
        });
        cases.push(SelectOperatorRequest {
            exclude_operator_ids: vec!["op".into(); 33],
            ..request()
        });
        cases.push(SelectOperatorRequest {
            parts: 256,
            ..request()
        });
        for case in cases {
            let status = validate(&case).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            let info = status.get_details_error_info().unwrap();
            assert_eq!(info.reason, REQUEST_INVALID);
        }
    }

    /// A shared cache whose every operator is at its limit.
    struct AllAtLimit;

    #[tonic::async_trait]
    impl crate::core::ports::Cache for AllAtLimit {
        async fn acquire(
            &self,
            _operator_id: &str,
            _limit: u32,
            _parts: u32,
        ) -> Result<crate::core::ports::Admission, crate::core::ports::PortError> {
            Ok(crate::core::ports::Admission::Throttled)
        }

        async fn ported_network(
            &self,
            _e164: &str,
        ) -> Result<Option<Option<String>>, crate::core::ports::PortError> {
            Ok(Some(None))
        }

        async fn remember_ported(
            &self,
            _e164: &str,
            _network: Option<&str>,
        ) -> Result<(), crate::core::ports::PortError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn operators_throttled_on_a_refusal_are_counted() {
        // When every candidate is at its limit the request is refused, and
        // each of those operators still counts in the throttled metric.
        let clock = Arc::new(crate::core::clock::ManualClock::at_utc(12, 0));
        let router = Router::new(clock, Default::default()).with_cache(Arc::new(AllAtLimit));
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        router.install(crate::devmode::load_table(None, root).unwrap());
        let metrics = Arc::new(Metrics::new().unwrap());
        let service = RoutingService::new(Arc::new(router), metrics.clone());

        let status = service
            .select_operator(Request::new(SelectOperatorRequest {
                account_id: "acme-bank".into(),
                ..request()
            }))
            .await
            .unwrap_err();

        assert_eq!(status.code(), Code::ResourceExhausted);
        let text = metrics.render().unwrap();
        let counted: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("routing_engine_throttled_total{"))
            .collect();
        assert!(!counted.is_empty(), "{text}");
        assert!(counted.iter().all(|l| l.ends_with(" 1")), "{counted:?}");
    }

    #[test]
    fn zero_parts_means_one() {
        assert_eq!(to_route_request(request()).parts, 1);
    }
}
