//! Operator tools shipped in the binary as subcommands.

pub mod publish_health;
