//! Test support for stage services (feature `testing`): servers on real loopback sockets, probes
//! of health and reflection as a deployment's tools make them, and service binaries started the
//! way an orchestrator or Kubernetes starts them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use turbine_telemetry::Metrics;

use crate::server::{ServeArgs, ServeError, Service, serve};

/// An in-process server on `127.0.0.1`.
pub struct Running {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

/// Serves `service` on a fresh loopback port with the production skeleton ([`serve`]).
pub async fn start(service: Service) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve(
        listener,
        service,
        Metrics::new(),
        shutdown,
        Duration::from_secs(5),
    ));
    Running { addr, stop, task }
}

impl Running {
    /// A client channel to the server.
    pub async fn channel(&self) -> Channel {
        connect(self.addr).await
    }

    /// Shuts the server down as SIGTERM would, draining in-flight calls.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.stop.send(());
        self.task.await.expect("server task")
    }
}

pub async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect()
        .await
        .expect("connect")
}

/// `grpc.health.v1.Health/Check` for `service` (`""` for the whole server).
pub async fn health(channel: &Channel, service: &str) -> ServingStatus {
    let response = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .expect("health check")
        .into_inner();
    match response.status() {
        tonic_health::pb::health_check_response::ServingStatus::Serving => ServingStatus::Serving,
        tonic_health::pb::health_check_response::ServingStatus::NotServing
        | tonic_health::pb::health_check_response::ServingStatus::Unknown
        | tonic_health::pb::health_check_response::ServingStatus::ServiceUnknown => {
            ServingStatus::NotServing
        }
    }
}

/// Polls health until `service` and `""` are SERVING; panics after `timeout`.
pub async fn wait_serving(channel: &Channel, service: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if health(channel, service).await == ServingStatus::Serving
            && health(channel, "").await == ServingStatus::Serving
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} not SERVING after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Service names listed by reflection, v1 and v1alpha.
pub async fn reflected_services(channel: &Channel) -> (Vec<String>, Vec<String>) {
    use tonic_reflection::pb::{v1, v1alpha};
    let v1 = {
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut responses =
            v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
                .server_reflection_info(tokio_stream::once(request))
                .await
                .expect("reflection v1")
                .into_inner();
        match responses.next().await {
            Some(Ok(v1::ServerReflectionResponse {
                message_response:
                    Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)),
                ..
            })) => list.service.into_iter().map(|s| s.name).collect(),
            other => panic!("reflection v1 answered {other:?}"),
        }
    };
    let v1alpha = {
        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut responses =
            v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone())
                .server_reflection_info(tokio_stream::once(request))
                .await
                .expect("reflection v1alpha")
                .into_inner();
        match responses.next().await {
            Some(Ok(v1alpha::ServerReflectionResponse {
                message_response:
                    Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(
                        list,
                    )),
                ..
            })) => list.service.into_iter().map(|s| s.name).collect(),
            other => panic!("reflection v1alpha answered {other:?}"),
        }
    };
    (v1, v1alpha)
}

/// A service binary running as a child process, its log collected.
pub struct Binary {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Binary {
    /// Starts `path` with `args` (plus `--listen 127.0.0.1:0`) and waits for it to log the
    /// address it listens on.
    pub fn start(path: &str, args: &[&str]) -> Binary {
        let mut child = Command::new(path)
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env_remove("TURBINE_MODEL_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the service binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(addr) = rest.split_whitespace().next()
                    && let Ok(addr) = addr.parse::<SocketAddr>()
                {
                    let _ = addr_tx.send(addr);
                }
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("{path} never logged its address:\n{}", log.lock().unwrap())
            });
        Binary { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // A failed test must not leave a server behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Checks a stage binary's flags (`A`, named `bin`): consistent, a model required (`--tiny` or
/// `--model-dir`, not both), `--drain-timeout` in seconds with fractions, never negative.
pub fn check_stage_flags<A: clap::Parser>(bin: &str, serve: impl Fn(&A) -> &ServeArgs) {
    A::command().debug_assert();
    assert!(A::try_parse_from([bin]).is_err());
    assert!(A::try_parse_from([bin, "--tiny", "--model-dir", "/m"]).is_err());
    let args = A::try_parse_from([bin, "--tiny", "--drain-timeout", "2.5"]).unwrap();
    assert_eq!(serve(&args).drain_timeout.as_millis(), 2500);
    assert!(A::try_parse_from([bin, "--tiny", "--drain-timeout", "-1"]).is_err());
}
