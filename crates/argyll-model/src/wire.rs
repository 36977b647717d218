//! Serde helpers that reproduce the original engine's lenient JSON decoding.
//!
//! The original decodes request bodies with Go's `encoding/json`: a missing field or an explicit
//! `null` leaves the field at its zero value, and enum-like strings are plain strings that
//! validation inspects later. These helpers give the Rust types the same leniency so that a bad
//! value reaches validation (which names the field) instead of failing as a JSON syntax error.

use serde::{Deserialize, Deserializer};

/// Deserialises `null` as the type's default, like Go's decoder does for zero values.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `skip_serializing_if` predicate for the original's `omitempty` booleans.
pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}

/// `skip_serializing_if` predicate for the original's `omitempty` integers.
pub(crate) fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// Declares a string-valued wire enum whose unknown values are kept verbatim.
///
/// Validation messages quote the offending value (`invalid step type: bogus`), so decoding must not
/// reject unknown strings; they land in `Unrecognized` and validation reports them.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value outside the known set, kept verbatim so that validation can quote it.
            Unrecognized(String),
        }

        impl $name {
            /// The wire spelling of this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Unrecognized(text) => text,
                }
            }

            /// Parses a wire spelling; unknown spellings become `Unrecognized`.
            pub fn parse(text: &str) -> Self {
                match text {
                    $( $text => Self::$variant, )+
                    other => Self::Unrecognized(other.to_owned()),
                }
            }

            /// Whether the value is one of the known spellings.
            pub fn is_recognized(&self) -> bool {
                !matches!(self, Self::Unrecognized(_))
            }
        }

        impl Default for $name {
            /// The value of a missing or `null` field: the empty string, as Go decodes it.
            fn default() -> Self {
                Self::parse("")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text: Option<std::borrow::Cow<'de, str>> = serde::Deserialize::deserialize(deserializer)?;
                Ok(Self::parse(text.as_deref().unwrap_or("")))
            }
        }
    };
}

pub(crate) use wire_enum;
