//! Parsed, validated types: what handlers turn raw input into before it goes to the
//! engine or the queue, and the job model. This layer imports only `crate::error` (the
//! code table) and, for the run policy's configuration, nothing else of ours: never
//! HTTP, the store or the engine.

pub mod credentials;
pub mod dockerfile;
pub mod exec;
pub mod identity;
pub mod image_ref;
pub mod job;
pub mod job_spec;
pub mod names;
pub mod net;
pub mod objects;
pub mod policy;
pub mod rejection;
pub mod requests;
pub mod run;
pub mod scope;

/// A string-valued enum, declared once: variants with their snake_case wire names,
/// `ALL`, `as_str`, `parse` and `Display` (serde uses the same names).
#[macro_export]
macro_rules! wire_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[serde(rename_all = "snake_case")]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub use image_ref::{ImageRef, RefError, validate_reference_or_id};
pub use rejection::Rejection;

/// `true`/`false`/`1`/`0` in a query string.
pub fn de_bool_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some("true") | Some("1") => Ok(Some(true)),
        Some("false") | Some("0") => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!("expected true or false, got `{other}`"))),
    }
}
