//! Write evald plugins in Rust.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`. Implement
//! [`Scorer`] (or [`Generator`]) on a unit struct and export it with
//! [`export_scorer!`] (or [`export_generator!`]); the SDK parses the job's
//! config for you and hides the generated WIT bindings.
//!
//! ```no_run
//! use evald_plugin_sdk::{export_scorer, Observation, Score, Scorer};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { word: String }
//!
//! struct Mentions;
//!
//! impl Scorer for Mentions {
//!     type Config = Config;
//!
//!     fn score(observation: &Observation, config: &Config) -> Result<Score, String> {
//!         let found = observation.response.contains(&config.word);
//!         Ok(Score::new(if found { 1.0 } else { 0.0 }))
//!     }
//! }
//!
//! export_scorer!(Mentions);
//! ```
//!
//! The types ([`Observation`], [`Case`], [`Message`], [`Score`]) are the
//! records of the WIT package `evald:plugin@0.1.0` (`plugins/wit/`).

// The generated bindings name their runtime by absolute path, so that the
// export macros also work when they expand inside a plugin's crate.
extern crate self as evald_plugin_sdk;

use serde::de::DeserializeOwned;

/// The bindings `wit-bindgen` generates from `plugins/wit/v0.1.0`. Public
/// only because the export macros expand in the plugin's crate; use the
/// re-exports at the crate root instead.
#[doc(hidden)]
pub mod bindings {
    /// The `scorer` world, and the shared `types` interface.
    #[allow(missing_docs)]
    pub mod scorer {
        wit_bindgen::generate!({
            path: "../wit/v0.1.0",
            world: "scorer",
            pub_export_macro: true,
            export_macro_name: "export_scorer_world",
            default_bindings_module: "::evald_plugin_sdk::bindings::scorer",
            runtime_path: "::evald_plugin_sdk::__private::wit_bindgen::rt",
        });
    }

    /// The `generator` world, sharing the scorer's `types`.
    #[allow(missing_docs)]
    pub mod generator {
        wit_bindgen::generate!({
            path: "../wit/v0.1.0",
            world: "generator",
            pub_export_macro: true,
            export_macro_name: "export_generator_world",
            default_bindings_module: "::evald_plugin_sdk::bindings::generator",
            runtime_path: "::evald_plugin_sdk::__private::wit_bindgen::rt",
            with: {
                "evald:plugin/types@0.1.0": crate::bindings::scorer::evald::plugin::types,
            },
        });
    }
}

pub use bindings::scorer::evald::plugin::types::{Case, Message, Observation, Score};

/// A score plugin: judges one response.
pub trait Scorer {
    /// The scorer's `config` table from the job file. Derive
    /// `serde::Deserialize` on your own struct, or use `serde_json::Value`
    /// to take anything. A config that does not deserialize becomes an
    /// error on the score, before [`Scorer::score`] runs.
    type Config: DeserializeOwned;

    /// Scores one observation: `Ok` with a value in 0..=1, or `Err` with a
    /// reason the observation cannot be scored. Values outside 0..=1 and NaN
    /// are refused by the host.
    fn score(observation: &Observation, config: &Self::Config) -> Result<Score, String>;
}

/// A prompt plugin: produces cases for a job.
pub trait Generator {
    /// The generator's `config` table from the job file (see
    /// [`Scorer::Config`]).
    type Config: DeserializeOwned;

    /// Produces the cases. The same config should give the same cases.
    fn generate(config: &Self::Config) -> Result<Vec<Case>, String>;
}

impl Score {
    /// A score with no note. Values outside 0..=1 are refused by the host.
    pub fn new(value: f64) -> Score {
        Score { value, note: None }
    }

    /// A score with a short explanation stored beside it.
    pub fn with_note(value: f64, note: impl Into<String>) -> Score {
        Score {
            value,
            note: Some(note.into()),
        }
    }

    /// 1.0 when `passed`, else 0.0.
    pub fn pass_fail(passed: bool) -> Score {
        Score::new(if passed { 1.0 } else { 0.0 })
    }
}

impl Message {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }
}

impl Case {
    /// A case of one user message, with an optional reference answer.
    pub fn prompt(
        id: impl Into<String>,
        prompt: impl Into<String>,
        reference: Option<String>,
    ) -> Case {
        Case {
            id: id.into(),
            messages: vec![Message::user(prompt)],
            reference,
        }
    }

    /// The text of the last `user` message, the usual question of a case.
    pub fn last_user_message(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|message| message.role == "user")
            .map(|message| message.content.as_str())
    }
}

/// Parses the config the host passes (JSON; an empty string counts as `{}`).
pub fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C, String> {
    let config = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))
}

/// What the export macros expand to; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use super::{Case, Generator, Observation, Score, Scorer, parse_config};

    /// The body of the exported `score`.
    pub fn score<S: Scorer>(observation: Observation, config: String) -> Result<Score, String> {
        let config = parse_config::<S::Config>(&config)?;
        S::score(&observation, &config)
    }

    /// The body of the exported `generate`.
    pub fn generate<G: Generator>(config: String) -> Result<Vec<Case>, String> {
        let config = parse_config::<G::Config>(&config)?;
        G::generate(&config)
    }
}

/// Exports a [`Scorer`] as the plugin's `score` function. Use it once, at
/// the top level of the plugin crate.
#[macro_export]
macro_rules! export_scorer {
    ($scorer:ty) => {
        const _: () = {
            struct EvaldScorerExport;

            impl $crate::bindings::scorer::Guest for EvaldScorerExport {
                fn score(
                    observation: $crate::Observation,
                    config: ::std::string::String,
                ) -> ::std::result::Result<$crate::Score, ::std::string::String> {
                    $crate::__private::score::<$scorer>(observation, config)
                }
            }

            $crate::bindings::scorer::export_scorer_world!(EvaldScorerExport);
        };
    };
}

/// Exports a [`Generator`] as the plugin's `generate` function. Use it once,
/// at the top level of the plugin crate.
#[macro_export]
macro_rules! export_generator {
    ($generator:ty) => {
        const _: () = {
            struct EvaldGeneratorExport;

            impl $crate::bindings::generator::Guest for EvaldGeneratorExport {
                fn generate(
                    config: ::std::string::String,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::Case>, ::std::string::String>
                {
                    $crate::__private::generate::<$generator>(config)
                }
            }

            $crate::bindings::generator::export_generator_world!(EvaldGeneratorExport);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Config {
        #[serde(default)]
        n: u32,
    }

    #[test]
    fn config_parses_and_errors_are_reasons() {
        assert_eq!(parse_config::<Config>(""), Ok(Config { n: 0 }));
        assert_eq!(parse_config::<Config>(r#"{"n": 3}"#), Ok(Config { n: 3 }));
        let err = parse_config::<Config>(r#"{"n": "x"}"#).unwrap_err();
        assert!(err.starts_with("invalid config: "), "{err}");
    }
}
