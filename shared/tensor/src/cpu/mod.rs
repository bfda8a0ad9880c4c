//! The CPU reference backend: f32 compute, multithreaded with rayon, GEMMs through the `gemm` crate.
//!
//! Weights keep their checkpoint storage type (bf16/f16/f32) and are widened to f32 per call; int8
//! W8A8 weights are dequantized when placed, since this path exists to be exact, not small.

mod attention;
mod conv;
mod elementwise;
mod layout;
mod matmul;
mod norm;
mod video;

pub use attention::top_blocks;

use std::sync::Arc;

use half::{bf16, f16};

use crate::{
    Backend, DType, Error, HostData, HostTensor, LinearWeight, LinearWeights, Result, SlaParams,
    shapes,
};

/// A dense row-major f32 tensor in host memory, cheap to clone.
#[derive(Clone)]
pub struct CpuTensor {
    shape: Vec<usize>,
    data: Arc<Vec<f32>>,
}

impl std::fmt::Debug for CpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuTensor{:?}", self.shape)
    }
}

impl CpuTensor {
    pub fn new(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Self> {
        let shape = shape.into();
        if shape.iter().product::<usize>() != data.len() {
            return Err(Error::ElementCount {
                len: data.len(),
                shape,
            });
        }
        Ok(Self {
            shape,
            data: Arc::new(data),
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Size of the last dimension (the row length).
    fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
}

/// Linear weights widened lazily: kept in their storage dtype.
#[derive(Debug)]
enum CpuWeight {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl CpuWeight {
    /// A float weight as it is stored; int8 values are no dense weight.
    fn new(data: HostData) -> Result<Self> {
        match data {
            HostData::F32(v) => Ok(CpuWeight::F32(v)),
            HostData::F16(v) => Ok(CpuWeight::F16(v)),
            HostData::BF16(v) => Ok(CpuWeight::BF16(v)),
            HostData::I8(_) => Err(Error::DType {
                op: "upload_linear",
                dtype: DType::I8,
            }),
        }
    }

    fn to_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            CpuWeight::F32(v) => std::borrow::Cow::Borrowed(v),
            CpuWeight::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            CpuWeight::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }
}

#[derive(Debug)]
pub struct CpuLinear {
    out_features: usize,
    in_features: usize,
    weight: CpuWeight,
    bias: Option<Vec<f32>>,
}

/// The key blocks SLA selects, `[head][query block] -> ascending key block indices`, for
/// `q`, `k: [L, H, Dh]`: exposed so other backends' block maps can be checked against it.
pub fn sla_block_map(
    q: &CpuTensor,
    k: &CpuTensor,
    params: &SlaParams,
) -> Result<Vec<Vec<Vec<usize>>>> {
    let dims = attention::check_qkv("sla_block_map", q, k, k)?;
    params.validate()?;
    Ok((0..dims.heads)
        .map(|h| attention::select_blocks(&q.data, &k.data, h, dims, params))
        .collect())
}

/// The CPU backend. Stateless: the thread pool is rayon's global one.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;
    type Linear = CpuLinear;
    /// The activation itself: the CPU's layers are unquantized.
    type LinearInput = CpuTensor;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn shape<'a>(&self, t: &'a CpuTensor) -> &'a [usize] {
        &t.shape
    }

    fn upload(&self, t: &HostTensor) -> Result<CpuTensor> {
        if t.dtype() == DType::I8 {
            return Err(Error::DType {
                op: "upload",
                dtype: DType::I8,
            });
        }
        CpuTensor::new(t.shape.clone(), t.to_f32_vec())
    }

    fn download(&self, t: &CpuTensor) -> Result<HostTensor> {
        HostTensor::from_f32(t.shape.clone(), t.data.to_vec())
    }

    fn reshape(&self, t: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        shapes::reshape(&t.shape, shape)?;
        Ok(CpuTensor {
            shape: shape.to_vec(),
            data: t.data.clone(),
        })
    }

    fn slice(&self, t: &CpuTensor, dim: usize, start: usize, len: usize) -> Result<CpuTensor> {
        layout::slice(t, dim, start, len)
    }

    fn permute(&self, t: &CpuTensor, perm: &[usize]) -> Result<CpuTensor> {
        layout::permute(t, perm)
    }

    fn concat(&self, parts: &[&CpuTensor], dim: usize) -> Result<CpuTensor> {
        let shape = shapes::concat(&parts.iter().map(|p| p.shape()).collect::<Vec<_>>(), dim)?;
        let first = parts[0];
        let outer: usize = first.shape[..dim].iter().product();
        let inner: usize = first.shape[dim + 1..].iter().product();
        let total = shape[dim];
        let mut out = Vec::with_capacity(outer * total * inner);
        for o in 0..outer {
            for p in parts {
                let chunk = p.shape[dim] * inner;
                out.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
            }
        }
        CpuTensor::new(shape, out)
    }

    fn upload_linear(&self, w: &LinearWeights) -> Result<CpuLinear> {
        shapes::linear_weights(w)?;
        let weight = match &w.weight {
            LinearWeight::Dense(t) => CpuWeight::new(t.data.clone())?,
            LinearWeight::Mapped(b) => CpuWeight::new(b.tensor_bytes().to_host().data)?,
            LinearWeight::Seeded(v) => {
                CpuWeight::new(HostData::BF16(v.values(w.out_features * w.in_features)))?
            }
            LinearWeight::Int8Block { .. } => CpuWeight::F32(w.dense_f32()),
        };
        let bias = w.bias.as_ref().map(HostTensor::to_f32_vec);
        Ok(CpuLinear {
            out_features: w.out_features,
            in_features: w.in_features,
            weight,
            bias,
        })
    }

    fn linear(&self, x: &CpuTensor, w: &CpuLinear) -> Result<CpuTensor> {
        let shape = shapes::linear(&x.shape, w.in_features, w.out_features)?;
        let rows = x.data.len() / w.in_features;
        let weight = w.weight.to_f32();
        let mut out = vec![0f32; rows * w.out_features];
        matmul::x_wt(
            &mut out,
            &x.data,
            &weight,
            rows,
            w.in_features,
            w.out_features,
        );
        if let Some(bias) = &w.bias {
            elementwise::add_rows(&mut out, bias);
        }
        CpuTensor::new(shape, out)
    }

    fn linear_input(&self, x: &CpuTensor) -> Result<CpuTensor> {
        Ok(x.clone())
    }

    fn linear_prepared(&self, x: &CpuTensor, w: &CpuLinear) -> Result<CpuTensor> {
        self.linear(x, w)
    }

    fn linear_gelu_tanh_prepared(&self, x: &CpuTensor, w: &CpuLinear) -> Result<CpuTensor> {
        self.linear_gelu_tanh(x, w)
    }

    fn layer_norm(
        &self,
        x: &CpuTensor,
        affine: Option<(&CpuTensor, &CpuTensor)>,
        eps: f32,
    ) -> Result<CpuTensor> {
        let cols = x.cols();
        if let Some((w, b)) = affine {
            for p in [w, b] {
                if p.data.len() != cols {
                    return Err(Error::shape(
                        "layer_norm",
                        format!("affine must be [{cols}]"),
                        &p.shape,
                    ));
                }
            }
        }
        let out = norm::layer_norm(&x.data, cols, eps, |row| {
            if let Some((w, b)) = affine {
                for ((v, w), b) in row.iter_mut().zip(w.data.iter()).zip(b.data.iter()) {
                    *v = *v * w + b;
                }
            }
        });
        CpuTensor::new(x.shape.clone(), out)
    }

    fn layer_norm_modulate(
        &self,
        x: &CpuTensor,
        shift: &CpuTensor,
        scale: &CpuTensor,
        eps: f32,
    ) -> Result<CpuTensor> {
        let cols = x.cols();
        for p in [shift, scale] {
            if p.data.len() != cols {
                return Err(Error::shape(
                    "layer_norm_modulate",
                    format!("shift/scale must be [{cols}]"),
                    &p.shape,
                ));
            }
        }
        let out = norm::layer_norm(&x.data, cols, eps, |row| {
            for ((v, s), sh) in row.iter_mut().zip(scale.data.iter()).zip(shift.data.iter()) {
                *v = *v * (1.0 + s) + sh;
            }
        });
        CpuTensor::new(x.shape.clone(), out)
    }

    fn rms_norm(&self, x: &CpuTensor, weight: &CpuTensor, eps: f32) -> Result<CpuTensor> {
        let cols = x.cols();
        if weight.data.len() != cols {
            return Err(Error::shape(
                "rms_norm",
                format!("weight must be [{cols}]"),
                &weight.shape,
            ));
        }
        CpuTensor::new(x.shape.clone(), norm::rms_norm(&x.data, &weight.data, eps))
    }

    fn rope(&self, x: &CpuTensor, cos: &CpuTensor, sin: &CpuTensor) -> Result<CpuTensor> {
        let [len, heads, dh] = attention::dims3("rope", &x.shape)?;
        shapes::rope_tables(len, dh, [&cos.shape, &sin.shape])?;
        CpuTensor::new(
            x.shape.clone(),
            attention::rope(&x.data, &cos.data, &sin.data, len, heads, dh),
        )
    }

    fn attention_with(
        &self,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        scale: f32,
        bias: Option<&CpuTensor>,
    ) -> Result<CpuTensor> {
        let d = attention::check_qkv("attention", q, k, v)?;
        shapes::attention_bias(d, bias.map(CpuTensor::shape))?;
        let out = attention::dense(&q.data, &k.data, &v.data, d, scale, bias.map(|b| b.data()));
        CpuTensor::new(q.shape.clone(), out)
    }

    fn sla_attention(
        &self,
        q: &CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        params: &SlaParams,
        proj_l: &CpuLinear,
    ) -> Result<CpuTensor> {
        let dims = attention::check_qkv("sla_attention", q, k, v)?;
        shapes::sla("sla_attention", dims, &k.shape, params)?;
        shapes::sla_projection(dims, proj_l.in_features, proj_l.out_features)?;
        let sparse = attention::sla_sparse(&q.data, &k.data, &v.data, dims, params);
        let linear = CpuTensor::new(
            [dims.lq * dims.heads, dims.dh],
            attention::sla_linear(&q.data, &k.data, &v.data, dims),
        )?;
        let projected = self.linear(&linear, proj_l)?;
        let out = sparse
            .iter()
            .zip(projected.data.iter())
            .map(|(a, b)| a + b)
            .collect();
        CpuTensor::new(q.shape.clone(), out)
    }

    fn gelu_tanh(&self, x: &CpuTensor) -> Result<CpuTensor> {
        CpuTensor::new(
            x.shape.clone(),
            elementwise::map(&x.data, elementwise::gelu_tanh),
        )
    }

    fn silu(&self, x: &CpuTensor) -> Result<CpuTensor> {
        CpuTensor::new(
            x.shape.clone(),
            elementwise::map(&x.data, |v| v / (1.0 + (-v).exp())),
        )
    }

    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        shapes::suffix_shape("add", &a.shape, &b.shape)?;
        CpuTensor::new(
            a.shape.clone(),
            elementwise::broadcast(&a.data, &b.data, |x, y| x + y),
        )
    }

    fn mul(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        shapes::suffix_shape("mul", &a.shape, &b.shape)?;
        CpuTensor::new(
            a.shape.clone(),
            elementwise::broadcast(&a.data, &b.data, |x, y| x * y),
        )
    }

    fn gated_residual(&self, x: &CpuTensor, y: &CpuTensor, gate: &CpuTensor) -> Result<CpuTensor> {
        shapes::same_shape("gated_residual", &x.shape, &y.shape)?;
        if gate.data.len() != x.cols() {
            return Err(Error::shape(
                "gated_residual",
                format!("gate must be [{}]", x.cols()),
                &gate.shape,
            ));
        }
        let cols = x.cols();
        let out = x
            .data
            .iter()
            .zip(y.data.iter())
            .enumerate()
            .map(|(i, (a, b))| a + b * gate.data[i % cols])
            .collect();
        CpuTensor::new(x.shape.clone(), out)
    }

    fn lincomb(&self, terms: &[(f32, &CpuTensor)]) -> Result<CpuTensor> {
        let (_, first) = terms
            .first()
            .ok_or_else(|| Error::invalid("lincomb", "no terms"))?;
        for (_, t) in terms {
            shapes::same_shape("lincomb", &first.shape, &t.shape)?;
        }
        let mut out = vec![0f32; first.data.len()];
        for (c, t) in terms {
            for (o, v) in out.iter_mut().zip(t.data.iter()) {
                *o += c * v;
            }
        }
        CpuTensor::new(first.shape.clone(), out)
    }

    fn clamp(&self, x: &CpuTensor, lo: f32, hi: f32) -> Result<CpuTensor> {
        CpuTensor::new(
            x.shape.clone(),
            elementwise::map(&x.data, |v| v.clamp(lo, hi)),
        )
    }

    fn conv3d(
        &self,
        x: &CpuTensor,
        weight: &CpuTensor,
        bias: Option<&CpuTensor>,
        stride: [usize; 3],
        pad: [[usize; 2]; 3],
    ) -> Result<CpuTensor> {
        conv::conv3d(x, weight, bias, stride, pad)
    }

    fn interleave_phases(&self, x: &CpuTensor) -> Result<CpuTensor> {
        conv::interleave_phases(x)
    }

    fn channel_rms_norm(&self, x: &CpuTensor, gamma: &CpuTensor) -> Result<CpuTensor> {
        conv::channel_rms_norm(x, gamma)
    }

    fn channel_affine(
        &self,
        x: &CpuTensor,
        scale: &CpuTensor,
        shift: &CpuTensor,
    ) -> Result<CpuTensor> {
        conv::channel_affine(x, scale, shift)
    }

    fn patchify(&self, x: &CpuTensor, patch: [usize; 3]) -> Result<CpuTensor> {
        video::patchify(x, patch)
    }

    fn unpatchify(
        &self,
        x: &CpuTensor,
        grid: [usize; 3],
        patch: [usize; 3],
        channels: usize,
    ) -> Result<CpuTensor> {
        video::unpatchify(x, grid, patch, channels)
    }
}
