//! From YAML text to a typed [`Manifest`]: the first syntax or structure
//! error, with its field path, line and column.

use serde_norway::Value;

use serde_path_to_error::Segment;

use super::limits::{MAX_MANIFEST_BYTES, MAX_UNKNOWN_FIELDS};
use super::locate::Locator;
use super::model::Manifest;
use super::problem::{ManifestError, Problem};

/// The only manifest version this build reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Parses manifest text into a [`Manifest`] and the problems that do not
/// stop parsing: every unknown field (a typo such as `gian_db`) is reported,
/// with the fields that were expected, and set aside. A file that is not
/// YAML, is not version 1, or whose structure does not fit otherwise (a
/// wrong type, a missing required field) fails with that first error.
/// Problems carry their line and column.
pub fn parse(text: &str) -> Result<(Manifest, Vec<Problem>), ManifestError> {
    check_size(text.len())?;
    let locator = Locator::new(text);
    let mut value: Value =
        serde_norway::from_str(text).map_err(|error| ManifestError::single(syntax_problem(&error, &locator)))?;
    check_version(&value).map_err(|error| ManifestError::single(locate(&locator, error)))?;
    value.apply_merge().map_err(|error| ManifestError::single(syntax_problem(&error, &locator)))?;
    let mut unknown_fields = Vec::new();
    loop {
        if unknown_fields.len() >= MAX_UNKNOWN_FIELDS {
            unknown_fields.push(Problem::new(
                "",
                format!("more than {MAX_UNKNOWN_FIELDS} unknown fields; the rest are not listed (is this a lacquer manifest?)"),
            ));
            return Err(ManifestError { problems: unknown_fields });
        }
        match serde_path_to_error::deserialize::<_, Manifest>(value.clone()) {
            Ok(manifest) => return Ok((manifest, unknown_fields)),
            Err(error) => {
                let message = error.inner().to_string();
                let segments: Vec<&Segment> = error.path().iter().collect();
                let mut path = error.path().to_string();
                if path == "." {
                    path.clear();
                }
                let Some(field) = unknown_field_name(&message) else {
                    unknown_fields.push(locate(&locator, Problem::new(path, message)));
                    return Err(ManifestError { problems: unknown_fields });
                };
                let field = field.to_owned();
                if path.rsplit('.').next() != Some(field.as_str()) {
                    path = if path.is_empty() { field.clone() } else { format!("{path}.{field}") };
                }
                let removed = remove_field(&mut value, &segments, &field);
                unknown_fields.push(locate(&locator, Problem::new(path, message)));
                if !removed {
                    return Err(ManifestError { problems: unknown_fields });
                }
            }
        }
    }
}

/// The text of a manifest file: at most [`MAX_MANIFEST_BYTES`], UTF-8 (a
/// byte that is not is refused with its line and column).
pub fn manifest_text(bytes: &[u8]) -> Result<&str, ManifestError> {
    check_size(bytes.len())?;
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = &bytes[..error.valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() + 1;
        let byte = bytes[error.valid_up_to()];
        ManifestError::single(
            Problem::new("", format!("is not UTF-8 text: byte 0x{byte:02x} is not a character (is this a manifest?)"))
                .at(line, column),
        )
    })
}

/// Refuses a manifest larger than [`MAX_MANIFEST_BYTES`].
pub fn check_size(length_bytes: usize) -> Result<(), ManifestError> {
    if length_bytes > MAX_MANIFEST_BYTES {
        return Err(ManifestError::single(Problem::new(
            "",
            format!("the manifest is {length_bytes} bytes; at most {MAX_MANIFEST_BYTES} (1 MiB) are read"),
        )));
    }
    Ok(())
}

/// Gives a problem the line and column of its path, when written.
pub(crate) fn locate(locator: &Locator, problem: Problem) -> Problem {
    if problem.line.is_some() {
        return problem;
    }
    match locator.locate(&problem.path) {
        Some((line, column)) => problem.at(line, column),
        // The whole file, when it has no root node (empty, comments only).
        None if problem.path.is_empty() => problem.at(1, 1),
        None => problem,
    }
}

/// Removes `field` from the mapping at `segments` (or at their parent when
/// the last segment is the field itself).
fn remove_field(value: &mut Value, segments: &[&Segment], field: &str) -> bool {
    let mut node = value;
    for (index, segment) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        if is_last && matches!(segment, Segment::Map { key } if key == field) {
            break;
        }
        node = match (segment, node) {
            (Segment::Seq { index }, Value::Sequence(items)) => match items.get_mut(*index) {
                Some(item) => item,
                None => return false,
            },
            (Segment::Map { key }, Value::Mapping(map)) => match map.get_mut(key.as_str()) {
                Some(item) => item,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Mapping(map) => map.remove(field).is_some(),
        _ => false,
    }
}

fn check_version(value: &Value) -> Result<(), Problem> {
    let Value::Mapping(top) = value else {
        let found = match value {
            Value::Null => "an empty file",
            Value::Sequence(_) => "a list",
            Value::String(_) => "text",
            Value::Number(_) => "a number",
            _ => "something else",
        };
        return Err(Problem::new(
            "",
            format!("expected a mapping with `version: 1`, `album` and `tracks` at the top level, found {found}"),
        ));
    };
    match top.get("version") {
        None => Err(Problem::new(
            "version",
            "required field `version` is missing; this is manifest version 1, so write `version: 1`",
        )),
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(MANIFEST_VERSION)) => Ok(()),
        Some(other) => Err(Problem::new(
            "version",
            format!(
                "unsupported manifest version {}; this build of lacquer reads version {MANIFEST_VERSION}",
                serde_norway::to_string(other).unwrap_or_default().trim()
            ),
        )),
    }
}

/// A YAML syntax error, with its location kept apart from the message.
fn syntax_problem(error: &serde_norway::Error, locator: &Locator) -> Problem {
    let mut message = error.to_string();
    // serde_norway appends " at line L column C".
    if let Some(index) = message.rfind(" at line ") {
        message.truncate(index);
    }
    let position = match error.location() {
        Some(location) => Some((location.line(), location.column())),
        // Aliases expanding beyond the parser's limit: point at the first.
        None if message.contains("repetition limit") || message.contains("recursion limit") => {
            message =
                format!("YAML aliases here expand to more than a manifest may hold ({message}); write the values out");
            locator.first_alias()
        }
        None if message.contains("more than one document") => {
            message = "holds more than one YAML document (a second `---`); a manifest is one".to_owned();
            locator.second_document()
        }
        None => None,
    };
    // Otherwise the file as a whole.
    let position = position.or(Some((1, 1)));
    let problem = Problem::new("", message);
    match position {
        Some((line, column)) => problem.at(line, column),
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

    const MINIMAL: &str =
        "version: 1\nalbum: { title: T, artist: A }\ntracks:\n  - id: one\n    title: One\n    mix_file: one.wav\n";

    #[test]
    fn minimal_manifest_parses_with_defaults() {
        let (manifest, problems) = parse(MINIMAL).unwrap();
        assert!(problems.is_empty());
        assert_eq!(manifest.album.sample_rate, 44_100);
        assert_eq!(manifest.mix.headroom_dbfs, -6.0);
        assert_eq!(manifest.matching.loudness.target_lufs, -14.0);
        assert_eq!(manifest.effective_deliverables()[0].name, "master");
    }

    #[test]
    fn misspelt_field_names_its_path_line_and_column() {
        let text = "version: 1\nalbum: { title: T, artist: A }\ntracks:\n  - id: one\n    title: One\n    stems:\n      - name: vox\n        file: vox.wav\n        gian_db: 3\n";
        let (_, problems) = parse(text).unwrap();
        assert_eq!(problems.len(), 1);
        let problem = &problems[0];
        assert_eq!(problem.path, "tracks[0].stems[0].gian_db");
        assert_eq!((problem.line, problem.column), (Some(9), Some(9)), "{problem}");
        assert!(problem.message.contains("unknown field `gian_db`"), "{problem}");
        assert!(problem.message.contains("gain_db"), "lists the expected fields: {problem}");
    }

    #[test]
    fn every_unknown_field_is_reported() {
        let text = "version: 1\nalbum: { title: T, artist: A, colour: red }\ntracks:\n  - id: one\n    title: One\n    mix_file: a.wav\n    fade_ni_s: 1\n    master: { limiter: { relase_ms: 50 } }\n";
        let (manifest, problems) = parse(text).unwrap();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["album.colour", "tracks[0].fade_ni_s", "tracks[0].master.limiter.relase_ms"]);
        assert_eq!(problems[1].line, Some(7));
        assert_eq!(problems[2].line, Some(8));
        assert_eq!(manifest.tracks[0].mix_file.as_deref(), Some("a.wav"));
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
