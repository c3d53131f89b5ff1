//! Tickiti's domain: the vocabulary shared by every service, with no I/O.
//!
//! Types here are parsed once at the edge ("parse, don't validate") and then
//! trusted by the store and the services.

pub mod ability;
pub mod calendar;
pub mod duration;
pub mod event;
pub mod filter;
pub mod intervention;
pub mod mention;
pub mod message;
pub mod notification;
pub mod organization;
pub mod sla;
pub mod ticket;
pub mod validation;
pub mod webhook;
pub mod worker;

pub use ability::{Ability, Role};
pub use event::{EventEnvelope, EventType};
pub use filter::{AssigneeFilter, TicketFilter, TicketOrder};
pub use ticket::{Priority, TicketStatus, Visibility};
pub use validation::{FieldError, Validation};

/// A new time-ordered id (UUID v7). Postgres 15 has no `uuidv7()`, so ids are made here.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// The current time at the database's precision (whole microseconds), for
/// times the api stamps itself: a row written with it reads back equal, and
/// an answer or event built before the write shows what was stored.
pub fn now() -> time::OffsetDateTime {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Defines a string-backed enum with `as_str`, `FromStr`, serde and an OpenAPI schema.
///
/// The spellings are taken as `tt`, not `literal`: a `literal` fragment reaches
/// the derives wrapped in an invisible group, and utoipa then ignores the
/// `serde(rename)` and documents the Rust variant names instead.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $(
                #[doc = $text]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and database spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::UnknownValue {
                        value: s.chars().take(64).collect(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

/// A string that is not one of an enum's spellings.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown value {value:?}; expected one of {}", expected.join(", "))]
pub struct UnknownValue {
    /// What was given (cut to 64 characters).
    pub value: String,
    /// The accepted spellings.
    pub expected: &'static [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document lists each enum by its wire spelling (the macro
    /// once let utoipa fall back to the Rust variant names, `OnHold` for
    /// `on_hold`, and generated clients sent values the API refuses).
    #[test]
    fn enum_schemas_list_the_wire_spellings() {
        fn check<T: utoipa::PartialSchema>(wire: Vec<&str>) {
            let schema = serde_json::to_value(T::schema()).unwrap();
            assert_eq!(schema["enum"], serde_json::json!(wire), "{schema}");
        }
        check::<TicketStatus>(TicketStatus::ALL.iter().map(|v| v.as_str()).collect());
        check::<Ability>(Ability::ALL.iter().map(|v| v.as_str()).collect());
        check::<EventType>(EventType::ALL.iter().map(|v| v.as_str()).collect());
        check::<Priority>(Priority::ALL.iter().map(|v| v.as_str()).collect());
    }
}
