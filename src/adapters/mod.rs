//! Real implementations of the core's ports over network clients.

pub mod redis;
