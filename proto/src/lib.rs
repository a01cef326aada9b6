//! The generated lacquer.v1 types and service stubs, their conversions to
//! and from the domain's types (here, once, for the coordinator and the
//! workers alike), and how a client reaches a coordinator.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("lacquer.v1");

    /// The encoded file descriptors, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("lacquer_v1_descriptor");
}

/// A task's stage on the wire.
impl From<lacquer_pipelines::tasks::Stage> for v1::Stage {
    fn from(stage: lacquer_pipelines::tasks::Stage) -> Self {
        use lacquer_pipelines::tasks::Stage;
        match stage {
            Stage::Mix => v1::Stage::Mix,
            Stage::Master => v1::Stage::Master,
            Stage::Plan => v1::Stage::Plan,
            Stage::Finalize => v1::Stage::Finalize,
            Stage::Report => v1::Stage::Report,
        }
    }
}

/// A stage as it came over the wire (an `i32`, as prost keeps enums):
/// `None` for a value this build does not know.
pub fn stage(raw: i32) -> Option<lacquer_pipelines::tasks::Stage> {
    use lacquer_pipelines::tasks::Stage;
    match v1::Stage::try_from(raw).ok()? {
        v1::Stage::Mix => Some(Stage::Mix),
        v1::Stage::Master => Some(Stage::Master),
        v1::Stage::Plan => Some(Stage::Plan),
        v1::Stage::Finalize => Some(Stage::Finalize),
        v1::Stage::Report => Some(Stage::Report),
        v1::Stage::Unspecified => None,
    }
}

/// Why a coordinator could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{url}: not a coordinator address ({reason})")]
    Address { url: String, reason: String },
    #[error("cannot reach the coordinator at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot read the CA certificate {path}: {reason}")]
    CaCertificate { path: String, reason: String },
}

/// The largest message a lacquer peer sends or accepts on the `Workers`
/// service and in replies to clients: a lease carries the probed album
/// (at most 8 MiB, checked at Submit) and the earlier tasks' results.
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

/// Whether a call failed for the connection's sake (the coordinator
/// restarting, a proxy or an h2 error cutting the stream), not for what
/// was asked: the same call may succeed later.
pub fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
    )
}

/// Opens a channel to the coordinator at `url`: `http://` in plain text,
/// `https://` through rustls, trusting the PEM certificates in the file
/// `ca_cert` when given, else the Mozilla roots.
pub async fn connect(url: &str, ca_cert: Option<&std::path::Path>) -> Result<Channel, ConnectError> {
    let address = |reason: String| ConnectError::Address { url: url.to_owned(), reason };
    let ca_pem = match ca_cert {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| ConnectError::CaCertificate { path: path.display().to_string(), reason: e.to_string() })?,
        ),
        None => None,
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| address(e.to_string()))?;
    if url.starts_with("https://") {
        install_crypto();
        let tls = match &ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_webpki_roots(),
        };
        endpoint = endpoint.tls_config(tls).map_err(|e| address(e.to_string()))?;
    } else if ca_pem.is_some() {
        return Err(address("a CA certificate was given, so the address must start with https://".into()));
    }
    endpoint.connect().await.map_err(|e| ConnectError::Unreachable {
        url: url.to_owned(),
        reason: std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
    })
}

/// Makes rustls use ring. The workspace links both of rustls's providers
/// (ring through tonic, aws-lc-rs through the AWS SDK), and rustls will not
/// choose between them on its own.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// `None` sends no token; a token that is not plain text is refused.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        token
            .map(|t| format!("Bearer {t}").parse().map_err(|_| "the token is not plain text".to_owned()))
            .transpose()
            .map(Self)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}
