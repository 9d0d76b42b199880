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
#[cfg(feature = "real")]
pub mod adapters;
pub mod core;
#[cfg(feature = "real")]
pub mod loader;
pub mod secret;
pub mod source;
#[cfg(feature = "real")]
pub mod tools;

/// The generated gRPC types of `proto/routing/v1/routing.proto`.
pub mod proto {
    tonic::include_proto!("routing.v1");

    /// Encoded descriptors of the contract, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("routing_descriptor");
}
