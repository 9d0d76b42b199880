//! The implementations of the core's ports over real infrastructure.

pub mod postgres;
