//! Parsing setting values, and the serde adapters that apply the parsers to whatever the
//! sources hold (text from the environment; text, numbers or booleans from `argyll.toml`).
//! Every failure is a reason ("expected …") that becomes part of an error naming the variable.

use std::fmt;
use std::time::Duration;

use argyll_model::BackoffType;
use serde::Deserializer;
use serde::de::{Error as _, Visitor};

use crate::{LocalSync, LogFormat, LogLevel, StoreChoice};

/// A scalar setting value as text: numbers and booleans from a file are read as they are written.
struct Text;

impl Visitor<'_> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_char<E: serde::de::Error>(self, v: char) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// Reads a scalar and parses its trimmed text with `parse`.
fn parsed<'de, D, T, F>(deserializer: D, parse: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: Fn(&str) -> Result<T, String>,
{
    let text = deserializer.deserialize_any(Text)?;
    parse(text.trim()).map_err(D::Error::custom)
}

/// Serde adapters, one per kind of value: `#[serde(deserialize_with = "de::port")]`.
pub(crate) mod de {
    use super::*;

    macro_rules! adapters {
        ($($name:ident -> $ty:ty = $parse:expr;)*) => {$(
            pub(crate) fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                parsed(d, $parse)
            }
        )*};
    }

    adapters! {
        text -> String = |t| Ok(t.to_owned());
        port -> u16 = super::port;
        count -> usize = super::positive_count;
        whole -> usize = |t| t.parse::<usize>().map_err(|_| "expected a whole number (0 or more)".into());
        millis -> u64 = super::millis;
        signed -> i64 = |t| t.parse::<i64>().map_err(|_| "expected a whole number".into());
        steps -> u64 = |t| match t.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err("expected a whole number greater than zero".into()),
        };
        megabytes -> usize = |t| super::positive_count(t)?.checked_mul(1 << 20).ok_or_else(|| "too large".to_owned());
        duration -> Duration = super::parse_duration;
        positive_duration -> Duration = super::positive_duration;
        step_timeout -> Duration = super::step_timeout;
        percent -> f64 = |t| match t.parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
            _ => Err("expected a percentage from 0 to 100".into()),
        };
        database -> u32 = |t| t.parse::<u32>().map_err(|_| "expected a database number (0 or more)".into());
        pool_size -> usize = |t| match t.parse::<usize>() {
            Ok(size) if (1..=64).contains(&size) => Ok(size),
            _ => Err("expected a number of connections from 1 to 64".into()),
        };
        redis_addrs -> String = |t| super::check_redis_addrs(t).map(|()| t.to_owned());
        log_level -> LogLevel = super::log_level;
        log_format -> LogFormat = super::log_format;
        backoff -> BackoffType = super::backoff;
        store_choice -> StoreChoice = super::store_choice;
        local_sync -> LocalSync = super::local_sync;
    }

    /// An optional value: absent is `None` (empty variables never reach here).
    pub(crate) fn some_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        text(d).map(Some)
    }

    /// An optional count greater than zero.
    pub(crate) fn some_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
        count(d).map(Some)
    }

    /// An optional retention: a duration greater than zero, days allowed (`7d`).
    pub(crate) fn some_retention<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        parsed(d, super::retention).map(Some)
    }

    /// An optional Redis address list.
    pub(crate) fn some_redis_addrs<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        redis_addrs(d).map(Some)
    }
}

fn port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("expected a port number from 1 to 65535".into()),
    }
}

fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number greater than zero".into()),
    }
}

fn millis(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| "expected milliseconds (a whole number, 0 or more)".into())
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err("expected a duration greater than zero".into()),
        d => Ok(d),
    }
}

/// `STEP_TIMEOUT`: milliseconds (the original's unit) or a duration, greater than zero.
fn step_timeout(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        Ok(_) => Err("expected a duration greater than zero".into()),
        Err(_) => positive_duration(text),
    }
}

fn log_level(text: &str) -> Result<LogLevel, String> {
    match text.to_ascii_lowercase().as_str() {
        "debug" => Ok(LogLevel::Debug),
        "info" => Ok(LogLevel::Info),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "error" => Ok(LogLevel::Error),
        _ => Err("expected debug, info, warn or error".into()),
    }
}

fn log_format(text: &str) -> Result<LogFormat, String> {
    match text.to_ascii_lowercase().as_str() {
        "human" | "text" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected human or json".into()),
    }
}

/// `FLOW_RETENTION`: a duration greater than zero, in Go syntax or whole days (`7d`).
fn retention(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str =
        "expected a duration greater than zero such as 7d, 12h or 30m (unset it to keep flows)";
    let duration = match text.strip_suffix('d') {
        Some(days) => days
            .parse::<u64>()
            .ok()
            .and_then(|days| days.checked_mul(86_400))
            .map(Duration::from_secs)
            .ok_or_else(|| EXPECTED.to_owned())?,
        None => parse_duration(text).map_err(|_| EXPECTED.to_owned())?,
    };
    if duration.is_zero() {
        return Err(EXPECTED.into());
    }
    Ok(duration)
}

fn store_choice(text: &str) -> Result<StoreChoice, String> {
    match text.to_ascii_lowercase().as_str() {
        "auto" => Ok(StoreChoice::Auto),
        "local" => Ok(StoreChoice::Local),
        "memory" => Ok(StoreChoice::Memory),
        "redis" => Ok(StoreChoice::Redis),
        _ => Err("expected local, memory, redis or auto".into()),
    }
}

fn local_sync(text: &str) -> Result<LocalSync, String> {
    match text.to_ascii_lowercase().as_str() {
        "always" => Ok(LocalSync::Always),
        "interval" => Ok(LocalSync::Interval),
        "never" => Ok(LocalSync::Never),
        _ => Err("expected always, interval or never".into()),
    }
}

fn backoff(text: &str) -> Result<BackoffType, String> {
    match text {
        "fixed" => Ok(BackoffType::Fixed),
        "linear" => Ok(BackoffType::Linear),
        "exponential" => Ok(BackoffType::Exponential),
        _ => Err("expected fixed, linear or exponential".into()),
    }
}

/// A Go-style duration: `300ms`, `1.5h`, `2h45m`, `0`; units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration such as 500ms, 30s, 15m, 1h30m";
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(EXPECTED.into());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| EXPECTED.to_owned())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(EXPECTED.into()),
        };
        total += value * nanos_per_unit;
        rest = after;
    }
    if !total.is_finite() || total > 1e19 {
        return Err("duration too large".into());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Every address of a comma-separated list is `host:port` with a port number.
fn check_redis_addrs(addrs: &str) -> Result<(), String> {
    for addr in addrs.split(',').map(str::trim) {
        let Some((host, port)) = addr.rsplit_once(':') else {
            return Err(format!("expected host:port, got {addr:?}"));
        };
        if host.is_empty() {
            return Err(format!("expected host:port, got {addr:?} (no host)"));
        }
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "{addr:?} has no port number (1-65535) after the colon"
            ));
        }
    }
    Ok(())
}
