//! umT5 self-attention: no score scaling, and a learned relative-position bias per layer
//! (`shared_pos=False`), bidirectional.

use turbine_tensor::{Backend, HostTensor};

use super::UmT5Config;
use super::weights::UmT5Weights;
use crate::Result;

/// The bucket of relative position `rel = key − query` (wan.md §4, T5's
/// `_relative_position_bucket` with `bidirectional=True`): half the buckets per direction (the
/// upper half for keys after the query); within a direction, distances below a quarter of
/// `num_buckets` get their own bucket, longer ones share log-spaced buckets up to `max_distance`,
/// beyond which all fall into the last.
pub fn relative_position_bucket(rel: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let direction = if rel > 0 { half } else { 0 };
    let n = rel.unsigned_abs() as usize;
    let exact = half / 2;
    if n < exact {
        return direction + n;
    }
    // Upstream evaluates this in f32; f64 lands in the same bucket at every distance a 512-token
    // prompt has (tests/fixtures/umt5 `buckets`) and is less exposed to rounding at the exact
    // powers of two where the log ratio is an integer.
    let log_ratio = (n as f64 / exact as f64).ln() / (max_distance as f64 / exact as f64).ln();
    let large = exact + (log_ratio * (half - exact) as f64) as usize;
    direction + large.min(half - 1)
}

/// The bucket of each relative position `−(len − 1) ..= len − 1` of a `len ≥ 1`-token sequence:
/// the same for every layer, so computed once per prompt.
pub fn relative_buckets(len: usize, num_buckets: usize, max_distance: usize) -> Vec<usize> {
    (0..2 * len - 1)
        .map(|r| relative_position_bucket(r as i64 - (len as i64 - 1), num_buckets, max_distance))
        .collect()
}

pub struct SelfAttention<B: Backend> {
    heads: usize,
    d_kv: usize,
    q: B::Linear,
    k: B::Linear,
    v: B::Linear,
    o: B::Linear,
    /// `[num_buckets, heads]` as stored: row `b` holds every head's bias for bucket `b`.
    table: Vec<f32>,
}

impl<B: Backend> SelfAttention<B> {
    pub fn load(backend: &B, w: &UmT5Weights, c: &UmT5Config, block: usize) -> Result<Self> {
        let (d, inner) = (c.d_model, c.inner_dim());
        let p = |n: &str| format!("blocks.{block}.{n}");
        let linear = |n: &str, out: usize, inp: usize| -> Result<B::Linear> {
            Ok(backend.upload_linear(&w.linear_no_bias(&p(n), out, inp)?)?)
        };
        let table = w.tensor(
            &p("pos_embedding.embedding.weight"),
            &[c.num_buckets, c.num_heads],
        )?;
        Ok(Self {
            heads: c.num_heads,
            d_kv: c.d_kv,
            q: linear("attn.q", inner, d)?,
            k: linear("attn.k", inner, d)?,
            v: linear("attn.v", inner, d)?,
            o: linear("attn.o", d, inner)?,
            table: table.to_f32_vec(),
        })
    }

    /// This layer's score bias per relative position, `[H, 2L − 1]` for the buckets of
    /// [`relative_buckets`]`(L)` (entry `r` is relative position `r − (L − 1)`), as
    /// [`Backend::attention_rel_bias`] reads it.
    pub fn relative_bias(&self, buckets: &[usize]) -> Result<HostTensor> {
        let (heads, span) = (self.heads, buckets.len());
        let mut rows = vec![0f32; heads * span];
        for (r, &bucket) in buckets.iter().enumerate() {
            for h in 0..heads {
                rows[h * span + r] = self.table[bucket * heads + h];
            }
        }
        Ok(HostTensor::from_f32([heads, span], rows)?)
    }

    /// `residual + attention(x)` for `x: [L, D]` (after `norm1`) and `rel`, this layer's
    /// [`SelfAttention::relative_bias`] on the backend: the output projection adds into the
    /// residual stream.
    pub fn add_to(
        &self,
        b: &B,
        residual: &B::Tensor,
        x: &B::Tensor,
        rel: &B::Tensor,
    ) -> Result<B::Tensor> {
        let len = b.shape(x)[0];
        let split = [len, self.heads, self.d_kv];
        let q = b.reshape(&b.linear(x, &self.q)?, &split)?;
        let k = b.reshape(&b.linear(x, &self.k)?, &split)?;
        let v = b.reshape(&b.linear(x, &self.v)?, &split)?;
        // T5 has no 1/sqrt(d_kv) scaling: it is folded into q's trained weights.
        let out = b.attention_rel_bias(&q, &k, &v, 1.0, rel)?;
        let out = b.reshape(&out, &[len, self.heads * self.d_kv])?;
        Ok(b.linear_residual(&out, &self.o, residual, None)?)
    }
}
