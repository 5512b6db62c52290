//! What a refused configuration reports: every problem, each naming its key (`server.port`) or
//! the environment variable at fault, and why, never the offending value (it may be a secret).

use std::fmt;

/// One rejected setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key (`server.port`) or the environment variable at fault.
    pub key: String,
    pub reason: String,
}

/// Configuration that must not start the service. The message lists every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    pub(super) fn single(key: &str, reason: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                key: key.to_owned(),
                reason: reason.into(),
            }],
        }
    }

    /// One problem per figment error, naming the key and where its value came from, without
    /// repeating the value itself (it may be a secret).
    pub(super) fn from_figment(error: figment::Error) -> Self {
        use figment::error::Kind;
        let problems = error
            .into_iter()
            .map(|error| {
                let mut path = error.path.clone();
                let reason = match &error.kind {
                    Kind::UnknownField(_, _) => "unknown key".to_owned(),
                    Kind::MissingField(field) => {
                        path.push(field.to_string());
                        "missing key".to_owned()
                    }
                    Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
                        format!("invalid value, expected {expected}")
                    }
                    Kind::UnknownVariant(_, expected) => {
                        format!("invalid value, expected one of {}", expected.join(", "))
                    }
                    other => other.to_string(),
                };
                let origin = error
                    .metadata
                    .as_ref()
                    .map(|metadata| match &metadata.source {
                        Some(source) => source.to_string(),
                        // figment names an environment provider "`PREFIX_` environment variable(s)".
                        None => match metadata.name.split('`').nth(1) {
                            Some(prefix) => format!(
                                "environment variable {prefix}{}",
                                path.join("__").to_uppercase()
                            ),
                            None => metadata.name.to_string(),
                        },
                    });
                ConfigProblem {
                    key: path.join("."),
                    reason: match origin {
                        Some(origin) => format!("{reason} (from {origin})"),
                        None => reason,
                    },
                }
            })
            .collect();
        Self { problems }
    }

    /// True if some problem names `key`.
    pub fn names(&self, key: &str) -> bool {
        self.problems.iter().any(|problem| problem.key == key)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration, the service will not start:")?;
        for problem in &self.problems {
            writeln!(f, "  - {}: {}", problem.key, problem.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The problems found while validating, in the order the rules ran.
#[derive(Debug, Default)]
pub(super) struct Refusals(Vec<ConfigProblem>);

impl Refusals {
    /// Records that the setting `key` cannot start the service, and why.
    pub(super) fn refuse(&mut self, key: &str, reason: &str) {
        self.0.push(ConfigProblem {
            key: key.to_owned(),
            reason: reason.to_owned(),
        });
    }

    /// `Ok` when no rule refused anything.
    pub(super) fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }
}
