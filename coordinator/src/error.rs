//! What a call to either service can fail with, each kind mapped to one
//! `tonic::Code` here and nowhere else.

use tonic::{Code, Status};

/// A refused or failed call to `Albums` or `Workers`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such job, or another tenant's (whose existence is not revealed).
    #[error("no job {0}")]
    NoJob(String),
    /// A request or manifest that cannot be taken: what and where.
    #[error("{0}")]
    Invalid(String),
    /// A location or a role the caller may not use.
    #[error("{0}")]
    NotAllowed(String),
    /// No credentials, or none the coordinator knows.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Asked too early or too late: a report not yet made, or no longer
    /// kept.
    #[error("{0}")]
    NotNow(String),
    /// The coordinator's store or object storage cannot be reached or
    /// written; nothing was changed, and the same call may succeed later.
    #[error("{0}")]
    Unavailable(String),
}

impl ServiceError {
    pub fn code(&self) -> Code {
        match self {
            ServiceError::NoJob(_) => Code::NotFound,
            ServiceError::Invalid(_) => Code::InvalidArgument,
            ServiceError::NotAllowed(_) => Code::PermissionDenied,
            ServiceError::Unauthenticated(_) => Code::Unauthenticated,
            ServiceError::NotNow(_) => Code::FailedPrecondition,
            ServiceError::Unavailable(_) => Code::Unavailable,
        }
    }
}

/// Each kind as a `Status`, ready to return from a handler.
impl ServiceError {
    pub fn no_job(job_id: &str) -> Status {
        ServiceError::NoJob(job_id.to_owned()).into()
    }
    pub fn invalid(message: impl Into<String>) -> Status {
        ServiceError::Invalid(message.into()).into()
    }
    pub fn not_allowed(message: impl Into<String>) -> Status {
        ServiceError::NotAllowed(message.into()).into()
    }
    pub fn unauthenticated(message: &'static str) -> Status {
        ServiceError::Unauthenticated(message).into()
    }
    pub fn not_now(message: impl Into<String>) -> Status {
        ServiceError::NotNow(message.into()).into()
    }
    pub fn unavailable(message: impl Into<String>) -> Status {
        ServiceError::Unavailable(message.into()).into()
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code_and_keeps_its_message() {
        let cases = [
            (ServiceError::no_job("job-000007"), Code::NotFound, "no job job-000007"),
            (ServiceError::invalid("tracks[0].id: bad"), Code::InvalidArgument, "tracks[0].id: bad"),
            (ServiceError::not_allowed("not yours"), Code::PermissionDenied, "not yours"),
            (ServiceError::unauthenticated("no bearer token"), Code::Unauthenticated, "no bearer token"),
            (ServiceError::not_now("not yet"), Code::FailedPrecondition, "not yet"),
            (ServiceError::unavailable("store down"), Code::Unavailable, "store down"),
        ];
        for (status, code, message) in cases {
            assert_eq!((status.code(), status.message()), (code, message));
        }
    }
}
