//! Where a process runs its models: `--device auto|cpu|cuda|cuda:N`, `--quant none|fp8|int8`
//! for the DiT, and `--text-device` for umT5 when it shares a process with the DiT.

use std::fmt;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{Context, bail};
use turbine_pipeline::ModelSource;
use turbine_tensor::cuda::{Precision, Quant};
use turbine_tensor::{Backend, CpuBackend, CudaBackend, CudaOptions};

/// The device a command asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    /// The first GPU when the CUDA backend starts on it, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("expected auto, cpu, cuda or cuda:N, got `{s}`")),
        }
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantArg {
    /// int8 for a TurboDiffusion `-quant` checkpoint on a GPU (its int8 weights stay int8), none
    /// otherwise ([`QuantArgs::for_dit`] decides which checkpoint it is).
    Auto,
    None,
    Fp8,
    Int8,
}

impl QuantArg {
    fn quant(self) -> Quant {
        match self {
            QuantArg::None => Quant::None,
            QuantArg::Fp8 => Quant::Fp8,
            QuantArg::Auto | QuantArg::Int8 => Quant::Int8,
        }
    }
}

/// `--device`: where a process runs its models.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Where the models run: auto (the GPU when one is usable, else the CPU), cpu, cuda or cuda:N.
    /// On a GPU, weights and activations are bf16 with f32 accumulation and residuals.
    #[arg(long, env = "TURBINE_DEVICE", default_value = "auto")]
    pub device: DeviceArg,
}

/// `--quant`: how the DiT's block linears run, for the commands that run the DiT.
#[derive(Debug, Clone, clap::Args)]
pub struct QuantArgs {
    /// DiT block linears on the GPU: auto (int8 for a TurboDiffusion `-quant` checkpoint, none
    /// for any other), none (bf16), fp8 (e4m3 weights and activations; H100/H200) or int8
    /// (TurboDiffusion's W8A8 in 128x128 tiles; other checkpoints are quantized at load).
    #[arg(long, env = "TURBINE_QUANT", value_enum, default_value_t = QuantArg::Auto)]
    pub quant: QuantArg,
}

impl QuantArgs {
    /// `--quant` for the DiT of `source`: `auto` stays auto (int8 on a GPU, the checkpoint's
    /// dequantized weights on the CPU) when the checkpoint holds `-quant` int8 weights, and is
    /// none for any other checkpoint.
    pub fn for_dit(&self, source: &ModelSource) -> anyhow::Result<QuantArg> {
        if self.quant == QuantArg::Auto && !source.dit_holds_int8()? {
            return Ok(QuantArg::None);
        }
        Ok(self.quant)
    }
}

/// `--text-device` and `--reserve-gib`: where umT5 runs when the DiT shares the process.
#[derive(Debug, Clone, clap::Args)]
pub struct TextPlacementArgs {
    /// Where the text encoder runs: auto (on the DiT's GPU when umT5's weights fit there next to
    /// the loaded DiT and VAE with --reserve-gib to spare, else on the CPU), cpu, cuda or cuda:N
    /// (another GPU than the DiT's gets a context of its own).
    #[arg(long, env = "TURBINE_TEXT_DEVICE", default_value = "auto")]
    pub text_device: DeviceArg,
    /// GPU memory `--text-device auto` keeps free for activations and the VAE's working set, in
    /// GiB (a 14B 720p forward peaks about 9 GiB above its weights).
    #[arg(long, env = "TURBINE_RESERVE_GIB", default_value_t = 16.0, value_parser = parse_gib)]
    pub reserve_gib: f64,
}

fn parse_gib(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(gib) if gib.is_finite() && gib >= 0.0 => Ok(gib),
        _ => Err(format!("expected a number of GiB >= 0, got `{text}`")),
    }
}

/// Bytes per weight on a GPU, where models run in bf16.
const GPU_BYTES_PER_PARAMETER: usize = 2;

/// The backend a command runs on.
pub enum Chosen {
    Cpu,
    Cuda(CudaBackend),
}

/// A stage binary run on a backend, for [`serve_on`]: where its run-time choice of backend
/// becomes a type.
pub trait OnBackend {
    fn on<B: Backend + Clone>(self, backend: B) -> ExitCode;
}

/// A stage binary's `main` once its flags are parsed: `work` on the backend `chosen`, or the
/// reason none could start and a failing exit.
pub fn serve_on(chosen: anyhow::Result<Chosen>, work: impl OnBackend) -> ExitCode {
    match chosen {
        Ok(Chosen::Cpu) => work.on(CpuBackend),
        Ok(Chosen::Cuda(backend)) => work.on(backend),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Chosen {
    /// Says on stderr which backend runs `what` and why.
    fn announce(&self, what: &str, why: &str) {
        match self {
            Chosen::Cpu => eprintln!("{what}: cpu ({why})"),
            Chosen::Cuda(b) => eprintln!("{what}: {} ({why})", describe(b)),
        }
    }
}

impl DeviceArg {
    /// Starts the backend this argument names, `flag` naming it in errors and on stderr (which
    /// backend runs and, for `auto`, why). An explicit `cuda` that cannot start, or a `quant`
    /// on the CPU, is an error.
    pub fn start(self, flag: &str, quant: QuantArg) -> anyhow::Result<Chosen> {
        let options = CudaOptions {
            precision: Precision::Bf16,
            quant: quant.quant(),
            ..CudaOptions::default()
        };
        let chosen = match self {
            DeviceArg::Cpu => {
                let chosen = Chosen::Cpu;
                chosen.announce(flag, &format!("--{flag} cpu"));
                chosen
            }
            DeviceArg::Cuda(n) => {
                let backend = CudaBackend::with_options(n, options)
                    .with_context(|| format!("--{flag} cuda:{n}: the CUDA backend cannot start"))?;
                let chosen = Chosen::Cuda(backend);
                chosen.announce(flag, &format!("--{flag} cuda:{n}"));
                chosen
            }
            DeviceArg::Auto => match CudaBackend::with_options(0, options) {
                Ok(backend) => {
                    let chosen = Chosen::Cuda(backend);
                    chosen.announce(flag, &format!("--{flag} auto: GPU found"));
                    chosen
                }
                Err(e) => {
                    let chosen = Chosen::Cpu;
                    chosen.announce(flag, &format!("--{flag} auto: no usable GPU: {e}"));
                    chosen
                }
            },
        };
        let on_cpu = matches!(chosen, Chosen::Cpu);
        if on_cpu && matches!(quant, QuantArg::Fp8 | QuantArg::Int8) {
            let name = if quant == QuantArg::Fp8 {
                "fp8"
            } else {
                "int8"
            };
            bail!("--quant {name} needs a CUDA device (--{flag} cuda)");
        }
        if !on_cpu && quant == QuantArg::Auto {
            eprintln!("--quant auto: int8, the DiT checkpoint's -quant weights as they are");
        }
        Ok(chosen)
    }
}

impl DeviceArgs {
    /// Starts the backend of `--device`; see [`DeviceArg::start`].
    pub fn select(&self, quant: QuantArg) -> anyhow::Result<Chosen> {
        self.device.start("device", quant)
    }
}

impl TextPlacementArgs {
    /// Where the text encoder of `source` goes, decided after the DiT and VAE are loaded on
    /// `dit` so the memory they hold is known. The DiT's GPU is shared (one context, one
    /// stream), never opened twice.
    pub fn place(&self, dit: &Chosen, source: &ModelSource) -> anyhow::Result<Chosen> {
        let gib = |bytes: usize| bytes as f64 / f64::from(1 << 30);
        let text_bytes = source.text_config().backend_parameters() * GPU_BYTES_PER_PARAMETER;
        let chosen = match (self.text_device, dit) {
            (DeviceArg::Auto, Chosen::Cuda(b)) => {
                let free = b
                    .free_memory()
                    .context("--text-device auto: free GPU memory")?;
                let reserve = (self.reserve_gib * f64::from(1 << 30)) as usize;
                let why = format!(
                    "--text-device auto: umT5 needs {:.2} GiB, {:.2} GiB free with {:.2} GiB \
                     reserved",
                    gib(text_bytes),
                    gib(free),
                    self.reserve_gib
                );
                let chosen = if free >= text_bytes.saturating_add(reserve) {
                    Chosen::Cuda(b.clone())
                } else {
                    Chosen::Cpu
                };
                chosen.announce("text-device", &why);
                return Ok(chosen);
            }
            (DeviceArg::Auto, Chosen::Cpu) => Chosen::Cpu,
            (DeviceArg::Cuda(n), Chosen::Cuda(b)) if b.info().ordinal == n => {
                Chosen::Cuda(b.clone())
            }
            (device, _) => return device.start("text-device", QuantArg::None),
        };
        chosen.announce("text-device", "with the DiT");
        Ok(chosen)
    }
}

fn describe(b: &CudaBackend) -> String {
    let info = b.info();
    format!(
        "cuda:{} ({}, {}, bf16{})",
        info.ordinal,
        info.name,
        info.arch,
        match b.quant() {
            Quant::None => "",
            Quant::Fp8 => ", fp8 linears",
            Quant::Int8 => ", int8 linears",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_on_the_cpu_with_a_cpu_dit() {
        let source = ModelSource::Tiny;
        for text_device in [DeviceArg::Auto, DeviceArg::Cpu] {
            let args = TextPlacementArgs {
                text_device,
                reserve_gib: 16.0,
            };
            assert!(matches!(
                args.place(&Chosen::Cpu, &source).unwrap(),
                Chosen::Cpu
            ));
        }
    }

    #[test]
    fn reserves_are_non_negative_gib() {
        assert_eq!(parse_gib("16"), Ok(16.0));
        assert_eq!(parse_gib("0.5"), Ok(0.5));
        for bad in ["-1", "x", "inf", "NaN", ""] {
            let err = parse_gib(bad).unwrap_err();
            assert!(err.contains("GiB >= 0"), "{err}");
        }
    }

    #[test]
    fn auto_quant_is_int8_for_a_quant_checkpoint_only() {
        use std::collections::HashMap;

        use turbine_checkpoint::convert::{HostView, write_safetensors};
        use turbine_pipeline::ModelFiles;
        use turbine_tensor::{HostData, HostTensor};

        let dir = std::env::temp_dir().join(format!("turbine-quant-auto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dit = |file: &str, key: &str, data: HostData| {
            let path = dir.join(file);
            let t = HostTensor::new([128, 128], data).unwrap();
            write_safetensors(&path, [(key.to_string(), HostView(&t))], HashMap::new()).unwrap();
            ModelSource::Files(ModelFiles {
                dit: path,
                ..ModelFiles::in_dir(&dir)
            })
        };
        let quant = dit(
            "quant.safetensors",
            "blocks.0.ffn.0.int8_weight",
            HostData::I8(vec![3; 128 * 128]),
        );
        let plain = dit(
            "plain.safetensors",
            "blocks.0.ffn.0.weight",
            HostData::F32(vec![0.5; 128 * 128]),
        );
        let with = |quant| QuantArgs { quant };
        assert_eq!(
            with(QuantArg::Auto).for_dit(&quant).unwrap(),
            QuantArg::Auto
        );
        assert_eq!(
            with(QuantArg::Auto).for_dit(&plain).unwrap(),
            QuantArg::None
        );
        let tiny = ModelSource::Tiny;
        assert_eq!(with(QuantArg::Auto).for_dit(&tiny).unwrap(), QuantArg::None);
        assert_eq!(with(QuantArg::Fp8).for_dit(&quant).unwrap(), QuantArg::Fp8);
        assert_eq!(
            with(QuantArg::None).for_dit(&quant).unwrap(),
            QuantArg::None
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // On the CPU, auto runs a `-quant` checkpoint dequantized; an explicit int8 is refused.
        assert!(DeviceArg::Cpu.start("device", QuantArg::Auto).is_ok());
        let err = DeviceArg::Cpu
            .start("device", QuantArg::Int8)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--quant int8 needs a CUDA device"), "{err}");
    }

    #[test]
    fn parses_devices() {
        assert_eq!("auto".parse(), Ok(DeviceArg::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceArg::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceArg::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceArg::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let err = bad.parse::<DeviceArg>().unwrap_err();
            assert!(err.contains("auto, cpu, cuda or cuda:N"), "{err}");
        }
    }
}
