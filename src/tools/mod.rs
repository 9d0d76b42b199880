//! Operator tools shipped in the binary as subcommands.

#[cfg(not(madsim))]
pub mod loadgen;
pub mod nkey;
pub mod publish_health;
