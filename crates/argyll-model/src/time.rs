//! Timestamps with the original's wire format.
//!
//! The original serialises every timestamp as RFC 3339 with up to nine fractional digits
//! (trailing zeros trimmed) and writes "not set" as Go's zero time `0001-01-01T00:00:00Z`
//! instead of omitting the field. [`Timestamp`] keeps that format while storing only
//! nanoseconds since the Unix epoch, so it is `Copy`, ordered and cheap to compare.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The wire form of an unset timestamp (Go's zero `time.Time`).
pub const ZERO_TIMESTAMP_TEXT: &str = "0001-01-01T00:00:00Z";

/// A UTC instant with nanosecond precision, or the "unset" zero value.
///
/// Instants between the years 1678 and 2261 are representable; the zero value stands for Go's
/// year-1 zero time. Parsing any other instant outside that range is an error.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Nanoseconds since the Unix epoch; `i64::MIN` encodes the zero (unset) value, which sorts
    /// before every real instant just as Go's zero time does.
    unix_nanos: i64,
}

impl Timestamp {
    /// The unset value, serialised as `0001-01-01T00:00:00Z`.
    pub const ZERO: Timestamp = Timestamp {
        unix_nanos: i64::MIN,
    };

    /// An instant given as nanoseconds since the Unix epoch.
    ///
    /// `i64::MIN` is reserved for [`Timestamp::ZERO`] and is mapped to it.
    pub const fn from_unix_nanos(unix_nanos: i64) -> Self {
        Timestamp { unix_nanos }
    }

    /// An instant given as milliseconds since the Unix epoch (saturating).
    pub const fn from_unix_millis(unix_millis: i64) -> Self {
        Timestamp {
            unix_nanos: unix_millis.saturating_mul(1_000_000),
        }
    }

    /// Nanoseconds since the Unix epoch, or `None` for the zero value.
    pub const fn unix_nanos(self) -> Option<i64> {
        if self.is_zero() {
            None
        } else {
            Some(self.unix_nanos)
        }
    }

    /// Milliseconds since the Unix epoch (as sent in WebSocket envelopes), or `None` when unset.
    pub const fn unix_millis(self) -> Option<i64> {
        match self.unix_nanos() {
            Some(nanos) => Some(nanos.div_euclid(1_000_000)),
            None => None,
        }
    }

    /// Whether this is the unset zero value.
    pub const fn is_zero(self) -> bool {
        self.unix_nanos == i64::MIN
    }

    /// This instant moved forward by `millis` milliseconds (saturating; the zero value stays zero).
    pub const fn plus_millis(self, millis: u64) -> Self {
        if self.is_zero() {
            return self;
        }
        let delta = if millis > (i64::MAX as u64) / 1_000_000 {
            i64::MAX
        } else {
            (millis as i64) * 1_000_000
        };
        Timestamp {
            unix_nanos: self.unix_nanos.saturating_add(delta),
        }
    }

    /// Whole milliseconds from `earlier` to `self`, zero when either is unset or `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        match (self.unix_nanos(), earlier.unix_nanos()) {
            (Some(now), Some(then)) if now > then => now.saturating_sub(then) / 1_000_000,
            _ => 0,
        }
    }

    /// Parses RFC 3339 text (any offset) or the zero-time text.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        if text == ZERO_TIMESTAMP_TEXT {
            return Ok(Self::ZERO);
        }
        let parsed =
            DateTime::parse_from_rfc3339(text).map_err(|source| TimestampError::Syntax {
                text: text.to_owned(),
                reason: source.to_string(),
            })?;
        let nanos = parsed
            .timestamp_nanos_opt()
            .ok_or_else(|| TimestampError::OutOfRange {
                text: text.to_owned(),
            })?;
        if nanos == i64::MIN {
            return Err(TimestampError::OutOfRange {
                text: text.to_owned(),
            });
        }
        Ok(Timestamp { unix_nanos: nanos })
    }
}

impl Default for Timestamp {
    /// The unset zero value, as for a Go struct field that was never assigned.
    fn default() -> Self {
        Timestamp::ZERO
    }
}

/// Why a timestamp text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The text is not RFC 3339.
    #[error("invalid timestamp {text:?}: {reason}")]
    Syntax {
        /// The rejected text.
        text: String,
        /// The parser's explanation.
        reason: String,
    },
    /// The instant cannot be held with nanosecond precision (outside 1678–2261).
    #[error("timestamp {text:?} is outside the supported range (years 1678 to 2261)")]
    OutOfRange {
        /// The rejected text.
        text: String,
    },
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str(ZERO_TIMESTAMP_TEXT);
        }
        let instant: DateTime<Utc> = DateTime::from_timestamp_nanos(self.unix_nanos);
        // Go's RFC3339Nano: up to nine fractional digits, trailing zeros (and a bare dot) dropped.
        let text = instant.to_rfc3339_opts(SecondsFormat::Nanos, true);
        match text.split_once('.') {
            Some((whole, fraction)) => {
                let digits = fraction.trim_end_matches('Z').trim_end_matches('0');
                if digits.is_empty() {
                    write!(f, "{whole}Z")
                } else {
                    write!(f, "{whole}.{digits}Z")
                }
            }
            None => f.write_str(&text),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        match text {
            None => Ok(Timestamp::ZERO),
            Some(text) => Timestamp::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_go_zero_time() {
        assert_eq!(Timestamp::ZERO.to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(Timestamp::default(), Timestamp::ZERO);
        assert_eq!(
            Timestamp::parse("0001-01-01T00:00:00Z"),
            Ok(Timestamp::ZERO)
        );
        assert!(Timestamp::ZERO < Timestamp::from_unix_nanos(-5));
    }

    #[test]
    fn fractional_digits_are_trimmed_like_rfc3339nano() {
        let t = Timestamp::from_unix_nanos(1_700_000_000_500_000_000);
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.5Z");
        let whole = Timestamp::from_unix_nanos(1_700_000_000_000_000_000);
        assert_eq!(whole.to_string(), "2023-11-14T22:13:20Z");
        let fine = Timestamp::from_unix_nanos(1_700_000_000_000_000_001);
        assert_eq!(fine.to_string(), "2023-11-14T22:13:20.000000001Z");
    }

    #[test]
    fn round_trips_through_text_and_offsets_normalise_to_utc() {
        let t = Timestamp::from_unix_nanos(1_764_000_000_123_456_789);
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        let offset = Timestamp::parse("2023-11-14T23:13:20.5+01:00").ok();
        assert_eq!(
            offset,
            Some(Timestamp::from_unix_nanos(1_700_000_000_500_000_000))
        );
    }

    #[test]
    fn rejects_garbage_and_out_of_range() {
        assert!(matches!(
            Timestamp::parse("yesterday"),
            Err(TimestampError::Syntax { .. })
        ));
        assert!(matches!(
            Timestamp::parse("3000-01-01T00:00:00Z"),
            Err(TimestampError::OutOfRange { .. })
        ));
    }

    #[test]
    fn arithmetic_saturates_and_keeps_zero() {
        assert_eq!(Timestamp::ZERO.plus_millis(10), Timestamp::ZERO);
        let t = Timestamp::from_unix_millis(1_000);
        assert_eq!(t.plus_millis(500), Timestamp::from_unix_millis(1_500));
        assert_eq!(t.plus_millis(u64::MAX).unix_nanos(), Some(i64::MAX));
        assert_eq!(Timestamp::from_unix_millis(1_500).millis_since(t), 500);
        assert_eq!(t.millis_since(Timestamp::ZERO), 0);
        assert_eq!(t.unix_millis(), Some(1_000));
    }

    #[test]
    fn null_deserialises_as_zero() {
        let t: Timestamp = serde_json::from_str("null").unwrap_or(Timestamp::from_unix_nanos(1));
        assert!(t.is_zero());
    }
}
