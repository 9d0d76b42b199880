//! Publishes an operator-health event into the `OPERATOR_HEALTH` stream, for
//! the platform's operators and for tests; `publish-health` on the command line.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context as _};
use async_nats::jetstream;

use crate::adapters::nats::{
    authenticated_options, is_subject_token, HealthSubjects, MAX_EVENT_BYTES,
};
use crate::core::clock::SystemClock;
use crate::core::health::{HealthEvent, HealthStatus};
use crate::core::ports::Clock;

/// Replies to the publisher's requests (stream acknowledgements) arrive under
/// this prefix; its NATS user may subscribe here only.
pub const PUBLISHER_INBOX_PREFIX: &str = "_INBOX_operator_health_pub";

/// A connection that publishes health events and waits for the stream to
/// store each one.
#[derive(Debug)]
pub struct HealthPublisher {
    jetstream: jetstream::Context,
    subjects: HealthSubjects,
}

impl HealthPublisher {
    /// Connects to `nats_url` with the credentials at `creds`, if any.
    pub async fn connect(
        nats_url: &str,
        creds: Option<&Path>,
        subjects: HealthSubjects,
    ) -> anyhow::Result<HealthPublisher> {
        let client = authenticated_options(creds)
            .await?
            .name("operator-health-publisher")
            .custom_inbox_prefix(PUBLISHER_INBOX_PREFIX)
            .connect(nats_url)
            .await
            .with_context(|| format!("connect to NATS at {nats_url}"))?;
        Ok(HealthPublisher {
            jetstream: jetstream::new(client),
            subjects,
        })
    }

    /// Creates the stream with the settings of `HealthSubjects::stream_config`
    /// unless it exists; an existing stream is left as it is.
    pub async fn ensure_stream(&self) -> anyhow::Result<()> {
        let config = self.subjects.stream_config();
        self.jetstream
            .get_or_create_stream(config)
            .await
            .with_context(|| format!("create stream {}", self.subjects.stream))?;
        Ok(())
    }

    /// Publishes `event` on its operator's subject; returns the stream
    /// sequence it was stored under.
    pub async fn publish(&self, event: &HealthEvent) -> anyhow::Result<u64> {
        ensure!(
            is_subject_token(&event.operator_id),
            "operator id {:?} cannot be a subject token",
            event.operator_id
        );
        let payload = serde_json::to_vec(event).context("encode health event")?;
        ensure!(
            payload.len() <= MAX_EVENT_BYTES,
            "health event is {} bytes, more than {MAX_EVENT_BYTES}",
            payload.len()
        );

        let subject = self.subjects.subject(&event.operator_id);
        let ack = self
            .jetstream
            .publish(subject.clone(), payload.into())
            .await
            .with_context(|| format!("publish to {subject}"))?
            .await
            .with_context(|| format!("store event on {subject}"))?;
        Ok(ack.sequence)
    }
}

/// Publishes one event on the production stream and subjects, creating the
/// stream first when `ensure_stream` is set. Returns the stream sequence.
pub async fn publish(
    nats_url: &str,
    creds: Option<&Path>,
    event: &HealthEvent,
    ensure_stream: bool,
) -> anyhow::Result<u64> {
    let publisher = HealthPublisher::connect(nats_url, creds, HealthSubjects::default()).await?;
    if ensure_stream {
        publisher.ensure_stream().await?;
    }
    publisher.publish(event).await
}

/// `publish-health`: publish one operator-health event.
#[derive(Clone, Debug, clap::Args)]
pub struct PublishHealthArgs {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Credentials file: a NATS `.creds` file or a bare NKey user seed.
    #[arg(long)]
    pub creds: Option<PathBuf>,
    /// Operator id, as in the routing table.
    #[arg(long)]
    pub operator: String,
    /// up, degraded or down.
    #[arg(long, value_parser = parse_status)]
    pub status: HealthStatus,
    /// Per-operator sequence; must grow. Defaults to the current time in ms.
    #[arg(long)]
    pub sequence: Option<u64>,
    /// Free text saying why.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Create the stream first if it does not exist.
    #[arg(long)]
    pub create_stream: bool,
}

impl PublishHealthArgs {
    /// The event these arguments describe, observed now.
    pub fn event(&self) -> HealthEvent {
        let now_ms = SystemClock.now_unix_ms();
        HealthEvent {
            operator_id: self.operator.clone(),
            status: self.status,
            sequence: self.sequence.unwrap_or(now_ms.max(0) as u64),
            observed_at_ms: now_ms,
            reason: self.reason.clone(),
        }
    }

    /// Publishes the event; prints the stream sequence it was stored under.
    pub async fn run(&self) -> anyhow::Result<()> {
        let event = self.event();
        let creds = self.creds.as_deref();
        let seq = publish(&self.nats_url, creds, &event, self.create_stream).await?;
        println!("stored {} as stream sequence {seq}", event.operator_id);
        Ok(())
    }
}

fn parse_status(text: &str) -> Result<HealthStatus, String> {
    match text {
        "up" => Ok(HealthStatus::Up),
        "degraded" => Ok(HealthStatus::Degraded),
        "down" => Ok(HealthStatus::Down),
        other => Err(format!("{other:?} is not one of up, degraded, down")),
    }
}
