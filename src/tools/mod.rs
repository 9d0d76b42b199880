//! Operator tools shipped in the binary as subcommands.

pub mod nkey;
pub mod publish_health;
