//! Part `sla-dump`: the inputs and outputs of part `sage-forward`'s SageSLA comparison, written
//! for tools/gpu/sla_oracle.py, which runs TurboDiffusion's own SLA (its Triton kernel) on them as
//! an oracle outside this repository (issue 6).
//!
//! Only the first rCM timestep's forward runs, probed at [`DUMP_LAYERS`] (the same model, inputs
//! and proj_l as part `sage-forward`, whose rows for these layers the dumps reproduce): no
//! comparisons, no whole-forward errors, so the part stays short on the device. One safetensors
//! file per layer, `sla-layer{LL}-step0.safetensors`:
//!
//! | tensor | dtype, shape | what |
//! |---|---|---|
//! | `q`, `k`, `v` | bf16 `[L, H, 128]` | the self-attention inputs (after RMSNorm and RoPE) |
//! | `proj_l.weight`, `proj_l.bias` | bf16 `[128, 128]`, `[128]` | the linear branch's projection |
//! | `sagesla_topk{T}` | bf16 `[L, H, 128]` | our SageSLA (8-bit kernel, bf16 output) |
//! | `sla_f32_topk{T}` | f32 `[L, H, 128]` | our f32 SLA reference on the same inputs |
//! | `blocks_topk{T}` | i8 `[H, query blocks, key blocks]` | the f32 reference's selection (1 = kept) |
//!
//! Metadata: `layer`, `step`, `timestep`, `topks` (comma-separated, the `{T}` above), `block_q`,
//! `block_k`, `seed`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use turbine_checkpoint::convert::{HostView, write_safetensors};
use turbine_models::wan::Qkv;
use turbine_tensor::cuda::Precision;
use turbine_tensor::{
    Backend, CudaBackend, CudaLinear, CudaTensor, DType, HostData, HostTensor, LinearWeight,
    LinearWeights, SlaParams,
};

use crate::sage_forward::{ProbedForward, probe_proj_l};

/// Layers dumped: the first and the middle one (the last adds device time and little news).
const DUMP_LAYERS: [usize; 2] = [0, 15];
/// The top-k fractions of part `sage-forward`'s SageSLA rows.
const TOPKS: [f64; 2] = [0.1, 0.15];

/// One probed layer's attention inputs and our outputs on them.
pub(crate) struct SlaCase {
    pub layer: usize,
    /// Index into the rCM timesteps.
    pub step: usize,
    pub timestep: f64,
    pub seed: u64,
    pub params: Vec<SlaParams>,
    /// q, k, v in bf16, `[L, H, 128]`.
    pub qkv: [HostTensor; 3],
    /// proj_l's weight `[128, 128]` and bias `[128]`.
    pub proj_l: [HostTensor; 2],
    /// Per entry of `params`: SageSLA's output, the f32 SLA reference's, the reference's selection.
    pub outputs: Vec<[HostTensor; 3]>,
}

/// A selection `[head][query block] -> kept key blocks` as an int8 mask `[H, query blocks, key
/// blocks]` (1 = kept).
pub(crate) fn block_mask(selection: &[Vec<Vec<usize>>], key_blocks: usize) -> Result<HostTensor> {
    let (heads, qblocks) = (selection.len(), selection.first().map_or(0, Vec::len));
    let mut mask = vec![0i8; heads * qblocks * key_blocks];
    for (h, rows) in selection.iter().enumerate() {
        for (i, kept) in rows.iter().enumerate() {
            for &j in kept {
                if j >= key_blocks || i >= qblocks {
                    bail!("block ({h}, {i}, {j}) outside [{heads}, {qblocks}, {key_blocks}]");
                }
                mask[(h * qblocks + i) * key_blocks + j] = 1;
            }
        }
    }
    Ok(HostTensor::new(
        [heads, qblocks, key_blocks],
        HostData::I8(mask),
    )?)
}

/// proj_l's dense weight and bias, as uploaded to both backends.
fn proj_l_tensors(w: &LinearWeights) -> Result<[HostTensor; 2]> {
    match (&w.weight, &w.bias) {
        (LinearWeight::Dense(weight), Some(bias)) => Ok([weight.clone(), bias.clone()]),
        _ => bail!("proj_l must be a dense layer with a bias"),
    }
}

/// Writes `case` into `dir` as `sla-layer{LL}-step{S}.safetensors`; returns the path.
pub(crate) fn write_case(dir: &Path, case: &SlaCase) -> Result<PathBuf> {
    let path = dir.join(format!(
        "sla-layer{:02}-step{}.safetensors",
        case.layer, case.step
    ));
    let mut tensors: Vec<(String, &HostTensor)> = vec![
        ("q".into(), &case.qkv[0]),
        ("k".into(), &case.qkv[1]),
        ("v".into(), &case.qkv[2]),
        ("proj_l.weight".into(), &case.proj_l[0]),
        ("proj_l.bias".into(), &case.proj_l[1]),
    ];
    for (p, [sage, sla, blocks]) in case.params.iter().zip(&case.outputs) {
        tensors.push((format!("sagesla_topk{}", p.topk), sage));
        tensors.push((format!("sla_f32_topk{}", p.topk), sla));
        tensors.push((format!("blocks_topk{}", p.topk), blocks));
    }
    let (block_q, block_k) = match case.params.first() {
        Some(p)
            if case
                .params
                .iter()
                .all(|o| (o.block_q, o.block_k) == (p.block_q, p.block_k)) =>
        {
            (p.block_q, p.block_k)
        }
        _ => bail!("a case needs one or more top-k runs of one block shape"),
    };
    let topks: Vec<String> = case.params.iter().map(|p| p.topk.to_string()).collect();
    let metadata = HashMap::from([
        ("layer".to_string(), case.layer.to_string()),
        ("step".to_string(), case.step.to_string()),
        ("timestep".to_string(), case.timestep.to_string()),
        ("topks".to_string(), topks.join(",")),
        ("block_q".to_string(), block_q.to_string()),
        ("block_k".to_string(), block_k.to_string()),
        ("seed".to_string(), case.seed.to_string()),
    ]);
    write_safetensors(
        &path,
        tensors.into_iter().map(|(n, t)| (n, HostView(t))),
        metadata,
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Our SageSLA and f32 SLA outputs and the reference's selection on one layer's q, k, v.
fn capture(
    bf16: &CudaBackend,
    exact: &CudaBackend,
    qkv: &Qkv<CudaBackend>,
    [pl, pl_exact]: [&CudaLinear; 2],
    params: &SlaParams,
) -> Result<[HostTensor; 3]> {
    let Qkv { q, k, v } = qkv;
    let f32 = |t: &CudaTensor| bf16.to_dtype(t, DType::F32);
    let (qf, kf, vf) = (f32(q)?, f32(k)?, f32(v)?);
    let sla = exact.download(&exact.sla_attention(&qf, &kf, &vf, params, pl_exact)?)?;
    let sage = bf16.download(&bf16.sage_attention(q, k, v, Some((params, pl)))?)?;
    // The download widens to f32; the kernel's output is bf16, so this is exact.
    let sage = sage.to_dtype(DType::BF16)?;
    let selection = exact.sla_block_map(&qf, &kf, params)?;
    let key_blocks = kf.shape()[0].div_ceil(params.block_k);
    Ok([sage, sla, block_mask(&selection, key_blocks)?])
}

/// Runs the first timestep's forward and writes one file per layer of [`DUMP_LAYERS`] into `dir`.
pub fn sla_dump_part(checked: &CudaBackend, seed: u64, dir: &Path) -> Result<Value> {
    let bf16 = checked.with_precision(Precision::Bf16);
    let exact = checked.with_precision(Precision::F32);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let fwd = ProbedForward::load(&bf16, seed)?;
    let weights = probe_proj_l(seed)?;
    let proj_l = proj_l_tensors(&weights)?;
    let (pl, pl_exact) = (
        bf16.upload_linear(&weights)?,
        exact.upload_linear(&weights)?,
    );
    let params: Vec<SlaParams> = TOPKS.iter().map(|&t| SlaParams::sage(t)).collect();
    let (step, t) = (0, fwd.timesteps[0]);
    println!(
        "\n== SLA dumps for tools/gpu/sla_oracle.py: layers {DUMP_LAYERS:?} at t {t:.1}, \
         top-k {TOPKS:?}, into {}",
        dir.display()
    );
    let mut files = Vec::new();
    let mut probe = |layer: usize, qkv: &Qkv<CudaBackend>| -> turbine_models::Result<()> {
        if !DUMP_LAYERS.contains(&layer) {
            return Ok(());
        }
        let dump = || -> Result<PathBuf> {
            let outputs = params
                .iter()
                .map(|p| capture(&bf16, &exact, qkv, [&pl, &pl_exact], p))
                .collect::<Result<Vec<_>>>()?;
            let bf16_host = |t: &CudaTensor| -> Result<HostTensor> {
                Ok(bf16.download(t)?.to_dtype(DType::BF16)?)
            };
            let case = SlaCase {
                layer,
                step,
                timestep: t,
                seed,
                params: params.clone(),
                qkv: [bf16_host(&qkv.q)?, bf16_host(&qkv.k)?, bf16_host(&qkv.v)?],
                proj_l: proj_l.clone(),
                outputs,
            };
            write_case(dir, &case)
        };
        let path = dump()
            .map_err(|e| turbine_models::Error::Input(format!("sla dump, layer {layer}: {e:#}")))?;
        println!("layer {layer:>2}: {}", path.display());
        files.push(json!({"layer": layer, "step": step, "timestep": t, "path": path}));
        Ok(())
    };
    fwd.model
        .forward_probed(&fwd.latents, t, &fwd.context, None, &mut probe)?;
    Ok(json!({"dir": dir, "topks": TOPKS, "files": files}))
}

#[cfg(test)]
mod tests {
    use turbine_checkpoint::TensorStore;
    use turbine_tensor::{CpuBackend, sla_block_map};

    use super::*;
    use crate::random;
    use crate::sage::proj_l;

    /// A ragged case on the CPU backend, whose SageSLA is its exact SLA: 1000 tokens are 15.6
    /// query blocks and 7.8 key blocks; top-k 0.25 and 0.5 keep 2 and 4 of 8 key blocks (upstream
    /// keeps `int(topk · blocks)` with no clamp to 1, so smaller fractions would keep none).
    fn cpu_case() -> Result<SlaCase> {
        let shape = [1000, 3, 128];
        let bf16 =
            |seed| -> Result<HostTensor> { Ok(random(&shape, seed)?.to_dtype(DType::BF16)?) };
        let qkv = [bf16(1)?, bf16(2)?, bf16(3)?];
        let weights = proj_l(4, false)?;
        let cpu = CpuBackend;
        let x = qkv
            .iter()
            .map(|t| cpu.upload(t))
            .collect::<Result<Vec<_>, _>>()?;
        let pl = cpu.upload_linear(&weights)?;
        let params = vec![SlaParams::sage(0.25), SlaParams::sage(0.5)];
        let outputs = params
            .iter()
            .map(|p| -> Result<[HostTensor; 3]> {
                let out = cpu.download(&cpu.sla_attention(&x[0], &x[1], &x[2], p, &pl)?)?;
                let blocks = block_mask(&sla_block_map(&x[0], &x[1], p)?, 8)?;
                Ok([out.to_dtype(DType::BF16)?, out, blocks])
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SlaCase {
            layer: 3,
            step: 0,
            timestep: 999.5,
            seed: 1,
            params,
            qkv,
            proj_l: proj_l_tensors(&weights)?,
            outputs,
        })
    }

    /// Writes the CPU case and reads it back; with `TURBINE_SLA_DUMP_TEST_DIR` set the file stays
    /// there, for `tools/gpu/sla_oracle.py --device cpu` to check the oracle harness against our
    /// CPU SLA without a GPU.
    #[test]
    fn dump_round_trips() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = std::env::var_os("TURBINE_SLA_DUMP_TEST_DIR")
            .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
        std::fs::create_dir_all(&dir)?;
        let case = cpu_case()?;
        let path = write_case(&dir, &case)?;
        assert_eq!(
            path.file_name(),
            Some("sla-layer03-step0.safetensors".as_ref())
        );
        let store = TensorStore::open(&path)?;
        for (name, want) in [("q", &case.qkv[0]), ("v", &case.qkv[2])]
            .into_iter()
            .chain([("proj_l.bias", &case.proj_l[1])])
        {
            let got = store.get(name)?;
            assert_eq!(
                (got.shape.as_slice(), got.dtype()),
                (want.shape.as_slice(), DType::BF16)
            );
            assert_eq!(got.to_f32_vec(), want.to_f32_vec(), "{name}");
        }
        let blocks = store.get("blocks_topk0.5")?;
        assert_eq!(
            (blocks.shape.as_slice(), blocks.dtype()),
            ([3, 16, 8].as_slice(), DType::I8)
        );
        // floor(0.5 · 8) = 4 blocks kept in every (head, query block) row.
        let kept: Vec<f32> = blocks
            .to_f32_vec()
            .chunks(8)
            .map(|r| r.iter().sum())
            .collect();
        assert!(kept.iter().all(|&n| n == 4.0), "{kept:?}");
        assert_eq!(store.get("sagesla_topk0.5")?.dtype(), DType::BF16);
        let sla = store.get("sla_f32_topk0.25")?;
        assert_eq!(sla.to_f32_vec(), case.outputs[0][1].to_f32_vec());
        assert_eq!(store.metadata("topks"), Some("0.25,0.5"));
        assert_eq!(store.metadata("block_q"), Some("64"));
        assert_eq!(store.metadata("block_k"), Some("128"));
        assert_eq!(store.metadata("layer"), Some("3"));
        Ok(())
    }

    #[test]
    fn block_mask_rejects_out_of_range_blocks() {
        assert!(block_mask(&[vec![vec![0, 2]]], 2).is_err());
        let mask = block_mask(&[vec![vec![1], vec![0]]], 2).map(|m| m.to_f32_vec());
        assert_eq!(mask.ok(), Some(vec![0.0, 1.0, 1.0, 0.0]));
    }
}
