//! `--device auto|cpu|cuda|cuda:N` and `--quant none|fp8|int8`: where a command runs its models.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, bail};
use turbine_tensor::cuda::{Precision, Quant};
use turbine_tensor::{CudaBackend, CudaOptions};

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
    None,
    Fp8,
    Int8,
}

/// `--device` and `--quant` of a command that runs the pipeline.
#[derive(clap::Args)]
pub struct DeviceArgs {
    /// Where the models run: auto (the GPU when one is usable, else the CPU), cpu, cuda or cuda:N.
    /// On a GPU, weights and activations are bf16 with f32 accumulation and residuals.
    #[arg(long, default_value = "auto")]
    device: DeviceArg,
    /// DiT block linears on the GPU: none (bf16), fp8 (e4m3 weights and activations; H100/H200)
    /// or int8 (TurboDiffusion's W8A8 in 128x128 tiles).
    #[arg(long, value_enum, default_value_t = QuantArg::None)]
    quant: QuantArg,
}

/// The backend a command runs on.
pub enum Chosen {
    Cpu,
    Cuda(CudaBackend),
}

impl DeviceArgs {
    /// Starts the requested backend, saying on stderr which one runs and, for `auto`, why. An
    /// explicit `cuda` that cannot start, or `--quant fp8` on the CPU, is an error.
    pub fn select(&self) -> anyhow::Result<Chosen> {
        let options = CudaOptions {
            precision: Precision::Bf16,
            quant: match self.quant {
                QuantArg::None => Quant::None,
                QuantArg::Fp8 => Quant::Fp8,
                QuantArg::Int8 => Quant::Int8,
            },
            ..CudaOptions::default()
        };
        let chosen = match self.device {
            DeviceArg::Cpu => {
                eprintln!("device: cpu (--device cpu)");
                Chosen::Cpu
            }
            DeviceArg::Cuda(n) => {
                let backend = CudaBackend::with_options(n, options)
                    .with_context(|| format!("--device cuda:{n}: the CUDA backend cannot start"))?;
                eprintln!("device: {} (--device cuda:{n})", describe(&backend));
                Chosen::Cuda(backend)
            }
            DeviceArg::Auto => match CudaBackend::with_options(0, options) {
                Ok(backend) => {
                    eprintln!("device: {} (--device auto: GPU found)", describe(&backend));
                    Chosen::Cuda(backend)
                }
                Err(e) => {
                    eprintln!("device: cpu (--device auto: no usable GPU: {e})");
                    Chosen::Cpu
                }
            },
        };
        if matches!(chosen, Chosen::Cpu) && self.quant != QuantArg::None {
            let name = if self.quant == QuantArg::Fp8 {
                "fp8"
            } else {
                "int8"
            };
            bail!("--quant {name} needs a CUDA device (--device cuda)");
        }
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
