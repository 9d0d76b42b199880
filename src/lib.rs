//! routing-engine chooses the operator that carries each outbound SMS.
//!
//! - [`core`]: the routing decision, written against traits for the clock,
//!   the table store, the cache and the health bus; no network client here.
//! - [`adapters`]: the real clients behind those traits (Redis); only in the
//!   `real` build.
pub mod core;

#[cfg(feature = "real")]
pub mod adapters;

/// The generated gRPC types of `proto/routing/v1/routing.proto`.
pub mod proto {
    tonic::include_proto!("routing.v1");

    /// Encoded descriptors of the contract, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("routing_descriptor");
}
