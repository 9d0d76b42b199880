//! The simulation of routing-engine: replicas, clients and stand-ins for
//! PostgreSQL, Redis and NATS on madsim, with faults and invariants.
//!
//! Only the `--cfg madsim` build runs it (`sim/run` builds and starts it);
//! the normal build compiles this file alone and says how to run it.

#[cfg(madsim)]
mod app;
#[cfg(madsim)]
mod checker;
#[cfg(madsim)]
mod clock;
#[cfg(madsim)]
mod data;
#[cfg(madsim)]
mod faults;
#[cfg(madsim)]
mod options;
#[cfg(madsim)]
mod reference;
#[cfg(madsim)]
mod report;
#[cfg(madsim)]
mod rpc;
#[cfg(madsim)]
mod standins;
#[cfg(madsim)]
mod world;

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    app::main()
}

#[cfg(not(madsim))]
fn main() {
    eprintln!("routing-engine-sim runs only in the madsim build: use sim/run");
}
