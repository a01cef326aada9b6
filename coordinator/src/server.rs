//! The coordinator's gRPC server: both services, gRPC health (each service
//! reported SERVING) and reflection, on a listener the caller binds.

use std::future::Future;

use lacquer_proto::MAX_MESSAGE_BYTES;
use lacquer_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;

use crate::service::Coordinator;

const ALBUMS: &str = "lacquer.v1.Albums";
const WORKERS: &str = "lacquer.v1.Workers";

/// A certificate chain and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Tls {
    pub certificate_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Serves `coordinator` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    coordinator: Coordinator,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with_tls(listener, coordinator, None, shutdown).await
}

/// Serves `coordinator` on `listener`, over TLS (rustls) when `tls` is
/// given, until `shutdown` completes.
pub async fn serve_with_tls(
    listener: TcpListener,
    coordinator: Coordinator,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Health follows the store: NOT_SERVING while it cannot be written (or
    // the process drains), so Kubernetes takes the pod out of service and,
    // if it does not recover, restarts it.
    let mut healthy = coordinator.health();
    tokio::spawn(async move {
        loop {
            let serving = *healthy.borrow_and_update();
            let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
            health_reporter.set_service_status("", status).await;
            health_reporter.set_service_status(ALBUMS, status).await;
            health_reporter.set_service_status(WORKERS, status).await;
            if healthy.changed().await.is_err() {
                return;
            }
        }
    });
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        // Both of rustls's providers are linked into the workspace: name
        // one (an error means one is already installed, which is as good).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let identity = tonic::transport::Identity::from_pem(tls.certificate_pem, tls.key_pem);
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    builder
        .add_service(health)
        .add_service(reflection)
        .add_service(
            pb::albums_server::AlbumsServer::new(coordinator.clone()).max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::workers_server::WorkersServer::new(coordinator)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
