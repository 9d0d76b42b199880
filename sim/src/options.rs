//! The simulation's command line: seed, duration, faults, scenario and the
//! planted mistake, everything a replay needs.

use std::path::PathBuf;

use clap::Parser;

/// Runs routing-engine replicas, clients and their dependencies on madsim.
#[derive(Parser, Debug, Clone)]
#[command(name = "routing-engine-sim")]
pub struct Options {
    /// Seed of the run; the same seed gives the same run.
    #[arg(long, env = "MADSIM_TEST_SEED", default_value_t = 1)]
    pub seed: u64,

    /// Runs this many consecutive seeds from `--seed` on.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,

    /// Simulated seconds per run; faults heal 15 s before the end.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,

    /// `all`, `none`, or a comma list of fault names, each optionally with
    /// its knob: `db-latency=300,nats-drop=0.5`.
    #[arg(long, default_value = "all")]
    pub faults: String,

    /// `default` (random time of day), `night` (starts just before the
    /// 22:00 UTC night rules) or `steady` (no traffic bursts).
    #[arg(long, default_value = "default")]
    pub scenario: String,

    /// Switches on one planted mistake of the routing code.
    #[arg(long)]
    pub planted: Option<String>,

    /// routing-engine replicas.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,

    /// sms-orchestrator clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,

    /// Requests per simulated second over all clients, outside bursts.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,

    /// Runs each seed twice in separate processes and compares event logs.
    #[arg(long)]
    pub check_determinism: bool,

    /// Where the picture and the event log go.
    #[arg(long, default_value = "target/sim")]
    pub out: PathBuf,

    /// Prints only the summary.
    #[arg(long)]
    pub quiet: bool,
}

impl Options {
    /// The one command that replays `seed` with these options.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut cmd = format!(
            "sim/run --seed {seed} --duration {} --faults {} --scenario {} --replicas {} \
             --clients {} --rate {}",
            self.duration, self.faults, self.scenario, self.replicas, self.clients, self.rate
        );
        if let Some(planted) = &self.planted {
            cmd.push_str(&format!(" --planted {planted}"));
        }
        cmd
    }
}
