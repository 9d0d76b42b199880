//! Adapters from the routing core's traits to the real servers.

pub mod nats;
pub mod postgres;
pub mod redis;
