//! `wire_enum!`: the one way this module declares an enum that travels as a fixed string.
//!
//! Roles, kinds, event types, tracks and statuses cross the wire, the database and the logs as
//! lowercase names (`grid_worker`, `station_log`, `called_back`). Each needs the same parsing,
//! printing and serde code and a parse error that says what was expected. Writing that once keeps
//! every wire name next to its variant, in one line, so a reader checks the spelling in one place.
//!
//! The macro must not grow behaviour beyond naming: anything specific to one enum belongs in that
//! enum's own module.

/// Declares a fieldless enum whose values travel as fixed strings.
///
/// It generates the enum (`Debug`, `Clone`, `Copy`, `Eq`, `Hash`, `Ord`), `ALL`, `as_str`,
/// `Display`, `FromStr`, serde as a plain string, and a thiserror parse error struct named after
/// the `/`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident / $error:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            #[doc = concat!("Every [`", stringify!($name), "`], in declaration order.")]
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name this value has on the wire and in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        #[doc = concat!("Why a string is not a [`", stringify!($name), "`].")]
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("`{value}` is not a known {}; expected one of: {}", $what, [$($wire),+].join(", "))]
        pub struct $error {
            /// The string that did not parse, cut short if it was long.
            pub value: String,
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err($error { value: $crate::domain::wire_enum::clip(s) }),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
            where
                D: ::serde::Deserializer<'de>,
            {
                let s = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

/// The longest piece of untrusted input quoted back in an error message, in bytes.
///
/// Values in documents come from devices. A message that echoes a megabyte of garbage helps
/// nobody and fills logs, so quotes are cut to this length.
const MAX_QUOTE: usize = 64;

/// `s`, cut to at most [`MAX_QUOTE`] bytes on a character boundary, with `…` when cut.
pub(crate) fn clip(s: &str) -> String {
    if s.len() <= MAX_QUOTE {
        return s.to_owned();
    }
    let mut end = MAX_QUOTE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clip_keeps_short_strings_and_cuts_long_ones_on_a_char_boundary() {
        assert_eq!(clip("grid_worker"), "grid_worker");
        let long = "网".repeat(40); // 120 bytes, 3 per character
        let clipped = clip(&long);
        assert_eq!(clipped, format!("{}…", "网".repeat(21)));
    }
}
