//! Where manifest paths point: a folder on the local filesystem or a bucket
//! prefix in S3-compatible object storage, and a `/`-separated key under it.
//!
//! This module only resolves names; opening them is the storage crate's job.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The top of a tree of objects: a local folder or `s3://bucket/prefix/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StorageRoot {
    Local { dir: PathBuf },
    S3 { bucket: String, prefix: String },
}

/// One object: a root and a normalised key under it (no leading `/`, no `.`
/// or `..` segments, no empty segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub root: StorageRoot,
    pub key: String,
}

impl StorageRoot {
    /// Parses `s3://bucket/prefix/` or a local folder. A relative local
    /// folder, or a relative path given after an S3 base, is resolved against
    /// `base`.
    pub fn resolve(text: &str, base: &StorageRoot) -> Result<StorageRoot, String> {
        if let Some(rest) = text.strip_prefix("s3://") {
            return parse_s3(rest).map(|(bucket, key)| StorageRoot::S3 { bucket, prefix: as_prefix(&key) });
        }
        if text.contains("://") {
            return Err(format!("`{text}` is neither a folder nor an s3:// URL (only s3:// is supported)"));
        }
        if text.trim().is_empty() {
            return Err("must not be empty".to_owned());
        }
        let path = Path::new(text);
        match base {
            StorageRoot::Local { dir } => {
                let joined = if path.is_absolute() { path.to_path_buf() } else { dir.join(path) };
                Ok(StorageRoot::Local { dir: normalize(&joined) })
            }
            StorageRoot::S3 { bucket, prefix } => {
                if path.is_absolute() {
                    return Err(format!("`{text}` is a local path, but the manifest lives in s3://{bucket}/{prefix}"));
                }
                let joined = join_key(prefix, text)
                    .map_err(|reason| format!("`{text}` {reason} the manifest's folder s3://{bucket}/{prefix}"))?;
                Ok(StorageRoot::S3 { bucket: bucket.clone(), prefix: as_prefix(&joined) })
            }
        }
    }

    /// The object at a path relative to this root, or at an absolute
    /// `s3://bucket/key` URL. `..` may not climb above the root.
    pub fn object(&self, path: &str) -> Result<ObjectRef, String> {
        if let Some(rest) = path.strip_prefix("s3://") {
            let (bucket, key) = parse_s3(rest)?;
            if key.is_empty() || key.ends_with('/') {
                return Err(format!("`{path}` names a bucket or folder, not a file"));
            }
            let key = join_key("", &key)?;
            return Ok(ObjectRef { root: StorageRoot::S3 { bucket, prefix: String::new() }, key });
        }
        if path.contains("://") {
            return Err(format!("`{path}` is neither a relative path nor an s3:// URL"));
        }
        if path.starts_with('/') || path.starts_with('\\') || Path::new(path).is_absolute() {
            return Err(format!("`{path}` is absolute; paths are relative to `source` (or s3:// URLs)"));
        }
        let key = join_key("", path).map_err(|reason| format!("`{path}` {reason} `source`"))?;
        if key.is_empty() {
            return Err(format!("`{path}` names the source folder itself, not a file"));
        }
        Ok(ObjectRef { root: self.clone(), key })
    }

    /// The bucket this root lives in, if it is in S3.
    pub fn bucket(&self) -> Option<&str> {
        match self {
            StorageRoot::S3 { bucket, .. } => Some(bucket),
            StorageRoot::Local { .. } => None,
        }
    }
}

impl fmt::Display for StorageRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageRoot::Local { dir } => write!(f, "{}", dir.display()),
            StorageRoot::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl ObjectRef {
    /// The file's extension, lowercased, as a decoding hint.
    pub fn extension(&self) -> Option<String> {
        let name = self.key.rsplit('/').next()?;
        let (_, ext) = name.rsplit_once('.')?;
        Some(ext.to_ascii_lowercase())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            StorageRoot::Local { dir } => write!(f, "{}", dir.join(&self.key).display()),
            StorageRoot::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}{}", self.key),
        }
    }
}

/// Splits `bucket/key` (after `s3://`) and checks the bucket name and the
/// key: an `s3://` location is taken as written, so a `.` or `..` segment
/// (percent-encoded or not), an empty segment or a `\\` is refused rather
/// than resolved — it could only be an attempt to name another prefix.
fn parse_s3(rest: &str) -> Result<(String, String), String> {
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket_name(bucket)?;
    let segments: Vec<&str> = key.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if segment.is_empty() && !last {
            return Err(format!("`s3://{rest}` has an empty segment (`//`)"));
        }
        if let Some(reason) = unsafe_segment(segment) {
            return Err(format!("`s3://{rest}` {reason}; s3:// locations are written without them"));
        }
    }
    Ok((bucket.to_owned(), key.to_owned()))
}

/// Why a path segment may not reach storage: it is `.` or `..` once
/// percent-decoded, or hides a separator or a NUL.
fn unsafe_segment(segment: &str) -> Option<&'static str> {
    let decoded = percent_decoded(segment);
    if decoded == "." || decoded == ".." {
        Some("has a `.` or `..` segment")
    } else if decoded.contains(['/', '\\', '\0']) || segment.contains('\\') {
        Some("has a `\\`, a NUL or a percent-encoded `/`")
    } else {
        None
    }
}

/// `%XX` escapes decoded (an escape that is not two hex digits is kept as
/// written); only used to recognise dangerous segments.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b)))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// S3 bucket naming rules: 3..63 characters of lowercase letters, digits,
/// dots and hyphens, starting and ending with a letter or digit.
fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let well_formed = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if well_formed {
        Ok(())
    } else {
        Err(format!("`{bucket}` is not a valid bucket name (3 to 63 lowercase letters, digits, dots or hyphens)"))
    }
}

/// Joins a relative path onto a key prefix, resolving `.` and `..`.
/// Errors (as the end of a sentence) when `..` climbs above the prefix.
fn join_key(prefix: &str, relative: &str) -> Result<String, String> {
    let mut segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let floor = segments.len();
    for segment in relative.split(['/', '\\']) {
        if segment.contains('%') && unsafe_segment(segment).is_some() {
            return Err("has a percent-encoded `.`, `..` or separator, and may not name anything outside".to_owned());
        }
        match segment {
            "" | "." => {}
            ".." => {
                if segments.len() == floor {
                    return Err("escapes".to_owned());
                }
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut key = segments.join("/");
    if relative.ends_with('/') && !key.is_empty() {
        key.push('/');
    }
    Ok(key)
}

/// Removes `.` segments and folds `name/..` pairs, without touching the
/// filesystem (a folder that does not exist yet can still be an output).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    normal.push("..");
                }
            }
            other => normal.push(other),
        }
    }
    if normal.as_os_str().is_empty() { PathBuf::from(".") } else { normal }
}

fn as_prefix(key: &str) -> String {
    let trimmed = key.trim_matches('/');
    if trimmed.is_empty() { String::new() } else { format!("{trimmed}/") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &str) -> StorageRoot {
        StorageRoot::Local { dir: PathBuf::from(dir) }
    }

    #[test]
    fn relative_paths_resolve_under_the_root() {
        let root = local("/albums/a");
        let object = root.object("01/./vox.wav").unwrap();
        assert_eq!(object.key, "01/vox.wav");
        assert_eq!(object.to_string(), "/albums/a/01/vox.wav");
        assert_eq!(root.object("01/../02/bass.flac").unwrap().key, "02/bass.flac");
        assert_eq!(object.extension().as_deref(), Some("wav"));
    }

    #[test]
    fn local_roots_are_normalised() {
        let base = local("/albums/a");
        assert_eq!(StorageRoot::resolve(".", &base).unwrap(), local("/albums/a"));
        assert_eq!(StorageRoot::resolve("./stems/../mixes/", &base).unwrap(), local("/albums/a/mixes"));
        assert_eq!(StorageRoot::resolve("/srv/out", &base).unwrap(), local("/srv/out"));
    }

    #[test]
    fn dot_dot_may_not_escape_the_root() {
        let root = local("/albums/a");
        assert!(root.object("../b/vox.wav").unwrap_err().contains("escapes"));
        assert!(root.object("01/../../vox.wav").unwrap_err().contains("escapes"));
        assert!(root.object("/etc/passwd").unwrap_err().contains("absolute"));
    }

    #[test]
    fn s3_urls_and_prefixes() {
        let base = local("/albums/a");
        let root = StorageRoot::resolve("s3://label-stems/northern/", &base).unwrap();
        assert_eq!(root, StorageRoot::S3 { bucket: "label-stems".into(), prefix: "northern/".into() });
        let object = root.object("01/vox.wav").unwrap();
        assert_eq!(object.to_string(), "s3://label-stems/northern/01/vox.wav");
        assert!(root.object("../other/vox.wav").is_err());

        let absolute = root.object("s3://other-bucket/x/y.flac").unwrap();
        assert_eq!(absolute.root.bucket(), Some("other-bucket"));
        assert_eq!(absolute.key, "x/y.flac");
        assert!(StorageRoot::resolve("s3://Bad_Bucket/", &base).unwrap_err().contains("bucket name"));
        assert!(StorageRoot::resolve("http://example/", &base).is_err());
    }

    #[test]
    fn s3_locations_with_dot_segments_are_refused_not_resolved() {
        let base = local("/albums/a");
        for bad in [
            "s3://shared/a/../b/secret/",
            "s3://label-a/../label-b/",
            "s3://shared/a/./b/",
            "s3://shared/a/%2e%2e/b/",
            "s3://shared/a/%2E./b/",
            "s3://shared/a/.%2e/",
            "s3://shared/a%2f..%2fb/",
            "s3://shared/a/..",
            "s3://shared/a//b/",
            "s3://shared/a\\..\\b/",
        ] {
            assert!(StorageRoot::resolve(bad, &base).is_err(), "{bad} was accepted as a root");
            let file = format!("{}x.wav", bad.trim_end_matches('/').to_owned() + "/");
            assert!(base.object(&file).is_err(), "{file} was accepted as a file");
        }
        let root = StorageRoot::resolve("s3://shared/a/", &base).unwrap();
        for bad in ["%2e%2e/b/x.wav", "x/%2E%2E/%2e%2E/b/x.wav", "a%2f..%2f..%2fb/x.wav"] {
            assert!(root.object(bad).is_err(), "{bad} was accepted under {root}");
        }
        // Names that merely contain dots or percent signs are files like any other.
        assert_eq!(root.object("take..2/v%41.wav").unwrap().key, "take..2/v%41.wav");
        assert!(StorageRoot::resolve("http://example/", &base).is_err());
    }

    #[test]
    fn relative_source_under_an_s3_manifest() {
        let base = StorageRoot::S3 { bucket: "b01".into(), prefix: "jobs/7/".into() };
        let root = StorageRoot::resolve("stems/", &base).unwrap();
        assert_eq!(root, StorageRoot::S3 { bucket: "b01".into(), prefix: "jobs/7/stems/".into() });
        assert!(StorageRoot::resolve("../../../x", &base).is_err());
    }
}
