//! The Redis adapter: throughput limits shared by every replica and the
//! portability cache. Whatever Redis returns is checked before it is used.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, ConnectionAddr, ErrorKind, RedisError, Script};
use async_trait::async_trait;

use crate::core::ports::{Admission, Cache, PortError};
use crate::core::table::is_network_name;

const WHAT: &str = "redis";

/// Length of the window every limit is counted over, in microseconds.
const WINDOW_US: u64 = 1_000_000;

/// Keys of an operator left idle this long vanish; after one window idle
/// they hold nothing that still counts.
const LOG_IDLE_TTL_MS: u64 = 2_000;

/// Each operator's limit as an exact sliding-window log, atomic in Redis.
///
/// Why a log and not a token bucket: a bucket of `limit` parts refilled at
/// `limit` parts per second lets an idle operator take a full bucket and then
/// the refill within the same second, so up to 2 x `limit` parts pass in one
/// second. Operators enforce their TPS over any second, so the limiter keeps
/// the admissions of the last second and admits only while they and the new
/// message fit in `limit`: no window of one second (aligned or not) ever
/// holds more than `limit` parts, and an idle operator still admits `limit`
/// parts at once.
///
/// What it costs: O(admissions in the last second) memory per operator, at
/// most `limit` members (every member holds at least one part), and per call
/// O(log n) plus the members that expire, each decoded once.
///
/// Time comes from Redis `TIME`, so replicas with skewed clocks agree.
///
/// KEYS[1] the log, a sorted set of admissions scored by their time in
/// microseconds; a member is `<cumulative>:<parts>`, the cumulative count of
/// parts admitted through it (zero-padded to 16 digits, so members that tie
/// on time sort in admission order, and unique) and its own parts. KEYS[2]
/// the running total of parts in the log, a decimal string.
/// ARGV[1] limit in parts; ARGV[2] parts wanted; ARGV[3] window in
/// microseconds; ARGV[4] idle TTL in ms.
///
/// Expired members (time <= now - window) are removed and their parts
/// subtracted; the total is then checked against what is left: the newest
/// member's cumulative count minus the oldest's, plus the oldest's parts.
/// The log is rebuilt empty (and reported) when a key has the wrong type,
/// the total is not a non-negative integer, a member does not decode or is
/// dated more than a window ahead, or the total disagrees with the members.
/// A total above `limit` that the members account for is not corrupt: the
/// limit was lowered, or replicas briefly run different tables, and it
/// throttles until those parts leave the window.
/// A new member is dated no earlier than the newest, so a clock that steps
/// back delays expiry rather than reordering the log.
///
/// Returns `{admitted, repaired, at}`: 0 or 1, 0 or 1, and the time in
/// microseconds the admission was logged at (0 when throttled).
const LOG_SCRIPT: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local log_key, total_key = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
local parts = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

-- Numbers reach Redis as text; the default conversion keeps 14 digits only.
local function text(n) return string.format('%.0f', n) end

-- A non-negative integer in decimal digits, exact as a Lua number, or nil.
local function count(s)
  if type(s) ~= 'string' or #s < 1 or #s > 16 or not string.match(s, '^%d+$') then
    return nil
  end
  local n = tonumber(s)
  if n > 9007199254740991 then return nil end
  return n
end

-- A member's cumulative count and parts, or nil.
local function decode(member)
  local cum, p = string.match(member, '^(%d+):(%d+)$')
  if cum == nil or #cum ~= 16 then return nil end
  cum, p = count(cum), count(p)
  if p == nil or p < 1 or p > cum then return nil end
  return cum, p
end

-- The total after expiry, the newest member's time and cumulative count;
-- nil when the stored state does not validate.
local function load()
  local log_kind = redis.call('TYPE', log_key)['ok']
  local total_kind = redis.call('TYPE', total_key)['ok']
  if log_kind == 'none' and total_kind == 'none' then return 0, 0, 0 end
  if total_kind ~= 'string' or (log_kind ~= 'zset' and log_kind ~= 'none') then
    return nil
  end
  local total = count(redis.call('GET', total_key))
  if total == nil then return nil end

  local horizon = text(now - window)
  local expired = redis.call('ZRANGEBYSCORE', log_key, '-inf', horizon)
  for _, member in ipairs(expired) do
    local _, p = decode(member)
    if p == nil then return nil end
    total = total - p
  end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', log_key, '-inf', horizon) end
  if total < 0 then return nil end

  local left = redis.call('ZCARD', log_key)
  if left == 0 then
    if total ~= 0 then return nil end
    return 0, 0, 0
  end
  local oldest = redis.call('ZRANGE', log_key, 0, 0)
  local newest = redis.call('ZRANGE', log_key, -1, -1, 'WITHSCORES')
  local first_cum, first_parts = decode(oldest[1])
  local last_cum = decode(newest[1])
  local stamp = tonumber(newest[2])
  if first_cum == nil or last_cum == nil or stamp == nil then return nil end
  if last_cum - first_cum + first_parts ~= total or left > total
    or stamp > now + window then
    return nil
  end
  return total, stamp, last_cum
end

local total, stamp, cum = load()
local repaired = 0
if total == nil then
  redis.call('DEL', log_key, total_key)
  total, stamp, cum, repaired = 0, 0, 0, 1
end

local admitted, at = 0, 0
if total + parts <= limit then
  at = math.max(now, stamp)
  cum = cum + parts
  total = total + parts
  redis.call('ZADD', log_key, text(at), string.format('%016.0f:%.0f', cum, parts))
  admitted = 1
end
redis.call('SET', total_key, text(total), 'PX', text(ttl_ms))
if total > 0 then redis.call('PEXPIRE', log_key, text(ttl_ms)) end
return {admitted, repaired, at}
"#;

/// A Redis URL; it may hold the password, so it never prints.
#[derive(Clone)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn new(url: impl Into<String>) -> RedisUrl {
        RedisUrl(url.into())
    }

    /// The URL itself, for the client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisUrl(<redacted>)")
    }
}

/// How to reach Redis and how long to trust what is kept there.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// From `REDIS_URL`; the password, if any, is in the URL.
    pub url: RedisUrl,
    /// Every key starts with this and a `:`.
    pub key_prefix: String,
    /// Bound on every command, the whole round trip.
    pub call_timeout: Duration,
    /// Bound on establishing the first connection.
    pub connect_timeout: Duration,
    pub ported_ttl: Duration,
    pub not_ported_ttl: Duration,
}

impl RedisSettings {
    /// The defaults for `url`.
    pub fn new(url: RedisUrl) -> RedisSettings {
        RedisSettings {
            url,
            key_prefix: "routing-engine:v1".into(),
            call_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(2),
            ported_ttl: Duration::from_secs(3_600),
            not_ported_ttl: Duration::from_secs(600),
        }
    }
}

/// Why the Redis cache could not be set up. No variant holds the URL or
/// the password.
#[derive(Debug, thiserror::Error)]
pub enum RedisCacheError {
    #[error("REDIS_URL is not a valid Redis URL")]
    InvalidUrl,
    #[error("redis at {addr} refused the credentials in REDIS_URL: {detail}")]
    AuthenticationFailed { addr: String, detail: String },
    #[error("connect to redis at {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("connect to redis at {addr}: no connection within {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
}

/// Counters a metrics exporter reads; monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Portability answers found in Redis.
    pub hits: u64,
    /// Portability lookups Redis did not answer (absent, corrupt or failed).
    pub misses: u64,
    /// Values that did not validate: admission logs rebuilt, portability
    /// entries ignored.
    pub corrupt: u64,
    /// Commands that failed or timed out.
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The portability entry a value decodes to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PortedEntry {
    Ported(String),
    NotPorted,
}

impl PortedEntry {
    fn encode(network: Option<&str>) -> String {
        match network {
            Some(net) => format!("p:{net}"),
            None => "n".into(),
        }
    }

    /// The entry stored for `e164`, if `value` is one it could hold.
    fn decode(value: &[u8], e164: &str) -> Option<PortedEntry> {
        let text = std::str::from_utf8(value).ok()?;
        if text == "n" {
            return Some(PortedEntry::NotPorted);
        }
        let net = text.strip_prefix("p:")?;
        is_network_of(net, e164).then(|| PortedEntry::Ported(net.to_owned()))
    }
}

/// Longest network name accepted from or into the cache; the numbering
/// data's longest is about half of it.
const MAX_NETWORK_NAME: usize = 100;

/// Whether `net` is a plausible network for `e164`: `cc:Name` (the table's
/// rule) with a country code the number starts with, and a name of bounded
/// length without control characters or quotes.
///
/// The table's rule admits any non-blank name, as the numbering data is
/// checked when it is loaded; a value read back from the cache had no such
/// check, so its name is held to what a network name plausibly looks like.
fn is_network_of(net: &str, e164: &str) -> bool {
    let Some((cc, name)) = net.split_once(':') else {
        return false;
    };
    let digits = e164.strip_prefix('+').unwrap_or(e164);
    let plausible = |c: char| !c.is_control() && !matches!(c, '"' | '\'' | '`' | '\\');

    is_network_name(net)
        && digits.starts_with(cc)
        && name.chars().count() <= MAX_NETWORK_NAME
        && name.chars().all(plausible)
}

/// Shared throughput limits and the portability cache, in Redis.
pub struct RedisCache {
    conn: ConnectionManager,
    script: Script,
    settings: RedisSettings,
    addr: String,
    counters: Arc<Counters>,
}

impl RedisCache {
    /// Connects and checks the connection (and the password) with a `PING`.
    pub async fn connect(settings: RedisSettings) -> Result<RedisCache, RedisCacheError> {
        let cache = Self::build(settings, true).await?;
        let mut conn = cache.conn.clone();
        let after = cache.settings.connect_timeout;
        let ping = tokio::time::timeout(after, conn.ping::<String>()).await;
        match ping {
            Err(_) => Err(RedisCacheError::ConnectTimeout {
                addr: cache.addr.clone(),
                after,
            }),
            Ok(Err(e)) => Err(cache.connect_error(&e)),
            Ok(Ok(_)) => {
                tracing::info!(redis.addr = %cache.addr, "connected to redis");
                Ok(cache)
            }
        }
    }

    /// Sets up without connecting; the first command connects. For starting
    /// while Redis is unreachable.
    pub async fn connect_lazy(settings: RedisSettings) -> Result<RedisCache, RedisCacheError> {
        Self::build(settings, false).await
    }

    async fn build(settings: RedisSettings, eager: bool) -> Result<RedisCache, RedisCacheError> {
        let client = ::redis::Client::open(settings.url.expose())
            .map_err(|_| RedisCacheError::InvalidUrl)?;
        let addr = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                format!("{host}:{port}")
            }
            ConnectionAddr::Unix(path) => path.display().to_string(),
            _ => "redis".into(),
        };

        // Reconnection runs in the background; callers never wait longer
        // than `call_timeout` for it.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.call_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let manager = if eager {
            let connecting = ConnectionManager::new_with_config(client, config);
            let after = settings.connect_timeout;
            match tokio::time::timeout(after, connecting).await {
                Err(_) => return Err(RedisCacheError::ConnectTimeout { addr, after }),
                Ok(result) => result,
            }
        } else {
            ConnectionManager::new_lazy_with_config(client, config)
        };

        let password = password_of(&settings.url);
        let conn = manager.map_err(|e| connect_error(&addr, &e, password.as_deref()))?;
        Ok(RedisCache {
            conn,
            script: Script::new(LOG_SCRIPT),
            settings,
            addr,
            counters: Arc::default(),
        })
    }

    fn connect_error(&self, e: &RedisError) -> RedisCacheError {
        connect_error(&self.addr, e, password_of(&self.settings.url).as_deref())
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            corrupt: c.corrupt.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// `host:port` of the server, for logs.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The operator's admission log and its running total. The braces make
    /// both keys hash to one slot, as a script's keys must on a cluster.
    fn limit_keys(&self, operator_id: &str) -> (String, String) {
        let base = format!("{}:tps:{{{operator_id}}}", self.settings.key_prefix);
        (format!("{base}:log"), format!("{base}:parts"))
    }

    fn ported_key(&self, e164: &str) -> String {
        format!("{}:ported:{e164}", self.settings.key_prefix)
    }

    /// Runs one command within `call_timeout`, counting failures other than
    /// a wrong-type reply (which is corruption, counted by the caller).
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, Failure> {
        let result = match tokio::time::timeout(self.settings.call_timeout, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if is_wrong_type(&e) => return Err(Failure::WrongType),
            Ok(Err(e)) if e.is_timeout() => Failure::Timeout,
            Ok(Err(e)) => Failure::Redis(e),
            Err(_) => Failure::Timeout,
        };
        Counters::bump(&self.counters.errors);
        Err(result)
    }

    fn port_error(&self, failure: Failure) -> PortError {
        match failure {
            Failure::Timeout => PortError::Timeout {
                what: WHAT,
                after: self.settings.call_timeout,
            },
            Failure::WrongType => PortError::Corrupt {
                what: WHAT,
                detail: "a key holds the wrong type".into(),
            },
            Failure::Redis(e) => {
                let password = password_of(&self.settings.url);
                PortError::Unavailable {
                    what: WHAT,
                    detail: redact(&e.to_string(), password.as_deref()),
                }
            }
        }
    }
}

/// Why one command gave no usable reply.
enum Failure {
    Timeout,
    WrongType,
    Redis(RedisError),
}

impl RedisCache {
    /// [`Cache::acquire`], also giving the Redis time, in microseconds since
    /// the epoch, at which an admission was logged (`None` when throttled).
    /// Any one-second span of these times holds at most `limit` parts.
    // Limitation: a message of more parts than `limit` is never admitted, as
    // no window may hold more than `limit` parts.
    pub async fn acquire_logged(
        &self,
        operator_id: &str,
        limit: u32,
        parts: u32,
    ) -> Result<(Admission, Option<u64>), PortError> {
        if limit == 0 {
            return Ok((Admission::Throttled, None));
        }
        let (log_key, total_key) = self.limit_keys(operator_id);
        let mut conn = self.conn.clone();
        let mut invocation = self.script.key(&log_key);
        invocation
            .key(&total_key)
            .arg(limit)
            .arg(parts.max(1))
            .arg(WINDOW_US)
            .arg(LOG_IDLE_TTL_MS);

        let reply = invocation.invoke_async::<(i64, i64, i64)>(&mut conn);
        let (admitted, repaired, at) = self.bounded(reply).await.map_err(|e| self.port_error(e))?;

        if repaired == 1 {
            Counters::bump(&self.counters.corrupt);
            tracing::warn!(
                operator.id = %operator_id,
                "throughput log in redis did not validate; rebuilt empty"
            );
        }
        Ok(if admitted == 1 {
            (Admission::Admitted, u64::try_from(at).ok())
        } else {
            (Admission::Throttled, None)
        })
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn acquire(
        &self,
        operator_id: &str,
        limit: u32,
        parts: u32,
    ) -> Result<Admission, PortError> {
        let (admission, _) = self.acquire_logged(operator_id, limit, parts).await?;
        Ok(admission)
    }

    async fn ping(&self) -> Result<(), PortError> {
        let mut conn = self.conn.clone();
        let ping = redis::cmd("PING");
        self.bounded(ping.query_async::<String>(&mut conn))
            .await
            .map(|_| ())
            .map_err(|e| self.port_error(e))
    }

    async fn ported_network(&self, e164: &str) -> Result<Option<Option<String>>, PortError> {
        let key = self.ported_key(e164);
        let mut conn = self.conn.clone();
        let value = self.bounded(conn.get::<_, Option<Vec<u8>>>(&key)).await;

        let value = match value {
            Ok(value) => value,
            Err(Failure::WrongType) => {
                self.count_corrupt(e164);
                return Ok(None);
            }
            Err(e) => {
                Counters::bump(&self.counters.misses);
                return Err(self.port_error(e));
            }
        };
        let Some(value) = value else {
            Counters::bump(&self.counters.misses);
            return Ok(None);
        };
        match PortedEntry::decode(&value, e164) {
            Some(entry) => {
                Counters::bump(&self.counters.hits);
                Ok(Some(match entry {
                    PortedEntry::Ported(net) => Some(net),
                    PortedEntry::NotPorted => None,
                }))
            }
            None => {
                self.count_corrupt(e164);
                Ok(None)
            }
        }
    }

    async fn remember_ported(&self, e164: &str, network: Option<&str>) -> Result<(), PortError> {
        if network.is_some_and(|net| !is_network_of(net, e164)) {
            return Err(PortError::Corrupt {
                what: "portability answer",
                detail: "network is not a plausible cc:Name for the number".into(),
            });
        }
        let key = self.ported_key(e164);
        let ttl = match network {
            Some(_) => self.settings.ported_ttl,
            None => self.settings.not_ported_ttl,
        };
        let value = PortedEntry::encode(network);
        let mut conn = self.conn.clone();

        // SET replaces a key of any type, which also repairs a corrupt entry.
        let ttl_s = ttl.as_secs().max(1);
        let set = conn.set_ex::<_, _, ()>(&key, value, ttl_s);
        self.bounded(set).await.map_err(|e| self.port_error(e))
    }
}

impl RedisCache {
    fn count_corrupt(&self, e164: &str) {
        Counters::bump(&self.counters.misses);
        Counters::bump(&self.counters.corrupt);
        // The number is personal data: log only its country-code end.
        let head: String = e164.chars().take(4).collect();
        tracing::warn!(destination.head = %head, "portability entry in redis did not validate");
    }
}

fn is_wrong_type(e: &RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
}

fn password_of(url: &RedisUrl) -> Option<String> {
    let client = ::redis::Client::open(url.expose()).ok()?;
    let info = client.get_connection_info().redis_settings();
    info.password().map(str::to_owned)
}

/// Removes the password from a message in case a library put it there.
fn redact(message: &str, password: Option<&str>) -> String {
    match password {
        Some(pw) if !pw.is_empty() => message.replace(pw, "<redacted>"),
        _ => message.to_owned(),
    }
}

fn connect_error(addr: &str, e: &RedisError, password: Option<&str>) -> RedisCacheError {
    let detail = redact(&e.to_string(), password);
    let refused = e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH"));
    if refused {
        RedisCacheError::AuthenticationFailed {
            addr: addr.to_owned(),
            detail,
        }
    } else {
        RedisCacheError::Connect {
            addr: addr.to_owned(),
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ported_values_decode_only_when_well_formed() {
        let uk = "+447400123456";
        assert_eq!(PortedEntry::decode(b"n", uk), Some(PortedEntry::NotPorted));
        assert_eq!(
            PortedEntry::decode(b"p:44:EE", uk),
            Some(PortedEntry::Ported("44:EE".into()))
        );
        assert_eq!(
            PortedEntry::decode("p:44:Telefónica O2".as_bytes(), uk),
            Some(PortedEntry::Ported("44:Telefónica O2".into()))
        );
        let too_long = format!("p:44:{}", "E".repeat(MAX_NETWORK_NAME + 1));
        for junk in [
            &b""[..],
            b"N",
            b"p:",
            b"p:EE",
            b"p:44:",
            b"p:4444:EE",
            b"p:x4:EE",
            b"44:EE",
            b"\xff\xfe",
            b"p:99:Nowhere",
            b"p:1:EE",
            b"p:44:E\nE",
            b"p:44:E\x07E",
            b"p:44:\"EE\"",
            b"p:44:EE'",
            too_long.as_bytes(),
        ] {
            assert_eq!(PortedEntry::decode(junk, uk), None, "{junk:?}");
        }
        for net in [Some("44:EE"), None] {
            let encoded = PortedEntry::encode(net);
            let decoded = PortedEntry::decode(encoded.as_bytes(), uk).unwrap();
            assert_eq!(decoded == PortedEntry::NotPorted, net.is_none());
        }
    }

    #[test]
    fn urls_and_messages_never_show_the_password() {
        let url = RedisUrl::new("redis://:s3cret-pw@127.0.0.1:6390/0");
        assert!(!format!("{url:?}").contains("s3cret-pw"));
        let settings = RedisSettings::new(url.clone());
        assert!(!format!("{settings:?}").contains("s3cret-pw"));
        assert_eq!(password_of(&url).as_deref(), Some("s3cret-pw"));
        assert_eq!(
            redact("auth s3cret-pw failed", Some("s3cret-pw")),
            "auth <redacted> failed"
        );
    }
}
