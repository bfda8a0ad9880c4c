//! Reading a model's tensors from a checkpoint in whichever layout it ships in.
//!
//! Models ask for tensors by their original Wan names. A [`Checkpoint`] detects the stored layout
//! and a common key prefix from marker keys, maps each name to its stored key, checks shape and
//! dtype, and names the stored key in every error. Each model's `weights` module supplies its
//! layouts, markers and renames ([`crate::wan::weights`], [`crate::umt5::weights`],
//! [`crate::vae::weights`]).

use turbine_checkpoint::{Error as CkptError, TensorStore};
use turbine_tensor::{DType, HostData, HostTensor, LinearWeight, LinearWeights};

use crate::Result;

/// A checkpoint seen through the original names, in the detected layout `L`.
pub struct Checkpoint<'a, L> {
    store: &'a TensorStore,
    layout: L,
    prefix: String,
    /// Original name to the detected layout's name.
    rename: Box<dyn Fn(&str) -> String + Send + Sync + 'a>,
}

impl<'a, L: Copy> Checkpoint<'a, L> {
    /// Detects the layout from the first stored key ending in one of `markers` (keys that exist
    /// exactly once in every checkpoint of their layout); what precedes the marker is the prefix.
    /// `rename` maps an original name to the layout's name; `model` names what was expected in the
    /// error for a checkpoint with no marker.
    pub(crate) fn detect(
        store: &'a TensorStore,
        markers: &[(&str, L)],
        model: &str,
        rename: impl Fn(L, &str) -> String + Send + Sync + 'a,
    ) -> Result<Self>
    where
        L: Send + Sync + 'a,
    {
        for name in store.names() {
            for &(marker, layout) in markers {
                if let Some(prefix) = name.strip_suffix(marker)
                    && (prefix.is_empty() || prefix.ends_with('.'))
                {
                    return Ok(Checkpoint {
                        store,
                        layout,
                        prefix: prefix.to_string(),
                        rename: Box::new(move |name| rename(layout, name)),
                    });
                }
            }
        }
        let others: Vec<String> = markers[1..].iter().map(|(m, _)| format!("`{m}`")).collect();
        Err(CkptError::Missing {
            key: markers[0].0.into(),
            hint: format!(
                " (or {}): not a {model} checkpoint ({} tensors)",
                others.join(" or "),
                store.len()
            ),
        }
        .into())
    }

    pub fn layout(&self) -> L {
        self.layout
    }

    /// The stored key of an original-layout name.
    pub fn key(&self, name: &str) -> String {
        self.prefixed(&(self.rename)(name))
    }

    /// The stored key of a name already in the checkpoint's layout.
    pub(crate) fn prefixed(&self, stored_name: &str) -> String {
        format!("{}{stored_name}", self.prefix)
    }

    pub(crate) fn store(&self) -> &'a TensorStore {
        self.store
    }

    pub fn contains(&self, name: &str) -> bool {
        self.store.contains(&self.key(name))
    }

    /// A float tensor of exactly `shape`.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        self.tensor_at(&self.key(name), shape)
    }

    /// A float tensor of exactly `shape` under the stored `key`.
    pub(crate) fn tensor_at(&self, key: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self.store.get_shaped(key, shape)?;
        float_only(key, t.dtype())?;
        Ok(t)
    }

    /// A float tensor of any of the given shapes, returned as-is.
    pub(crate) fn tensor_one_of(&self, name: &str, shapes: &[Vec<usize>]) -> Result<HostTensor> {
        let key = self.key(name);
        let info = self
            .store
            .info(&key)
            .ok_or_else(|| CkptError::missing(&key))?;
        if !shapes.contains(&info.shape) {
            return Err(CkptError::ShapeMismatch {
                key,
                expected: shapes[0].clone(),
                found: info.shape.clone(),
            }
            .into());
        }
        let t = self.store.get(&key)?;
        float_only(&key, t.dtype())?;
        Ok(t)
    }

    /// The linear layer `{name}.weight` `[out, in]` + `{name}.bias`, or its TurboDiffusion W8A8
    /// form `{name}.int8_weight` + `{name}.scale` `[⌈out/128⌉, ⌈in/128⌉]` + `{name}.bias`.
    pub fn linear(
        &self,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<LinearWeights> {
        let weight = if self.contains(&format!("{name}.weight")) {
            self.dense_weight(name, out_features, in_features)?
        } else if self.contains(&format!("{name}.int8_weight")) {
            self.int8_weight(name, out_features, in_features)?
        } else {
            let key = self.key(&format!("{name}.weight"));
            return Err(CkptError::Missing {
                hint: format!(
                    " (nor `{}`, the -quant form)",
                    self.key(&format!("{name}.int8_weight"))
                ),
                key,
            }
            .into());
        };
        let bias = self.tensor(&format!("{name}.bias"), &[out_features])?;
        Ok(LinearWeights {
            out_features,
            in_features,
            weight,
            bias: Some(bias),
        })
    }

    /// The bias-free linear layer `{name}.weight` `[out, in]`. Dense only: TurboDiffusion's int8
    /// form exists for the DiT's linears, which all have a bias.
    pub fn linear_no_bias(
        &self,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<LinearWeights> {
        Ok(LinearWeights {
            out_features,
            in_features,
            weight: self.dense_weight(name, out_features, in_features)?,
            bias: None,
        })
    }

    /// `{name}.weight` `[out, in]` left in the checkpoint's map: linear weights are nearly all of
    /// a model's bytes, and the backend reads them from there with no host copy in between. A
    /// seeded weight stays a generator, which the backend runs where the weight goes.
    fn dense_weight(
        &self,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<LinearWeight> {
        let key = self.key(&format!("{name}.weight"));
        let shape = [out_features, in_features];
        if let Some(values) = self.store.seeded(&key, &shape)? {
            return Ok(LinearWeight::Seeded(values));
        }
        let weight = self.store.mapped(&key, &shape)?;
        float_only(&key, weight.dtype())?;
        Ok(LinearWeight::Mapped(weight))
    }

    fn int8_weight(
        &self,
        name: &str,
        out_features: usize,
        in_features: usize,
    ) -> Result<LinearWeight> {
        let key = self.key(&format!("{name}.int8_weight"));
        let values = self.store.get_shaped(&key, &[out_features, in_features])?;
        let HostData::I8(values) = values.data else {
            return Err(CkptError::dtype_mismatch(&key, &[DType::I8], values.dtype()).into());
        };
        let (go, gi) = LinearWeights::quant_grid(out_features, in_features);
        let scale_key = self.key(&format!("{name}.scale"));
        let scales = self.store.get_shaped(&scale_key, &[go, gi])?;
        if scales.dtype() != DType::F32 {
            return Err(
                CkptError::dtype_mismatch(&scale_key, &[DType::F32], scales.dtype()).into(),
            );
        }
        Ok(LinearWeight::Int8Block {
            values,
            scales: scales.to_f32_vec(),
        })
    }
}

fn float_only(key: &str, dtype: DType) -> Result<()> {
    if !dtype.is_float() {
        return Err(
            CkptError::dtype_mismatch(key, &[DType::F32, DType::BF16, DType::F16], dtype).into(),
        );
    }
    Ok(())
}

/// `name` with the first matching `(from, to)` prefix of `table` replaced, or unchanged.
pub(crate) fn rename_prefix(name: &str, table: &[(&str, &str)]) -> String {
    table
        .iter()
        .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
        .unwrap_or_else(|| name.to_string())
}
