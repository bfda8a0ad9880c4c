//! The device check of seeded weights: linear weights the GPU generates (`kernels/seeded.cu`,
//! through [`LinearWeight::Seeded`]) against the host generator ([`crate::seeded`]), bit for bit,
//! since a benchmark's weights export is the host's values and must be what the GPU ran.
//!
//! Every distribution of the seeded presets, at sizes that are not multiples of the launch block
//! (256) and one larger than the grid (so the grid-stride loop wraps), on bf16 and f32 backends
//! (f32 holds the bf16 values widened). Then the 8-bit layers that `--quant` builds from seeded
//! weights against the same layers built from the host's bf16 values: equal quantized bytes and
//! scales. Seeded values are finite and never −0 (`mean + c·scale` with `c·scale` far from
//! underflow), so error 0 means equal bits.

use super::check::CheckRow;
use super::{CudaBackend, LinearWeight as DeviceWeight, Precision, Quant};
use crate::{
    Backend, Error, LinearWeight, LinearWeights, Result, SeededInit, SeededValues, compare,
};

const OP: &str = "seeded weights";

/// `(name, [out, in], distribution)` of the checked tensors.
fn cases() -> [(&'static str, [usize; 2], SeededInit); 6] {
    let fan_in = |k: usize| SeededInit::Uniform {
        bound: (k as f32).sqrt().recip(),
    };
    [
        ("linear U(±1/√129)", [37, 129], fan_in(129)),
        (
            "bias U(±0.02)",
            [1, 1001],
            SeededInit::Uniform { bound: 0.02 },
        ),
        (
            "norm 1 + N(0, 0.05²)",
            [3, 1537],
            SeededInit::Normal {
                mean: 1.0,
                std: 0.05,
            },
        ),
        (
            "modulation N(0, 1/1536)",
            [6, 1536],
            SeededInit::Normal {
                mean: 0.0,
                std: 1536f32.sqrt().recip(),
            },
        ),
        (
            "embedding N(0, 1), past the grid",
            [1031, 2053],
            SeededInit::Normal {
                mean: 0.0,
                std: 1.0,
            },
        ),
        // The quantized layers' shape: in % 128 == 0, out % 8 == 0.
        ("linear U(±1/√1536), 8-bit", [136, 1536], fan_in(1536)),
    ]
}

/// The layer `[out, in]` with `weight` and no bias.
fn layer(shape: [usize; 2], weight: LinearWeight) -> LinearWeights {
    LinearWeights {
        out_features: shape[0],
        in_features: shape[1],
        weight,
        bias: None,
    }
}

/// Runs the check with tensors drawn from `seed`.
pub(super) fn seeded_checks(gpu: &CudaBackend, seed: u64) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    let mut record = |case: String, got: &[f32], want: &[f32]| {
        let err = if got.len() == want.len() {
            compare::max_rel_err(got, want)
        } else {
            f32::NAN
        };
        rows.push(CheckRow {
            op: OP,
            case,
            err,
            tol: 0.0,
        });
    };
    for (index, (name, shape, init)) in cases().into_iter().enumerate() {
        let values = SeededValues::new(init, seed, index as u64);
        let want = values.host(&shape)?;
        let seeded = layer(shape, LinearWeight::Seeded(values));
        for precision in [Precision::Bf16, Precision::F32] {
            let gpu = gpu.with_precision(precision).with_quant(Quant::None);
            let placed = gpu.upload_linear(&seeded)?;
            let DeviceWeight::Dense(weight) = &placed.weight else {
                return Err(Error::invalid(OP, "expected a dense layer"));
            };
            let got = gpu.download(weight)?;
            let case = format!("{shape:?} {name}, {precision:?}");
            record(case, &got.to_f32_vec(), &want.to_f32_vec());
        }
        if shape[1] % 128 == 0 && shape[0] % 8 == 0 {
            let host = layer(shape, LinearWeight::Dense(want));
            for quant in quants(gpu) {
                let gpu = gpu.with_precision(Precision::Bf16).with_quant(quant);
                let got = quantized(&gpu, &gpu.upload_linear_quantizable(&seeded)?)?;
                let want = quantized(&gpu, &gpu.upload_linear_quantizable(&host)?)?;
                record(format!("{shape:?} {name}, {quant:?}"), &got, &want);
            }
        }
    }
    Ok(rows)
}

/// The weight quantizations the GPU runs: INT8 everywhere, FP8 on compute capability 9.0.
fn quants(gpu: &CudaBackend) -> Vec<Quant> {
    if gpu.info().compute_capability.0 == 9 {
        vec![Quant::Int8, Quant::Fp8]
    } else {
        vec![Quant::Int8]
    }
}

/// A quantized layer's weight bytes and scales, as numbers to compare.
fn quantized(gpu: &CudaBackend, layer: &super::CudaLinear) -> Result<Vec<f32>> {
    let (values, scales): (Vec<f32>, Vec<f32>) = match &layer.weight {
        DeviceWeight::Int8(w) => {
            let w = gpu.download_int8(w)?;
            (w.values.iter().map(|&v| f32::from(v)).collect(), w.scales)
        }
        DeviceWeight::Fp8 { weight: w, .. } => {
            let w = gpu.download_fp8(w)?;
            (w.values.iter().map(|&v| f32::from(v)).collect(), w.scales)
        }
        DeviceWeight::Dense(_) => {
            return Err(Error::invalid(OP, "expected a quantized layer"));
        }
    };
    Ok(values.into_iter().chain(scales).collect())
}
