//! Configuration problems: each with the path of the field at fault, collected so that
//! every problem of a file is reported at once. Every part of the crate that checks a
//! piece of configuration (the route table, each adapter's section, auth keys) reports
//! here.

use std::fmt;

/// One configuration problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the field, e.g. `routes[1].source.topics`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// An invalid configuration: every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// An error of one problem at `path`.
    pub fn single(path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            problems: vec![Problem {
                path: path.to_owned(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Collects problems while walking the settings.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// The problems reported so far.
    pub fn as_slice(&self) -> &[Problem] {
        &self.0
    }

    /// True when nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, as the error of an invalid configuration (`Ok` when there are none).
    pub fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }

    /// Record a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}

impl From<Problems> for ConfigError {
    fn from(p: Problems) -> ConfigError {
        ConfigError { problems: p.0 }
    }
}
