//! Who is calling: bearer tokens mapped to tenants, and a separate token
//! for workers, read from a YAML file (a Kubernetes secret, mounted):
//!
//! ```yaml
//! tenants:
//!   label-a:
//!     token: "…"
//!     # Where this tenant's manifests may read and write.
//!     allowed: ["s3://label-a/", "s3://shared/label-a/"]
//! workers:
//!   token: "…"
//! ```
//!
//! Without a file every client is the one tenant `local`, allowed
//! everywhere, and any caller may act as a worker: for one machine only.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::error::ServiceError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    token: String,
    #[serde(default)]
    allowed: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerEntry {
    token: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tenants: BTreeMap<String, TenantEntry>,
    workers: WorkerEntry,
}

/// A client's tenant and what it may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    /// Location prefixes (`s3://bucket/prefix/`); empty means anywhere.
    allowed: Vec<String>,
    anywhere: bool,
}

impl Tenant {
    /// Whether `location` (`s3://bucket/key` or a local path) lies under
    /// one of the tenant's allowed prefixes.
    /// A location with a `.` or `..` segment (or one percent-encoded) is
    /// never under a prefix: locations are compared as written, so they
    /// must be written plainly.
    pub fn may_use(&self, location: &str) -> bool {
        if self.anywhere {
            return true;
        }
        if !plain_location(location) {
            return false;
        }
        self.allowed.iter().any(|prefix| {
            location.starts_with(prefix.as_str())
                && (prefix.ends_with('/')
                    || location.len() == prefix.len()
                    || location[prefix.len()..].starts_with('/'))
        })
    }
}

/// Whether `location` has no `.`, `..` or empty segment, no `\\` and no
/// percent-encoded dot, slash or backslash: the same object cannot be
/// named two ways.
fn plain_location(location: &str) -> bool {
    let path = location.strip_prefix("s3://").unwrap_or(location);
    let lowered = path.to_ascii_lowercase();
    let hidden = ["%2e", "%2f", "%5c", "%00"].iter().any(|escape| lowered.contains(escape));
    let segments: Vec<&str> = path.split('/').collect();
    let bad_segment = segments
        .iter()
        .enumerate()
        .any(|(i, s)| *s == "." || *s == ".." || (s.is_empty() && i != 0 && i + 1 != segments.len()));
    !hidden && !bad_segment && !path.contains(['\\', '\0'])
}

/// The coordinator's view of tokens.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    file: Option<TokensFile>,
}

impl Auth {
    /// No tokens: one local tenant, allowed everywhere.
    pub fn open() -> Self {
        Self { file: None }
    }

    /// Reads the tokens file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: TokensFile = serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut seen = std::collections::BTreeSet::new();
        for (name, tenant) in &file.tenants {
            for prefix in &tenant.allowed {
                if (!prefix.starts_with("s3://") && !prefix.starts_with('/')) || !plain_location(prefix) {
                    return Err(format!(
                        "{}: tenants.{name}.allowed: `{prefix}` must be an s3:// or absolute prefix without `.` or `..` segments",
                        path.display()
                    ));
                }
            }
            if tenant.token.len() < 16 {
                return Err(format!("{}: tenants.{name}.token: shorter than 16 characters", path.display()));
            }
            if !seen.insert(tenant.token.as_str()) {
                return Err(format!("{}: tenants.{name}.token: used twice", path.display()));
            }
        }
        if file.workers.token.len() < 16 || seen.contains(file.workers.token.as_str()) {
            return Err(format!("{}: workers.token: shorter than 16 characters or a tenant's", path.display()));
        }
        Ok(Self { file: Some(file) })
    }

    fn bearer(metadata: &MetadataMap) -> Result<Option<&str>, Status> {
        match metadata.get("authorization") {
            None => Ok(None),
            Some(value) => {
                let value = value.to_str().map_err(|_| ServiceError::unauthenticated("authorization: not text"))?;
                value
                    .strip_prefix("Bearer ")
                    .map(Some)
                    .ok_or_else(|| ServiceError::unauthenticated("authorization: expected `Bearer <token>`"))
            }
        }
    }

    /// The tenant a client request speaks for.
    pub fn tenant(&self, metadata: &MetadataMap) -> Result<Tenant, Status> {
        let Some(file) = &self.file else {
            return Ok(Tenant { name: "local".into(), allowed: Vec::new(), anywhere: true });
        };
        let token = Self::bearer(metadata)?.ok_or_else(|| ServiceError::unauthenticated("no bearer token"))?;
        if constant_time_eq(token, &file.workers.token) {
            return Err(ServiceError::not_allowed("the worker token cannot act for a tenant"));
        }
        file.tenants
            .iter()
            .find(|(_, t)| constant_time_eq(token, &t.token))
            .map(|(name, t)| Tenant { name: name.clone(), allowed: t.allowed.clone(), anywhere: false })
            .ok_or_else(|| ServiceError::unauthenticated("unknown token"))
    }

    /// Checks that a request comes from a worker.
    pub fn worker(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(file) = &self.file else { return Ok(()) };
        match Self::bearer(metadata)? {
            Some(token) if constant_time_eq(token, &file.workers.token) => Ok(()),
            Some(_) => Err(ServiceError::not_allowed("not the worker token")),
            None => Err(ServiceError::unauthenticated("no bearer token")),
        }
    }
}

/// Compares two tokens in time that does not depend on where they differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        let tenant =
            Tenant { name: "a".into(), allowed: vec!["s3://label-a".into(), "s3://shared/a/".into()], anywhere: false };
        assert!(tenant.may_use("s3://label-a/album/x.flac"));
        assert!(tenant.may_use("s3://shared/a/y.wav"));
        assert!(!tenant.may_use("s3://label-ab/album/x.flac"), "a longer bucket name is another bucket");
        assert!(!tenant.may_use("s3://shared/b/y.wav"));
        assert!(!tenant.may_use("/etc/passwd"));
        for escape in [
            "s3://shared/a/../b/secret/",
            "s3://shared/a/./../b/",
            "s3://label-a/../label-b/x.wav",
            "s3://shared/a/%2e%2e/b/",
            "s3://shared/a/%2E%2e/b/",
            "s3://shared/a%2f..%2fb/",
            "s3://shared/a/..\\b/",
            "s3://shared/a//../b/",
        ] {
            assert!(!tenant.may_use(escape), "{escape} passed as the tenant's");
        }
    }
}
