//! The routing-engine binary.
fn main() {}
