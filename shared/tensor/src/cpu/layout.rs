//! Strided copies: slicing along any dimension and permuting dimensions.

use super::CpuTensor;
use crate::{Result, shapes};

pub(super) fn slice(t: &CpuTensor, dim: usize, start: usize, len: usize) -> Result<CpuTensor> {
    let new_shape = shapes::slice(t.shape(), dim, start, len)?;
    let shape = t.shape();
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let at = (o * shape[dim] + start) * inner;
        out.extend_from_slice(&t.data()[at..at + len * inner]);
    }
    CpuTensor::new(new_shape, out)
}

pub(super) fn permute(t: &CpuTensor, perm: &[usize]) -> Result<CpuTensor> {
    let out_shape = shapes::permute(t.shape(), perm)?;
    let shape = t.shape();
    let rank = shape.len();
    let strides = shapes::strides(shape);
    let src_strides: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    let n = t.data().len();
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    for _ in 0..n {
        out.push(t.data()[offset]);
        // Odometer increment over the output index, tracking the source offset.
        for d in (0..rank).rev() {
            index[d] += 1;
            offset += src_strides[d];
            if index[d] < out_shape[d] {
                break;
            }
            offset -= src_strides[d] * out_shape[d];
            index[d] = 0;
        }
    }
    CpuTensor::new(out_shape, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_and_slice_index_correctly() {
        let t = CpuTensor::new([2, 3, 4], (0..24).map(|v| v as f32).collect()).unwrap();
        let p = permute(&t, &[2, 0, 1]).unwrap();
        assert_eq!(p.shape(), [4, 2, 3]);
        // p[k, i, j] = t[i, j, k]
        assert_eq!(p.data()[(3 * 2 + 1) * 3 + 2], t.data()[(3 + 2) * 4 + 3]);
        let s = slice(&t, 1, 1, 2).unwrap();
        assert_eq!(s.shape(), [2, 2, 4]);
        assert_eq!(s.data()[..4], [4.0, 5.0, 6.0, 7.0]);
        assert_eq!(s.data()[8..12], [16.0, 17.0, 18.0, 19.0]);
        assert!(permute(&t, &[0, 0, 1]).is_err());
        assert!(slice(&t, 2, 3, 2).is_err());
    }
}
