//! From YAML text to a typed [`Manifest`]: the first syntax or structure
//! error, with its field path, line and column.

use serde_norway::Value;

use super::model::Manifest;
use super::problem::{ManifestError, Problem};

/// The only manifest version this build reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Parses manifest text. Fails with exactly one problem: the first place
/// where the text is not YAML, is not version 1, or does not fit the
/// structure (unknown field, wrong type, missing required field).
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let value: Value = serde_norway::from_str(text)
        .map_err(|error| ManifestError::single(yaml_problem("", &error)))?;
    check_version(&value)?;
    let deserializer = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        ManifestError::single(yaml_problem(&path, error.inner()))
    })
}

fn check_version(value: &Value) -> Result<(), ManifestError> {
    let Value::Mapping(top) = value else {
        let found = if value.is_null() {
            "an empty file"
        } else {
            "something else"
        };
        return Err(ManifestError::single(Problem::new(
            "",
            format!(
                "expected a mapping with `version: 1`, `album` and `tracks` at the top level, found {found}"
            ),
        )));
    };
    match top.get("version") {
        None => Err(ManifestError::single(Problem::new(
            "version",
            "required field `version` is missing; this is manifest version 1, so write `version: 1`",
        ))),
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(MANIFEST_VERSION)) => Ok(()),
        Some(other) => Err(ManifestError::single(Problem::new(
            "version",
            format!(
                "unsupported manifest version {}; this build of lacquer reads version {MANIFEST_VERSION}",
                serde_norway::to_string(other).unwrap_or_default().trim()
            ),
        ))),
    }
}

/// Turns a YAML error into a [`Problem`]: its message without the location
/// suffix (kept separately), and the unknown field's own name in the path.
fn yaml_problem(path: &str, error: &serde_norway::Error) -> Problem {
    let mut message = error.to_string();
    // serde_norway appends " at line L column C" and may prefix "path: ".
    if let Some(index) = message.rfind(" at line ") {
        message.truncate(index);
    }
    if !path.is_empty()
        && let Some(rest) = message.strip_prefix(&format!("{path}: "))
    {
        message = rest.to_owned();
    }
    let mut path = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };
    if let Some(field) = unknown_field_name(&message) {
        let already_named = path.rsplit('.').next() == Some(field);
        if !already_named {
            path = if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
        }
    }
    let problem = Problem::new(path, message);
    match error.location() {
        Some(location) => problem.at(location.line(), location.column()),
        None => problem,
    }
}

fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "version: 1\nalbum: { title: T, artist: A }\ntracks:\n  - id: one\n    title: One\n    mix_file: one.wav\n";

    #[test]
    fn minimal_manifest_parses_with_defaults() {
        let manifest = parse(MINIMAL).unwrap();
        assert_eq!(manifest.album.sample_rate, 44_100);
        assert_eq!(manifest.mix.headroom_dbfs, -6.0);
        assert_eq!(manifest.matching.loudness.target_lufs, -14.0);
        assert_eq!(manifest.effective_deliverables()[0].name, "master");
    }

    #[test]
    fn misspelt_field_names_its_path_line_and_column() {
        let text = "version: 1\nalbum: { title: T, artist: A }\ntracks:\n  - id: one\n    title: One\n    stems:\n      - name: vox\n        file: vox.wav\n        gian_db: 3\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.problems.len(), 1);
        let problem = &error.problems[0];
        assert_eq!(problem.path, "tracks[0].stems[0].gian_db");
        assert_eq!(
            (problem.line, problem.column),
            (Some(9), Some(9)),
            "{problem}"
        );
        assert!(
            problem.message.contains("unknown field `gian_db`"),
            "{problem}"
        );
        assert!(
            problem.message.contains("gain_db"),
            "lists the expected fields: {problem}"
        );
    }

    #[test]
    fn wrong_version_and_bad_yaml() {
        let error = parse("version: 2\nalbum: {}\ntracks: []\n").unwrap_err();
        assert!(error.problems[0].message.contains("version 2"), "{error}");
        let error = parse("version: 1\nalbum: [unclosed\n").unwrap_err();
        assert!(error.problems[0].line.is_some(), "{error}");
        let error = parse("").unwrap_err();
        assert!(error.problems[0].message.contains("empty"), "{error}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let text = "version: 1\nalbum: { title: T, artist: A, sample_rate: fast }\ntracks: []\n";
        let problem = &parse(text).unwrap_err().problems[0];
        assert_eq!(problem.path, "album.sample_rate");
        assert_eq!(problem.line, Some(2));
    }
}
