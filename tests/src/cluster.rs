//! A whole Turbine cluster as separate processes on loopback: text encoder, denoiser replicas,
//! VAE (all with the bundled tiny preset, `--tiny`) and the orchestrator in front of them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::MutexGuard;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use turbine_proto::v1::orchestrator_client::OrchestratorClient;

use crate::binaries::binaries;
use crate::process::Process;

/// How long a service may take from start to SERVING (the tiny preset loads in milliseconds;
/// the rest is slack for a loaded CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Clusters run one at a time: the machine has two cores, and the fault and cancellation tests
/// measure steps that a second cluster computing beside them would slow down unpredictably.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What differs between the tests' clusters.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Denoiser replicas behind the orchestrator.
    pub denoisers: usize,
    /// OTLP gRPC collector every service exports spans to (batches every 100 ms).
    pub otlp_endpoint: Option<String>,
    /// Further orchestrator flags.
    pub orchestrator_args: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            denoisers: 1,
            otlp_endpoint: None,
            orchestrator_args: Vec::new(),
        }
    }
}

/// One service process and where it listens.
pub struct Service {
    pub process: Process,
    /// The gRPC address.
    pub addr: SocketAddr,
    /// The Prometheus `/metrics` address.
    pub metrics: SocketAddr,
}

impl Service {
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        connect(self.addr).await
    }
}

/// The running cluster; dropping it kills every process (and prints their logs when the test is
/// failing).
pub struct Cluster {
    // Fields drop in order: the orchestrator first, the serialisation guard last.
    pub orchestrator: Service,
    pub text_encoder: Service,
    pub denoisers: Vec<Service>,
    pub vae: Service,
    /// The orchestrator's `--artifact-dir`.
    pub artifacts: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

fn telemetry_args(config: &ClusterConfig) -> Vec<String> {
    let mut args = vec!["--metrics-addr".to_string(), "127.0.0.1:0".to_string()];
    if let Some(endpoint) = &config.otlp_endpoint {
        args.extend([
            "--otlp-endpoint".to_string(),
            endpoint.clone(),
            "--otlp-schedule-delay-ms".to_string(),
            "100".to_string(),
        ]);
    }
    args
}

async fn started(process: Process) -> Service {
    let addr = process.listen_addr().await;
    let metrics = process.metrics_addr().await;
    Service {
        process,
        addr,
        metrics,
    }
}

impl Cluster {
    /// Starts the stage services, waits for each to be SERVING, then starts the orchestrator
    /// and waits for it to be SERVING too (which it reports once every stage has a ready
    /// replica).
    pub async fn start(config: ClusterConfig) -> Cluster {
        let serial = SERIAL.lock().await;
        let bins = binaries();
        let telemetry = telemetry_args(&config);
        let stage = |name: &str, path| {
            let mut args = vec!["--tiny", "--listen", "127.0.0.1:0"];
            args.extend(telemetry.iter().map(String::as_str));
            Process::spawn(name, path, args)
        };
        // All stage processes start at once; they load while the others start.
        let text_encoder = stage("text-encoder", &bins.text_encoder);
        let denoisers: Vec<Process> = (0..config.denoisers)
            .map(|i| stage(&format!("denoiser-{i}"), &bins.denoiser))
            .collect();
        let vae = stage("vae", &bins.vae);

        let text_encoder = started(text_encoder).await;
        let mut started_denoisers = Vec::new();
        for denoiser in denoisers {
            started_denoisers.push(started(denoiser).await);
        }
        let vae = started(vae).await;
        wait_serving(&text_encoder, "turbine.v1.TextEncoder").await;
        for denoiser in &started_denoisers {
            wait_serving(denoiser, "turbine.v1.Denoiser").await;
        }
        wait_serving(&vae, "turbine.v1.Vae").await;

        let artifacts = tempfile::tempdir().expect("artifact directory");
        let denoiser_uris: Vec<String> = started_denoisers.iter().map(Service::uri).collect();
        let mut args = vec![
            "--listen".to_string(),
            "127.0.0.1:0".to_string(),
            "--text-encoder".to_string(),
            text_encoder.uri(),
            "--denoiser".to_string(),
            denoiser_uris.join(","),
            "--vae".to_string(),
            vae.uri(),
            "--artifact-dir".to_string(),
            artifacts.path().display().to_string(),
            "--health-interval".to_string(),
            "200ms".to_string(),
            "--drain-timeout".to_string(),
            "2s".to_string(),
        ];
        args.extend(telemetry.iter().cloned());
        args.extend(config.orchestrator_args.iter().cloned());
        let orchestrator = started(Process::spawn("orchestrator", &bins.orchestrator, &args)).await;
        wait_serving(&orchestrator, "turbine.v1.Orchestrator").await;
        Cluster {
            orchestrator,
            text_encoder,
            denoisers: started_denoisers,
            vae,
            artifacts,
            _serial: serial,
        }
    }

    /// A client of the public API.
    pub async fn client(&self) -> OrchestratorClient<Channel> {
        OrchestratorClient::new(self.orchestrator.channel().await)
            .max_decoding_message_size(8 << 20)
    }

    /// Every service's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for service in self.services() {
            out.push_str(&format!(
                "----- {} (pid {}) -----\n{}",
                service.process.name(),
                service.process.pid(),
                service.process.log()
            ));
        }
        out
    }

    fn services(&self) -> impl Iterator<Item = &Service> {
        [&self.orchestrator, &self.text_encoder, &self.vae]
            .into_iter()
            .chain(&self.denoisers)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster logs of the failed test:\n{}", self.logs());
        }
    }
}

/// A channel to `addr` (connects lazily, so a server that is not up yet fails the call, not
/// this function).
pub async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// grpc.health.v1 `Check(service)`; `None` when the call itself failed.
pub async fn health(channel: &Channel, service: &str) -> Option<ServingStatus> {
    let mut client = HealthClient::new(channel.clone());
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    request.set_timeout(Duration::from_secs(5));
    let response = client.check(request).await.ok()?.into_inner();
    ServingStatus::try_from(response.status).ok()
}

/// Polls grpc.health.v1 until both `service` and the whole server (`""`) are SERVING; fails if
/// the process exits or after [`READY_TIMEOUT`].
pub async fn wait_serving(service: &Service, name: &str) {
    let channel = service.channel().await;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if health(&channel, name).await == Some(ServingStatus::Serving)
            && health(&channel, "").await == Some(ServingStatus::Serving)
        {
            return;
        }
        if let Some(status) = service.process.exited() {
            panic!(
                "{} exited ({status}) before SERVING:\n{}",
                service.process.name(),
                service.process.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} ({name}) not SERVING after {READY_TIMEOUT:?}:\n{}",
            service.process.name(),
            service.process.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
