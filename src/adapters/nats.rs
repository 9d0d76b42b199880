//! Operator health from NATS JetStream: the bus the routing core reads health
//! events from, and the stream settings and credentials both sides share.
//!
//! The security model names the subject `operator.health`. It is refined to
//! one subject per operator, `operator.health.<operator_id>`, captured by the
//! stream `OPERATOR_HEALTH` (`operator.health.>`), which keeps the last few
//! events of every operator. The bus reads it through an ordered consumer
//! that starts with the last event of each subject, so a replica learns every
//! operator's current state at start, then follows live events. The service
//! never creates or changes the stream; see `docs/HEALTH_EVENTS.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::core::health::HealthEvent;
use crate::core::ports::{BusMessage, HealthBus, Rejection};

/// Where the service's NATS credentials are mounted.
pub const DEFAULT_CREDS_PATH: &str = "/run/secrets/nats/nkey.creds";

/// The largest health event, in bytes of JSON. The stream refuses larger
/// messages and the bus rejects them too, in case a stream allows more.
pub const MAX_EVENT_BYTES: usize = 4096;

/// Events the stream keeps per operator: the current state plus a few before
/// it, for diagnosis.
pub const EVENTS_KEPT_PER_OPERATOR: i64 = 5;

/// How long the stream keeps an event. A replica starting after the
/// publisher fell silent for longer learns nothing rather than old news.
pub const EVENT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Replies to the service's JetStream requests and its consumer deliveries
/// arrive under this prefix; its NATS user may subscribe here only.
pub const SERVICE_INBOX_PREFIX: &str = "_INBOX_routing_engine";

/// How long to wait before trying again to open the consumer.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// The stream and subjects health events travel on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSubjects {
    /// JetStream stream name.
    pub stream: String,
    /// Subject prefix; an operator's events go to `<prefix>.<operator_id>`.
    pub prefix: String,
}

impl Default for HealthSubjects {
    fn default() -> Self {
        HealthSubjects {
            stream: "OPERATOR_HEALTH".into(),
            prefix: "operator.health".into(),
        }
    }
}

impl HealthSubjects {
    /// The subject of `operator_id`'s events.
    pub fn subject(&self, operator_id: &str) -> String {
        format!("{}.{operator_id}", self.prefix)
    }

    /// The subjects of every operator.
    pub fn filter(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The operator a subject belongs to, if it is one of ours.
    pub fn operator_of<'s>(&self, subject: &'s str) -> Option<&'s str> {
        let rest = subject.strip_prefix(self.prefix.as_str())?;
        rest.strip_prefix('.').filter(|id| !id.is_empty())
    }

    /// The stream as the publishing side creates it.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            description: Some("Operator health events, last few per operator".into()),
            subjects: vec![self.filter()],
            max_messages_per_subject: EVENTS_KEPT_PER_OPERATOR,
            max_message_size: MAX_EVENT_BYTES as i32,
            max_age: EVENT_MAX_AGE,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..stream::Config::default()
        }
    }
}

/// Whether `id` can be the last token of a subject, as an operator id must.
pub fn is_subject_token(id: &str) -> bool {
    !id.is_empty()
        && !id
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

/// Why the health bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsBusError {
    #[error("read NATS credentials {path}: {source}")]
    ReadCredentials {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("NATS credentials {path} hold neither a user JWT and seed nor an NKey user seed")]
    UnrecognisedCredentials { path: PathBuf },
    #[error("connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
}

/// A credential's secret text; `Debug` never shows it.
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a credentials file holds.
#[derive(Debug, PartialEq, Eq)]
enum CredsKind {
    /// A `.creds` file: a user JWT and its NKey seed.
    UserJwt,
    /// A bare NKey user seed, `SU...`.
    Seed(SeedText),
    Unrecognised,
}

/// The trimmed seed of a bare-seed file.
#[derive(PartialEq, Eq)]
struct SeedText(String);

impl fmt::Debug for SeedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SeedText(<redacted>)")
    }
}

fn creds_kind(text: &Secret) -> CredsKind {
    let text = text.0.trim();
    if text.contains("-----BEGIN NATS USER JWT-----") {
        return CredsKind::UserJwt;
    }
    let one_token = !text.is_empty() && !text.contains(char::is_whitespace);
    if one_token && text.starts_with("SU") {
        return CredsKind::Seed(SeedText(text.to_owned()));
    }
    CredsKind::Unrecognised
}

/// Judges credentials text without connecting: a `.creds` file must hold a
/// user JWT and a valid NKey user seed, a bare seed must be a valid NKey user
/// seed. The answer names what is wrong, never the text.
pub fn credentials_problem(text: &str) -> Option<&'static str> {
    match creds_kind(&Secret(text.to_owned())) {
        CredsKind::UserJwt => async_nats::ConnectOptions::with_credentials(text)
            .err()
            .map(|_| "malformed: a .creds file needs a user JWT and a valid NKey user seed"),
        CredsKind::Seed(seed) => nkeys::KeyPair::from_seed(&seed.0)
            .err()
            .map(|_| "malformed: not a valid NKey user seed"),
        CredsKind::Unrecognised => {
            Some("malformed: neither a .creds file nor an NKey user seed (SU...)")
        }
    }
}

/// Connection options authenticated with the credentials at `creds`: a
/// `.creds` file (user JWT and seed) or a bare NKey user seed. `None`
/// connects without credentials, as on a development server. Only the path
/// is ever logged.
pub async fn authenticated_options(
    creds: Option<&Path>,
) -> Result<async_nats::ConnectOptions, NatsBusError> {
    let Some(path) = creds else {
        return Ok(async_nats::ConnectOptions::new());
    };
    let read_error = |source| NatsBusError::ReadCredentials {
        path: path.to_owned(),
        source,
    };

    let text = Secret(tokio::fs::read_to_string(path).await.map_err(read_error)?);
    match creds_kind(&text) {
        CredsKind::UserJwt => async_nats::ConnectOptions::new()
            .credentials_file(path)
            .await
            .map_err(read_error),
        CredsKind::Seed(seed) => Ok(async_nats::ConnectOptions::new().nkey(seed.0)),
        CredsKind::Unrecognised => Err(NatsBusError::UnrecognisedCredentials {
            path: path.to_owned(),
        }),
    }
}

/// NATS server addresses for logs and messages: any `user:password@` (or
/// token) before the host is replaced, in each comma-separated address.
pub fn without_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            match rest.rsplit_once('@') {
                Some((_, host)) if scheme.is_empty() => format!("***@{host}"),
                Some((_, host)) => format!("{scheme}://***@{host}"),
                None => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// How the service reaches the health stream.
#[derive(Clone, Debug)]
pub struct NatsBusSettings {
    pub url: String,
    /// `None`: no authentication (development servers only).
    pub creds: Option<PathBuf>,
    pub subjects: HealthSubjects,
    /// Client name shown by the server's monitoring.
    pub client_name: String,
}

impl Default for NatsBusSettings {
    fn default() -> Self {
        NatsBusSettings {
            url: "nats://127.0.0.1:4222".into(),
            creds: Some(PathBuf::from(DEFAULT_CREDS_PATH)),
            subjects: HealthSubjects::default(),
            client_name: "routing-engine".into(),
        }
    }
}

/// The health bus over a JetStream ordered consumer. Reconnects are the
/// client's own; after one the consumer is reopened just past the last
/// stream message seen, so no state is replayed and none is missed.
pub struct NatsHealthBus {
    jetstream: jetstream::Context,
    subjects: HealthSubjects,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    messages: Option<consumer::pull::Ordered>,
    /// Stream sequence of the last message delivered; 0 before the first.
    last_stream_seq: u64,
    consumer_base: String,
    consumers_opened: u64,
    /// Consecutive failures to open the consumer; only the first is a
    /// warning, so a missing stream does not flood the log.
    open_failures: u32,
    connected: bool,
}

impl fmt::Debug for NatsHealthBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsHealthBus")
            .field("subjects", &self.subjects)
            .field("last_stream_seq", &self.last_stream_seq)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl NatsHealthBus {
    /// Connects and authenticates; fails fast when the server is unreachable
    /// or refuses the credentials. The consumer opens on the first `next`.
    pub async fn connect(settings: &NatsBusSettings) -> Result<NatsHealthBus, NatsBusError> {
        let creds_path = settings.creds.as_deref().map(Path::display);
        tracing::info!(
            nats.url = %without_credentials(&settings.url),
            nats.creds = creds_path.map(tracing::field::display),
            stream = %settings.subjects.stream,
            "connecting to the health bus"
        );

        let (events_tx, events) = mpsc::unbounded_channel();
        let client = authenticated_options(settings.creds.as_deref())
            .await?
            .name(&settings.client_name)
            .custom_inbox_prefix(SERVICE_INBOX_PREFIX)
            .event_callback(move |event| {
                let events_tx = events_tx.clone();
                async move {
                    events_tx.send(event).ok();
                }
            })
            .connect(settings.url.as_str())
            .await
            .map_err(|source| NatsBusError::Connect {
                url: without_credentials(&settings.url),
                source,
            })?;

        // The inbox ends in a unique token: it names this replica's consumers.
        let inbox = client.new_inbox();
        let unique = inbox.rsplit('.').next().unwrap_or("0").to_owned();
        Ok(NatsHealthBus {
            jetstream: jetstream::new(client),
            subjects: settings.subjects.clone(),
            events,
            messages: None,
            last_stream_seq: 0,
            consumer_base: format!("{}-{unique}", settings.client_name),
            consumers_opened: 0,
            open_failures: 0,
            connected: true,
        })
    }

    /// Opens an ordered consumer: the last event of every operator when
    /// nothing was seen yet, otherwise everything after the last one seen.
    async fn open(&mut self) -> Result<consumer::pull::Ordered, async_nats::Error> {
        // Limitation: resuming by stream sequence assumes the stream was not
        // deleted and recreated meanwhile; a recreated stream restarts its
        // sequences and events below the last one seen would be skipped.
        let deliver_policy = match self.last_stream_seq {
            0 => consumer::DeliverPolicy::LastPerSubject,
            seen => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: seen + 1,
            },
        };
        self.consumers_opened += 1;
        let config = consumer::pull::OrderedConfig {
            name: Some(format!("{}-{}", self.consumer_base, self.consumers_opened)),
            filter_subject: self.subjects.filter(),
            deliver_policy,
            ..consumer::pull::OrderedConfig::default()
        };

        let consumer = self
            .jetstream
            .create_consumer_on_stream(config, &self.subjects.stream)
            .await?;
        let messages = consumer.messages().await?;
        tracing::debug!(
            stream = %self.subjects.stream,
            after_stream_seq = self.last_stream_seq,
            "health consumer opened"
        );
        Ok(messages)
    }

    /// Turns one stream message into what the core sees.
    fn decode(&mut self, message: jetstream::Message) -> BusMessage {
        if let Ok(info) = message.info() {
            self.last_stream_seq = info.stream_sequence;
        }
        decode(&self.subjects, &message.subject, &message.payload)
    }

    /// Reacts to a connection event; returns what the core must hear of it.
    fn on_event(&mut self, event: async_nats::Event) -> Option<BusMessage> {
        match event {
            async_nats::Event::Connected => {
                self.connected = true;
                // Without a consumer, a connection alone carries no health.
                (self.open_failures == 0).then_some(BusMessage::Connected)
            }
            async_nats::Event::Disconnected => {
                // The server may restart and lose the ephemeral consumer.
                // Dropping it now also stops the client library's own
                // recovery requests; a fresh consumer opens on reconnect,
                // just past the last message delivered here.
                self.connected = false;
                self.messages = None;
                Some(BusMessage::Disconnected)
            }
            async_nats::Event::ServerError(e) => {
                tracing::warn!(error = %e, "health bus server error");
                None
            }
            other => {
                tracing::debug!(event = %other, "health bus connection event");
                None
            }
        }
    }
}

/// Checks size, schema and subject of one message's payload.
pub fn decode(subjects: &HealthSubjects, subject: &str, payload: &[u8]) -> BusMessage {
    if payload.len() > MAX_EVENT_BYTES {
        return BusMessage::Rejected(Rejection::Oversized);
    }
    let Ok(event) = serde_json::from_slice::<HealthEvent>(payload) else {
        return BusMessage::Rejected(Rejection::Malformed);
    };
    if subjects.operator_of(subject) != Some(event.operator_id.as_str()) {
        return BusMessage::Rejected(Rejection::SubjectMismatch);
    }
    BusMessage::Event(event)
}

/// The next message of the consumer, or never when there is none.
async fn next_message(
    messages: &mut Option<consumer::pull::Ordered>,
) -> Option<Result<jetstream::Message, consumer::pull::OrderedError>> {
    match messages {
        Some(messages) => messages.next().await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl HealthBus for NatsHealthBus {
    async fn next(&mut self) -> Option<BusMessage> {
        loop {
            let mut reopen_wait = Duration::ZERO;
            if self.messages.is_none() && self.connected {
                match self.open().await {
                    Ok(messages) => {
                        let recovered = self.open_failures > 0;
                        self.open_failures = 0;
                        self.messages = Some(messages);
                        if recovered {
                            // Health flows again: the bus is up for the core.
                            tracing::info!(stream = %self.subjects.stream, "health consumer open");
                            return Some(BusMessage::Connected);
                        }
                    }
                    Err(e) => {
                        self.open_failures = self.open_failures.saturating_add(1);
                        if self.open_failures == 1 {
                            tracing::warn!(
                                stream = %self.subjects.stream,
                                error = %e,
                                "health consumer did not open; retrying quietly"
                            );
                            // Connected to a server without the stream (or the
                            // right to consume it) is no health at all: say the
                            // bus is down, so readiness and metrics show it.
                            return Some(BusMessage::Disconnected);
                        }
                        tracing::debug!(error = %e, "health consumer did not open");
                        reopen_wait = REOPEN_AFTER * self.open_failures.min(10);
                    }
                }
            }

            tokio::select! {
                event = self.events.recv() => match event {
                    Some(async_nats::Event::Closed) | None => return None,
                    Some(event) => {
                        if let Some(message) = self.on_event(event) {
                            return Some(message);
                        }
                    }
                },
                message = next_message(&mut self.messages) => match message {
                    Some(Ok(message)) => return Some(self.decode(message)),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "health consumer hiccup");
                    }
                    None => self.messages = None,
                },
                _ = tokio::time::sleep(reopen_wait), if !reopen_wait.is_zero() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_nats_urls_are_not_shown() {
        let shown = without_credentials("nats://user:pw-7f@a:4222, tls://tok-9@b:4222,nats://c");
        assert_eq!(shown, "nats://***@a:4222, tls://***@b:4222,nats://c");
        assert!(!shown.contains("pw-7f") && !shown.contains("tok-9"));
    }

    fn secret(text: &str) -> Secret {
        Secret(text.into())
    }

    #[test]
    fn credentials_are_told_apart_and_never_shown() {
        let creds = "-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n\n\
                     -----BEGIN USER NKEY SEED-----\nSUAM\n------END USER NKEY SEED------\n";
        assert_eq!(creds_kind(&secret(creds)), CredsKind::UserJwt);

        let seed = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY";
        let kind = creds_kind(&secret(&format!("\n{seed}\n")));
        assert_eq!(kind, CredsKind::Seed(SeedText(seed.into())));
        assert!(!format!("{kind:?}").contains("SUAC"));
        assert!(!format!("{:?}", secret(seed)).contains("SUAC"));

        assert_eq!(creds_kind(&secret("UABC")), CredsKind::Unrecognised);
        assert_eq!(creds_kind(&secret("")), CredsKind::Unrecognised);
    }

    #[test]
    fn messages_are_checked_for_size_schema_and_subject() {
        let subjects = HealthSubjects::default();
        let body = br#"{"operator_id":"op-a","status":"down","sequence":3,"observed_at_ms":1}"#;
        let ok = decode(&subjects, "operator.health.op-a", body);
        assert!(matches!(ok, BusMessage::Event(e) if e.sequence == 3));

        let other = decode(&subjects, "operator.health.op-b", body);
        assert_eq!(other, BusMessage::Rejected(Rejection::SubjectMismatch));
        let extra =
            br#"{"operator_id":"op-a","status":"up","sequence":3,"observed_at_ms":1,"x":1}"#;
        let extra = decode(&subjects, "operator.health.op-a", extra);
        assert_eq!(extra, BusMessage::Rejected(Rejection::Malformed));
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        let big = decode(&subjects, "operator.health.op-a", &big);
        assert_eq!(big, BusMessage::Rejected(Rejection::Oversized));

        assert_eq!(subjects.operator_of("operator.healthy.op-a"), None);
        assert_eq!(subjects.operator_of("operator.health."), None);
        assert!(!is_subject_token("a.b") && !is_subject_token("") && is_subject_token("op-a"));
    }
}
