//! Timestamps with the original's wire format.
//!
//! The original serialises every timestamp as RFC 3339 with up to nine fractional digits
//! (trailing zeros trimmed) and writes "not set" as Go's zero time `0001-01-01T00:00:00Z`
//! instead of omitting the field. [`Timestamp`] keeps that format while storing only
//! nanoseconds since the Unix epoch, so it is `Copy`, ordered and cheap to compare.

use std::fmt;

use chrono::{DateTime, Utc};
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
    /// Go's RFC3339Nano: up to nine fractional digits, trailing zeros (and a bare dot)
    /// dropped. Written digit by digit into a stack buffer: every stored event and every
    /// response carries timestamps, and going through chrono's RFC 3339 `String` cost about
    /// 3,000 instructions each.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::{Datelike, Timelike};
        if self.is_zero() {
            return f.write_str(ZERO_TIMESTAMP_TEXT);
        }
        let instant: DateTime<Utc> = DateTime::from_timestamp_nanos(self.unix_nanos);
        let mut text = RfcText::default();
        // Representable instants lie between the years 1678 and 2261: four digits.
        text.digits(u32::try_from(instant.year()).unwrap_or(0), 4);
        text.byte(b'-');
        text.digits(instant.month(), 2);
        text.byte(b'-');
        text.digits(instant.day(), 2);
        text.byte(b'T');
        text.digits(instant.hour(), 2);
        text.byte(b':');
        text.digits(instant.minute(), 2);
        text.byte(b':');
        text.digits(instant.second(), 2);
        // Below a second (a leap second's nanoseconds are not representable here).
        let nanos = instant.nanosecond() % 1_000_000_000;
        if nanos > 0 {
            let mut digits = 9;
            let mut fraction = nanos;
            while fraction.is_multiple_of(10) {
                fraction /= 10;
                digits -= 1;
            }
            text.byte(b'.');
            text.digits(fraction, digits);
        }
        text.byte(b'Z');
        f.write_str(text.as_str())
    }
}

/// The text of a timestamp, built in place: at most `2261-12-31T23:59:59.999999999Z`.
#[derive(Default)]
struct RfcText {
    bytes: [u8; 32],
    len: usize,
}

impl RfcText {
    fn byte(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// `value`'s last `count` decimal digits, zero-padded.
    fn digits(&mut self, value: u32, count: usize) {
        let start = self.len;
        for _ in 0..count {
            self.byte(b'0');
        }
        let mut rest = value;
        for slot in self
            .bytes
            .get_mut(start..self.len)
            .unwrap_or_default()
            .iter_mut()
            .rev()
        {
            *slot = b'0' + u8::try_from(rest % 10).unwrap_or(0);
            rest /= 10;
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators were written.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
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

    /// The formatting the stack-buffer one replaced: chrono's RFC 3339 text, trimmed.
    fn through_chrono(t: Timestamp) -> String {
        let instant: DateTime<Utc> = DateTime::from_timestamp_nanos(t.unix_nanos);
        let text = instant.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        match text.split_once('.') {
            Some((whole, fraction)) => {
                let digits = fraction.trim_end_matches('Z').trim_end_matches('0');
                if digits.is_empty() {
                    format!("{whole}Z")
                } else {
                    format!("{whole}.{digits}Z")
                }
            }
            None => text,
        }
    }

    proptest::proptest! {
        #[test]
        fn formats_as_chrono_did_over_the_whole_range(nanos in (i64::MIN + 1)..=i64::MAX) {
            let t = Timestamp::from_unix_nanos(nanos);
            proptest::prop_assert_eq!(t.to_string(), through_chrono(t));
        }

        #[test]
        fn formats_whole_and_round_instants_as_chrono_did(seconds in -9_223_372_036i64..9_223_372_036, millis in 0i64..1000) {
            let t = Timestamp::from_unix_nanos(seconds * 1_000_000_000 + millis * 1_000_000);
            proptest::prop_assert_eq!(t.to_string(), through_chrono(t));
        }
    }

    #[test]
    fn the_extremes_format_as_chrono_did() {
        for nanos in [
            i64::MIN + 1,
            -1,
            0,
            1,
            i64::MAX,
            1_000_000_000,
            -1_000_000_000,
        ] {
            let t = Timestamp::from_unix_nanos(nanos);
            assert_eq!(t.to_string(), through_chrono(t), "{nanos}");
        }
    }

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
