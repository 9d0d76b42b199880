//! routing-engine chooses the operator that carries each outbound SMS.
//!
//! - [`core`]: the routing decision, written against traits for the clock,
//!   the table store, the cache and the health bus; no network client here.
//! - [`source`]: reads and checks the routing files (number ranges, CSVs).
//! - [`secret`]: a wrapper that keeps credentials out of logs and output.
//! - `adapters` (real build only): the core's traits over PostgreSQL, Redis
//!   and NATS.
//! - `loader` (real build only): checks the files, then writes them to
//!   PostgreSQL.
//! - `tools` (real build only): operator tools such as `publish-health`.
//! - [`server`]: the gRPC service (every build, the simulation serves it
//!   too), its mutual TLS and the management HTTP endpoints (real build).
//! - [`metrics`]: the Prometheus registry the service owns.
//! - `config`: the `serve` configuration and the start-up secrets check.
//! - `devmode`: throwaway certificates and file-backed tables for a
//!   workstation (real build, never production).
//! - `client`: the `route` command's gRPC client.
//! - `service`: assembles `serve` from the router, the reloader, Redis and NATS.
#[cfg(feature = "real")]
pub mod adapters;
pub mod core;
#[cfg(feature = "real")]
pub mod loader;
pub mod secret;
pub mod source;
#[cfg(feature = "real")]
pub mod tools;

#[cfg(all(feature = "real", not(madsim)))]
pub mod client;
#[cfg(feature = "real")]
pub mod config;
#[cfg(all(feature = "real", not(madsim)))]
pub mod devmode;
pub mod metrics;
pub mod server;
#[cfg(feature = "real")]
pub mod service;

/// The generated gRPC types of `proto/routing/v1/routing.proto`.
pub mod proto {
    tonic::include_proto!("routing.v1");

    /// Encoded descriptors of the contract, for server reflection.
    /// Read from `OUT_DIR` directly: madsim's tonic has no macro for it.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/routing_descriptor.bin"));
}
