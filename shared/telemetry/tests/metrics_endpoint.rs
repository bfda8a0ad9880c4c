//! `/metrics` serves the Turbine metrics as Prometheus text, with the server layer's RPC counts.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use turbine_telemetry::{GrpcServerLayer, Stage, TelemetryConfig};

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_rpcs_and_job_metrics() {
    let telemetry = turbine_telemetry::init(&TelemetryConfig {
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..TelemetryConfig::default()
    })
    .unwrap();
    let metrics = telemetry.metrics().clone();
    let addr = telemetry.metrics_addr().expect("metrics endpoint bound");
    assert_ne!(addr.port(), 0);

    let channel = common::serve_health(GrpcServerLayer::new(metrics.clone())).await;
    let mut client = HealthClient::with_interceptor(channel, turbine_telemetry::inject);
    for service in ["", ""] {
        client
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap();
    }
    let error = client
        .check(HealthCheckRequest {
            service: "missing".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    metrics.queue_depth().set(3);
    metrics.jobs_running().inc();
    metrics.observe_stage(Stage::Denoise, Duration::from_secs(2));
    metrics.observe_step(Duration::from_millis(250));
    metrics.observe_first_frame(Duration::from_millis(1500));
    // An in-process stage service's handle: its times are the orchestrator's to record.
    let stage = metrics.rpc_only();
    stage.observe_stage(Stage::Denoise, Duration::from_secs(2));
    stage.observe_step(Duration::from_millis(250));
    stage.observe_first_frame(Duration::from_millis(1500));

    let response = http_get(addr, "/metrics").await;
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for line in [
        "turbine_rpc_requests_total{method=\"grpc.health.v1.Health/Check\"} 3",
        "turbine_rpc_errors_total{method=\"grpc.health.v1.Health/Check\",code=\"NOT_FOUND\"} 1",
        "turbine_rpc_seconds_count{method=\"grpc.health.v1.Health/Check\"} 3",
        "turbine_queue_depth 3",
        "turbine_jobs_running 1",
        "turbine_stage_seconds_count{stage=\"denoise\"} 1",
        "turbine_stage_seconds_sum{stage=\"denoise\"} 2.0",
        "turbine_step_seconds_count 1",
        "turbine_first_frame_seconds_count 1",
        "turbine_first_frame_seconds_sum 1.5",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line:?} missing from\n{body}"
        );
    }

    assert!(http_get(addr, "/other").await.starts_with("HTTP/1.1 404"));
    telemetry.shutdown().unwrap();
}
