//! Backend-neutral shape checks and output-shape arithmetic for the ops of [`crate::Backend`].
//!
//! Every backend validates its operands here before computing, so the CPU reference and the CUDA
//! backend accept the same shapes and fail with the same op names and messages. Backend-specific
//! limits (32-bit kernel counters, maximum ranks) stay with the backend.

use crate::{Error, LinearWeight, LinearWeights, Result, SlaParams};

/// Extents of an attention call on `[L, H, Dh]` operands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub lq: usize,
    pub lk: usize,
    pub heads: usize,
    pub dh: usize,
}

/// Extents of a channels-last 3-D convolution: input `x: [f, h, w, cin]`, kernel `k: [kt, kh,
/// kw]` (weight `[cout, kt, kh, kw, cin]`), output `out: [fo, ho, wo, cout]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv3d {
    pub x: [usize; 4],
    pub k: [usize; 3],
    pub out: [usize; 4],
}

/// Both operands have the same shape.
pub(crate) fn same_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<()> {
    if a != b {
        return Err(Error::shape(
            op,
            format!("operands differ: {a:?} vs {b:?}"),
            b,
        ));
    }
    Ok(())
}

/// `b`'s shape is a suffix of `a`'s, so `b` broadcasts over `a`'s leading dims.
pub(crate) fn suffix_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<()> {
    if b.len() > a.len() || a[a.len() - b.len()..] != b[..] {
        return Err(Error::shape(
            op,
            format!("{b:?} does not broadcast over {a:?}"),
            b,
        ));
    }
    Ok(())
}

/// `shape` has as many elements as `from`.
pub(crate) fn reshape(from: &[usize], shape: &[usize]) -> Result<()> {
    if shape.iter().product::<usize>() != from.iter().product::<usize>() {
        return Err(Error::shape(
            "reshape",
            format!("cannot view {from:?} as {shape:?}"),
            from,
        ));
    }
    Ok(())
}

/// The shape of `len` elements from `start` along `dim`.
pub(crate) fn slice(shape: &[usize], dim: usize, start: usize, len: usize) -> Result<Vec<usize>> {
    if dim >= shape.len() || start.checked_add(len).is_none_or(|end| end > shape[dim]) {
        return Err(Error::shape(
            "slice",
            format!(
                "{start}..{} of dim {dim} is out of range",
                start.saturating_add(len)
            ),
            shape,
        ));
    }
    let mut out = shape.to_vec();
    out[dim] = len;
    Ok(out)
}

/// The shape of `parts` joined along `dim`.
pub(crate) fn concat(parts: &[&[usize]], dim: usize) -> Result<Vec<usize>> {
    let first = *parts
        .first()
        .ok_or_else(|| Error::invalid("concat", "no tensors"))?;
    if dim >= first.len() {
        return Err(Error::shape(
            "concat",
            format!("dim {dim} out of range"),
            first,
        ));
    }
    for &p in parts {
        let same = p.len() == first.len()
            && p.iter()
                .zip(first)
                .enumerate()
                .all(|(i, (a, b))| i == dim || a == b);
        if !same {
            return Err(Error::shape(
                "concat",
                format!("{p:?} does not match {first:?} outside dim {dim}"),
                p,
            ));
        }
    }
    let mut out = first.to_vec();
    out[dim] = parts.iter().map(|p| p[dim]).sum();
    Ok(out)
}

/// The element strides of a row-major tensor of `shape`.
pub(crate) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// The shape of `shape` with its dims reordered by `perm`.
pub(crate) fn permute(shape: &[usize], perm: &[usize]) -> Result<Vec<usize>> {
    let rank = shape.len();
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::shape(
            "permute",
            format!("{perm:?} is not a permutation of the dims"),
            shape,
        ));
    }
    Ok(perm.iter().map(|&p| shape[p]).collect())
}

/// Checks a linear layer's weights before a backend places them.
pub(crate) fn linear_weights(w: &LinearWeights) -> Result<()> {
    if let Some(t) = w.weight.dense() {
        let expected = [w.out_features, w.in_features];
        if t.shape() != expected || t.numel() != w.out_features * w.in_features {
            return Err(Error::shape(
                "upload_linear",
                format!("weight must be {expected:?}"),
                t.shape(),
            ));
        }
        if t.dtype() == crate::DType::I8 {
            return Err(Error::DType {
                op: "upload_linear",
                dtype: crate::DType::I8,
            });
        }
    } else if let LinearWeight::Int8Block { values, scales } = &w.weight {
        let expected = w.out_features * w.in_features;
        let (go, gi) = LinearWeights::quant_grid(w.out_features, w.in_features);
        if values.len() != expected || scales.len() != go * gi {
            return Err(Error::invalid(
                "upload_linear",
                format!(
                    "int8 weight has {} values / {} scales, expected {expected} / {}",
                    values.len(),
                    scales.len(),
                    go * gi
                ),
            ));
        }
    }
    if let Some(b) = &w.bias
        && b.numel() != w.out_features
    {
        return Err(Error::shape(
            "upload_linear",
            format!("bias must be [{}]", w.out_features),
            &b.shape,
        ));
    }
    Ok(())
}

/// The output shape of a linear layer `in_features -> out_features` on `x: [.., in_features]`.
pub(crate) fn linear(x: &[usize], in_features: usize, out_features: usize) -> Result<Vec<usize>> {
    match x.split_last() {
        Some((&cols, lead)) if cols == in_features => {
            let mut out = lead.to_vec();
            out.push(out_features);
            Ok(out)
        }
        _ => Err(Error::shape(
            "linear",
            format!("input features must be {in_features}"),
            x,
        )),
    }
}

/// `[C, F, H, W]`.
pub(crate) fn dims4(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    match *shape {
        [c, f, h, w] => Ok([c, f, h, w]),
        _ => Err(Error::shape(op, "expected [C, F, H, W]", shape)),
    }
}

/// `[F, H, W, C]`.
fn channels_last(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    match *shape {
        [f, h, w, c] => Ok([f, h, w, c]),
        _ => Err(Error::shape(op, "expected [F, H, W, C]", shape)),
    }
}

/// Extents of `conv3d(x, weight, bias, stride, pad)`.
pub(crate) fn conv3d(
    x: &[usize],
    weight: &[usize],
    bias: Option<&[usize]>,
    stride: [usize; 3],
    pad: [[usize; 2]; 3],
) -> Result<Conv3d> {
    let [f, h, w, cin] = channels_last("conv3d", x)?;
    let &[cout, kt, kh, kw, wcin] = weight else {
        return Err(Error::shape(
            "conv3d",
            "weight must be [Cout, kt, kh, kw, Cin]",
            weight,
        ));
    };
    if wcin != cin || stride.contains(&0) {
        return Err(Error::shape(
            "conv3d",
            format!("weight {weight:?} / stride {stride:?} do not fit input {x:?}"),
            weight,
        ));
    }
    if let Some(b) = bias
        && b != [cout]
    {
        return Err(Error::shape("conv3d", format!("bias must be [{cout}]"), b));
    }
    let padded = [
        f + pad[0][0] + pad[0][1],
        h + pad[1][0] + pad[1][1],
        w + pad[2][0] + pad[2][1],
    ];
    if padded[0] < kt || padded[1] < kh || padded[2] < kw {
        return Err(Error::shape(
            "conv3d",
            "kernel larger than the padded input",
            x,
        ));
    }
    Ok(Conv3d {
        x: [f, h, w, cin],
        k: [kt, kh, kw],
        out: [
            (padded[0] - kt) / stride[0] + 1,
            (padded[1] - kh) / stride[1] + 1,
            (padded[2] - kw) / stride[2] + 1,
            cout,
        ],
    })
}

/// `x: [F, H + 1, W + 1, 4C]` of [`Backend::interleave_phases`](crate::Backend::interleave_phases),
/// checked; returns the output's dims `[F, 2H, 2W, C]`.
pub(crate) fn interleave_phases(x: &[usize]) -> Result<[usize; 4]> {
    let [f, h1, w1, c4] = channels_last("interleave_phases", x)?;
    if h1 < 2 || w1 < 2 || c4 == 0 || c4 % 4 != 0 {
        return Err(Error::shape(
            "interleave_phases",
            "expected [F, H + 1, W + 1, 4C] with H, W, C >= 1",
            x,
        ));
    }
    Ok([f, 2 * (h1 - 1), 2 * (w1 - 1), c4 / 4])
}

/// A per-channel parameter `[C]` of a `[..., C]` tensor.
pub(crate) fn channel_param(op: &'static str, x: &[usize], p: &[usize]) -> Result<()> {
    let c = x.last().copied().unwrap_or(0);
    if p != [c] {
        return Err(Error::shape(
            op,
            format!("per-channel parameter must be [{c}]"),
            p,
        ));
    }
    Ok(())
}

/// `x: [C, F, H, W]` cut into `patch`es; returns `x`'s dims and the patch grid.
pub(crate) fn patchify(x: &[usize], patch: [usize; 3]) -> Result<([usize; 4], [usize; 3])> {
    let [c, f, h, w] = dims4("patchify", x)?;
    let [pt, ph, pw] = patch;
    if patch.contains(&0) || f % pt != 0 || h % ph != 0 || w % pw != 0 {
        return Err(Error::shape(
            "patchify",
            format!("F, H, W must be multiples of the patch {patch:?}"),
            x,
        ));
    }
    Ok(([c, f, h, w], [f / pt, h / ph, w / pw]))
}

/// `x` is the `[tokens, features]` layout of a `grid` of `patch`es with `channels`.
pub(crate) fn unpatchify(
    x: &[usize],
    [gf, gh, gw]: [usize; 3],
    [pt, ph, pw]: [usize; 3],
    channels: usize,
) -> Result<()> {
    let feat = pt * ph * pw * channels;
    if x != [gf * gh * gw, feat] {
        return Err(Error::shape(
            "unpatchify",
            format!("expected [{}, {feat}]", gf * gh * gw),
            x,
        ));
    }
    Ok(())
}

/// Shapes of q, k, v (`[L, H, Dh]` each, as `dims3` reads them; k and v alike).
pub(crate) fn qkv(
    op: &'static str,
    q: &[usize],
    k: &[usize],
    v: &[usize],
    dims3: impl Fn(&'static str, &[usize]) -> Result<[usize; 3]>,
) -> Result<Dims> {
    let [lq, heads, dh] = dims3(op, q)?;
    let [lk, hk, dk] = dims3(op, k)?;
    if hk != heads || dk != dh || v != k {
        return Err(Error::shape(
            op,
            format!("k and v must be [Lk, {heads}, {dh}] (q {q:?}, k {k:?})"),
            v,
        ));
    }
    if lk == 0 {
        return Err(Error::shape(op, "no keys", k));
    }
    Ok(Dims { lq, lk, heads, dh })
}

/// RoPE tables `cos`, `sin` for `x: [len, H, dh]` are `[len, dh / 2]`.
/// `[L, H·Dh]` of `rms_norm_rope` split into `heads` heads of an even head dim: `(L, Dh)`.
pub(crate) fn head_split(x: &[usize], heads: usize) -> Result<(usize, usize)> {
    match *x {
        [len, width]
            if heads > 0 && width.is_multiple_of(heads) && (width / heads).is_multiple_of(2) =>
        {
            Ok((len, width / heads))
        }
        _ => Err(Error::shape(
            "rms_norm_rope",
            format!("expected [L, D] with D = {heads} heads of an even head dim"),
            x,
        )),
    }
}

pub(crate) fn rope_tables(len: usize, dh: usize, tables: [&[usize]; 2]) -> Result<()> {
    for t in tables {
        if t != [len, dh / 2] {
            return Err(Error::shape(
                "rope",
                format!("tables must be [{len}, {}]", dh / 2),
                t,
            ));
        }
    }
    Ok(())
}

/// An attention bias is `[H, Lq, Lk]`.
pub(crate) fn attention_bias(d: Dims, bias: Option<&[usize]>) -> Result<()> {
    if let Some(bias) = bias
        && bias != [d.heads, d.lq, d.lk]
    {
        return Err(Error::shape(
            "attention",
            format!("bias must be [{}, {}, {}]", d.heads, d.lq, d.lk),
            bias,
        ));
    }
    Ok(())
}

/// The relative-position bias rows of [`crate::Backend::attention_rel_bias`]: `[H, Lq + Lk − 1]`
/// for `q: [Lq, H, _]`, `k: [Lk, H, _]`; returns `(H, Lq, Lk)`.
pub(crate) fn rel_bias(q: &[usize], k: &[usize], rel: &[usize]) -> Result<(usize, usize, usize)> {
    let op = "attention_rel_bias";
    let (&[lq, heads, _], &[lk, ..]) = (q, k) else {
        return Err(Error::shape(op, "q and k must be [L, H, Dh]", q));
    };
    if lq == 0 || lk == 0 || rel != [heads, lq + lk - 1] {
        return Err(Error::shape(
            op,
            format!(
                "rel must be [{heads}, {}] for {lq} queries and {lk} keys",
                (lq + lk).saturating_sub(1)
            ),
            rel,
        ));
    }
    Ok((heads, lq, lk))
}

/// SLA is self-attention (`k` as long as `q`) with valid parameters.
pub(crate) fn sla(op: &'static str, d: Dims, k: &[usize], params: &SlaParams) -> Result<()> {
    if d.lq != d.lk {
        return Err(Error::shape(op, "self-attention needs Lq == Lk", k));
    }
    params.validate()
}

/// SLA's linear-branch projection maps the head dim to itself.
pub(crate) fn sla_projection(d: Dims, in_features: usize, out_features: usize) -> Result<()> {
    if in_features != d.dh || out_features != d.dh {
        return Err(Error::invalid(
            "sla_attention",
            format!("proj_l must map {0} -> {0}", d.dh),
        ));
    }
    Ok(())
}
