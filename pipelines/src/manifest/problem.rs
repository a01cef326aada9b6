//! What is wrong with a manifest, said so that a person can fix it: the
//! field path, the line and column when known, and what was expected.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem with one field of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Field path such as `tracks[2].stems[0].gain_db`; empty for the whole file.
    pub path: String,
    /// 1-based line in the manifest, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column in the manifest, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), line: None, column: None, message: message.into() }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "manifest" } else { &self.path };
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{path} (line {line}, column {column}): {}", self.message)
            }
            _ => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Every problem found in a manifest, in document order where known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ManifestError {
    pub problems: Vec<Problem>,
}

impl ManifestError {
    pub fn single(problem: Problem) -> Self {
        Self { problems: vec![problem] }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(f, "the manifest has {count} problem{}", if count == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}
