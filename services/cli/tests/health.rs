//! `turbine health` as a container healthcheck runs it: the binary against a grpc.health.v1 server
//! on a real loopback socket, exiting 0 only while the asked service is SERVING and failing
//! quickly, with a message, when it is not, is unknown, or nothing listens.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

const SERVICE: &str = "turbine.v1.Denoiser";

fn health(addr: &str, service: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_turbine"))
        .args(["health", "--addr", addr, "--service", service])
        .args(["--timeout", "2s"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run turbine health")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A health server on a fresh loopback port, serving until the runtime is dropped.
fn start(runtime: &tokio::runtime::Runtime) -> (SocketAddr, HealthReporter) {
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (addr, reporter)
    })
}

#[test]
fn exits_zero_only_while_the_service_is_serving() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (addr, reporter) = start(&runtime);
    let url = format!("http://{addr}");
    let set = |status| runtime.block_on(reporter.set_service_status(SERVICE, status));

    set(ServingStatus::NotServing);
    let out = health(&url, SERVICE);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{SERVICE} at {url}: NOT_SERVING")),
        "{}",
        stderr(&out)
    );

    set(ServingStatus::Serving);
    let out = health(&url, SERVICE);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{SERVICE} at {url}: SERVING")
    );
    // The server as a whole ("") is SERVING from the start.
    assert!(health(&url, "").status.success());

    let out = health(&url, "turbine.v1.Nothing");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("NotFound"), "{}", stderr(&out));
}

#[test]
fn fails_with_a_message_when_nothing_answers_or_the_address_is_bad() {
    // A port that was free a moment ago: connection refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let start = Instant::now();
    let out = health(&format!("http://{addr}"), "");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("connecting"), "{}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(10));

    let out = health("not a url", "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not an address such as http://host:port"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
