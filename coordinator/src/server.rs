//! The coordinator's gRPC server: both services, gRPC health (each service
//! reported SERVING) and reflection, on a listener the caller binds.

use std::future::Future;

use lacquer_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::service::Coordinator;

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
    health_reporter.set_serving::<pb::albums_server::AlbumsServer<Coordinator>>().await;
    health_reporter.set_serving::<pb::workers_server::WorkersServer<Coordinator>>().await;
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
        .add_service(pb::albums_server::AlbumsServer::new(coordinator.clone()))
        .add_service(pb::workers_server::WorkersServer::new(coordinator))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
