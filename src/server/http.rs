//! The management HTTP endpoints Kubernetes and Prometheus read: liveness,
//! readiness and metrics. Bound to loopback unless configured otherwise.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::Edge;

/// Where the endpoints listen unless configured otherwise: the pod's own
/// loopback, never every interface.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 3001);

/// The Prometheus text format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The endpoints over the shared edge state.
pub fn router(edge: Edge) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(edge)
}

/// Serves the endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    edge: Edge,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(edge))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The process is up and answering.
async fn health() -> &'static str {
    "ok\n"
}

/// Ready once a routing table is installed: before that every decision
/// would be refused with `NOT_READY`. A dependency that is down degrades
/// answers (see the README) but does not make the replica unready; its state
/// is in the body.
async fn ready(State(edge): State<Edge>) -> Response {
    let dependencies: serde_json::Map<String, serde_json::Value> = edge
        .metrics()
        .dependencies()
        .into_iter()
        .map(|(name, up)| (name, json!(if up { "up" } else { "down" })))
        .collect();
    match edge.router().table() {
        Some(table) => {
            let body = json!({
                "status": "ready",
                "table_version": table.version(),
                "operators": table.operator_count(),
                "rules": table.rule_count(),
                "dependencies": dependencies,
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        None => {
            let body = json!({
                "status": "not_ready",
                "reason": "no routing table has been loaded yet",
                "dependencies": dependencies,
            });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn metrics(State(edge): State<Edge>) -> Response {
    match edge.metrics().render() {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::warn!(%error, "render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    }
}
