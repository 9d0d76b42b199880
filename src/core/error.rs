//! Why a routing decision was refused, as the core reports it to the edges.

use super::numbering::DestinationError;
use super::sender::SenderError;

/// A refused decision. Each variant maps to one gRPC status and reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{0}")]
    DestinationInvalid(#[from] DestinationError),
    #[error("{0}")]
    SenderInvalid(#[from] SenderError),
    #[error("destination {destination} is blocked by rule {rule_id}")]
    Blocked {
        destination: String,
        rule_id: String,
    },
    #[error("no routing rule matches destination {destination}")]
    NoRoute { destination: String },
    #[error(
        "rules {} match {destination} but every operator was dropped: {}",
        rule_ids.join(", "),
        dropped.join(", ")
    )]
    NoOperatorAvailable {
        destination: String,
        rule_ids: Vec<String>,
        /// Each operator left out and why, as `op-id (reason)`.
        dropped: Vec<String>,
    },
    #[error(
        "every operator of rules {} for {destination} is down: {}",
        rule_ids.join(", "),
        dropped.join(", ")
    )]
    NoHealthyOperator {
        destination: String,
        rule_ids: Vec<String>,
        dropped: Vec<String>,
    },
    #[error("every operator for {destination} is at its throughput limit")]
    AllThrottled {
        destination: String,
        /// The candidates skipped at their limit, in the order tried.
        operator_ids: Vec<String>,
    },
    #[error("the routing table is not loaded yet")]
    NotReady,
}

impl RouteError {
    /// The machine-readable reason callers branch on.
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::DestinationInvalid(_) => "DESTINATION_INVALID",
            RouteError::SenderInvalid(_) => "SENDER_INVALID",
            RouteError::Blocked { .. } => "DESTINATION_BLOCKED",
            RouteError::NoRoute { .. } => "NO_ROUTE",
            RouteError::NoOperatorAvailable { .. } => "NO_OPERATOR_AVAILABLE",
            RouteError::NoHealthyOperator { .. } => "NO_HEALTHY_OPERATOR",
            RouteError::AllThrottled { .. } => "ALL_OPERATORS_THROTTLED",
            RouteError::NotReady => "NOT_READY",
        }
    }
}
