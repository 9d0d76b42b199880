//! What the gRPC and HTTP edges share: the router, the metrics and the gRPC
//! health status, and the routes the real server serves.

use std::sync::Arc;

use tonic::service::Routes;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

use super::grpc::RoutingService;
use crate::core::router::Router;
use crate::core::table::RoutingTable;
use crate::metrics::Metrics;
use crate::proto::routing_engine_server::{RoutingEngineServer, SERVICE_NAME};

/// The largest request decoded; a real one is well under 1 KiB, and the
/// service's own field limits refuse anything near this.
///
/// Limitation: a request over this size, or bytes that are not a
/// `SelectOperatorRequest`, is refused by tonic's codec before the service
/// sees it (`OUT_OF_RANGE` or `INTERNAL`, without an `ErrorInfo`).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Why the gRPC routes could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// What the edges share: the router, the metrics and the gRPC health status.
#[derive(Clone)]
pub struct Edge {
    router: Arc<Router>,
    metrics: Arc<Metrics>,
    health: HealthReporter,
}

impl Edge {
    /// The edges of `router`, not serving until a table is installed.
    pub async fn new(router: Arc<Router>, metrics: Arc<Metrics>) -> Edge {
        let health = HealthReporter::new();
        let edge = Edge {
            router,
            metrics,
            health,
        };
        edge.set_health(ServingStatus::NotServing).await;
        edge
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Puts `table` in use and reports the service as serving.
    pub async fn install(&self, table: RoutingTable) {
        let (version, operators, rules) =
            (table.version(), table.operator_count(), table.rule_count());
        self.router.install(table);
        self.metrics.set_table_version(version);
        self.set_health(ServingStatus::Serving).await;
        tracing::info!(
            table.version = version,
            table.operators = operators,
            table.rules = rules,
            "routing table installed"
        );
    }

    /// Reports the service as serving, once a table is in use.
    pub async fn serving(&self) {
        self.set_health(ServingStatus::Serving).await;
    }

    /// The routing service with the standard health and reflection services.
    pub fn grpc_routes(&self) -> Result<Routes, EdgeError> {
        let routing = RoutingService::new(self.router.clone(), self.metrics.clone());
        let health = tonic_health::pb::health_server::HealthServer::new(
            HealthService::from_health_reporter(self.health.clone()),
        );
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;

        let routing =
            RoutingEngineServer::new(routing).max_decoding_message_size(MAX_REQUEST_BYTES);
        Ok(Routes::new(routing)
            .add_service(health)
            .add_service(reflection))
    }

    async fn set_health(&self, status: ServingStatus) {
        // "" is the whole server in the health protocol.
        self.health.set_service_status("", status).await;
        self.health.set_service_status(SERVICE_NAME, status).await;
    }
}
