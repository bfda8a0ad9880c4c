use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use turbine_telemetry::GrpcServerLayer;

/// A `grpc.health.v1.Health` server behind `layer` on a loopback port: a real service whose
/// `Check("")` answers OK with a message and trailers, and `Check("missing")` NOT_FOUND trailers-only.
pub async fn serve_health(layer: GrpcServerLayer) -> Channel {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}
