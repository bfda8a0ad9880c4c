//! In-process stages and an orchestrator on a loopback port, for the unit tests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use turbine_proto::v1::orchestrator_client::OrchestratorClient;
use turbine_proto::v1::{Dtype, Preview, Stage, StepProgress};
use turbine_rpc::tensor::WireTensor;
use turbine_telemetry::Metrics;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::stages::{
    DecodedFrames, DenoiseInput, DenoiseUpdate, EncodedPrompt, LatentLog, Stages, VideoSize,
};

/// Stages that compute nothing: a zero context, zero latents, a grey gradient video.
#[derive(Debug, Default)]
pub struct FakeStages {
    pub steps: u32,
    pub step_time: Duration,
    pub encodes: AtomicUsize,
    /// Denoise calls running now, and whether one was dropped before finishing (cancelled).
    pub denoising: AtomicUsize,
    pub denoise_dropped: AtomicBool,
    /// Some stage has no ready replica.
    pub unready: AtomicBool,
    /// Decoding sends its first frames, then starts over from frame 0, as a retried call does.
    pub decode_replays: bool,
}

impl FakeStages {
    pub fn new(steps: u32, step_time: Duration) -> Arc<Self> {
        Arc::new(Self {
            steps,
            step_time,
            ..Self::default()
        })
    }
}

/// Counts a denoise call as running while it lives, and records a drop before the end.
struct Running<'a> {
    stages: &'a FakeStages,
    finished: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.stages.denoising.fetch_sub(1, Ordering::SeqCst);
        if !self.finished {
            self.stages.denoise_dropped.store(true, Ordering::SeqCst);
        }
    }
}

fn f32_zeros(shape: Vec<usize>) -> WireTensor {
    let n: usize = shape.iter().product();
    WireTensor {
        dtype: Dtype::F32,
        shape,
        data: vec![0u8; n * 4].into(),
    }
}

impl Stages for Arc<FakeStages> {
    async fn encode(&self, _prompt: &str, _allow_empty: bool) -> Result<EncodedPrompt> {
        self.encodes.fetch_add(1, Ordering::SeqCst);
        Ok(EncodedPrompt {
            context: f32_zeros(vec![8, 4]),
            tokens: 3,
            truncated: false,
        })
    }

    async fn denoise(
        &self,
        input: &DenoiseInput,
        updates: &mpsc::Sender<DenoiseUpdate>,
        latents: &LatentLog,
    ) -> Result<()> {
        self.denoising.fetch_add(1, Ordering::SeqCst);
        // As the denoiser does: nothing is sampled before the prompts' contexts arrive.
        if input.prompts().await.is_none() {
            return Err(Error::StageProtocol {
                stage: Stage::Denoise,
                message: "the call ended before the prompts' contexts".into(),
            });
        }
        let mut running = Running {
            stages: self,
            finished: false,
        };
        for step in 0..self.steps {
            tokio::time::sleep(self.step_time).await;
            let _ = updates
                .send(DenoiseUpdate::Step(StepProgress {
                    step,
                    total: self.steps,
                    timestep: 1000.0 * f64::from(self.steps - step) / f64::from(self.steps),
                    seconds: self.step_time.as_secs_f64(),
                }))
                .await;
            if input.setup.params.as_ref().is_some_and(|p| p.previews) {
                let _ = updates
                    .send(DenoiseUpdate::Preview(Preview {
                        step,
                        width: 2,
                        height: 2,
                        png: vec![0x89, b'P', b'N', b'G'].into(),
                    }))
                    .await;
            }
        }
        let (h, w) = (
            (input.video.height / 8) as usize,
            (input.video.width / 8) as usize,
        );
        for i in 0..latents.expected() {
            latents.put(i, f32_zeros(vec![16, 1, h, w]));
        }
        running.finished = true;
        Ok(())
    }

    async fn decode(
        &self,
        video: VideoSize,
        latents: &LatentLog,
        frames: &mpsc::Sender<DecodedFrames>,
    ) -> Result<()> {
        let (h, w) = (video.height as usize, video.width as usize);
        if self.decode_replays {
            latents.get(0).await;
            let data = vec![0u8; 3 * h * w];
            let _ = frames
                .send(DecodedFrames {
                    first_frame: 0,
                    frames: WireTensor::from_u8(vec![3, 1, h, w], data),
                })
                .await;
        }
        let mut first_frame = 0;
        for i in 0..latents.expected() {
            latents.get(i).await;
            let n = if i == 0 { 1 } else { 4 };
            let plane: Vec<u8> = (0..n * h * w).map(|p| (p % 251) as u8).collect();
            let data = [plane.clone(), plane.clone(), plane].concat();
            let _ = frames
                .send(DecodedFrames {
                    first_frame,
                    frames: WireTensor::from_u8(vec![3, n, h, w], data),
                })
                .await;
            first_frame += n as u32;
        }
        Ok(())
    }

    async fn ready(&self) -> bool {
        !self.unready.load(Ordering::SeqCst)
    }
}

/// An orchestrator on an ephemeral loopback port over `stages`.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// `args` are extra flags (the stage endpoints are placeholders the fakes never call).
    pub async fn start(stages: Arc<FakeStages>, artifacts: &Path, args: &[&str]) -> Self {
        let mut argv = vec![
            "turbine-orchestrator",
            "--text-encoder",
            "http://127.0.0.1:1",
            "--denoiser",
            "http://127.0.0.1:1",
            "--vae",
            "http://127.0.0.1:1",
            "--artifact-dir",
            artifacts.to_str().expect("utf-8 temp path"),
        ];
        argv.extend_from_slice(args);
        let config = Config::try_parse_from(argv).expect("valid test flags");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(crate::serve(
            config,
            stages,
            listener,
            Metrics::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            stop: Some(stop),
            done,
        }
    }

    pub async fn client(&self) -> OrchestratorClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        OrchestratorClient::new(channel)
    }

    /// Sends the shutdown signal and waits for the drain to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.done).await?
    }
}
