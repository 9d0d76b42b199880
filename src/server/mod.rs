//! The service's edges: mutual-TLS gRPC for `sms-orchestrator`, and HTTP on
//! the pod's loopback for probes and Prometheus.
//!
//! - [`grpc`]: the `RoutingEngine` service and the one error-to-status map;
//!   the only part compiled without the `real` feature, for the simulation.
//! - `edge`: the state the edges share and the routes served (real build).
//! - `http`: `/health`, `/ready` and `/metrics` (real build).
//! - `tls`: certificates, the TLS accept loop and the client channel
//!   (real build only: TLS is not simulated).
//! - `identity`: which callers' client certificates are admitted.
//! - `tls_reload`: picks up renewed certificates without a restart.

pub mod grpc;

#[cfg(feature = "real")]
mod edge;
#[cfg(feature = "real")]
pub mod http;
#[cfg(all(feature = "real", not(madsim)))]
pub mod identity;
#[cfg(all(feature = "real", not(madsim)))]
pub mod tls;
#[cfg(all(feature = "real", not(madsim)))]
pub mod tls_reload;

#[cfg(feature = "real")]
pub use edge::{Edge, EdgeError};
