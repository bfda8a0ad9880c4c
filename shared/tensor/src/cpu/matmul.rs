//! f32 matrix products through the `gemm` crate, on strided views so attention needs no gathers.

use gemm::Parallelism;

/// A read-only strided matrix view: element `(r, c)` at `data[offset + r·rs + c·cs]`.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    pub fn row_major(data: &'a [f32], cols: usize) -> Self {
        View {
            data,
            offset: 0,
            rs: cols,
            cs: 1,
        }
    }

    /// True when every element of a `rows × cols` matrix lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Work below which threading costs more than it saves.
const PARALLEL_FLOPS: usize = 1 << 21;

/// `dst[m, n] = a[m, k] · b[k, n]`, `dst` contiguous row-major.
pub(super) fn matmul(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: View,
    threads: bool,
) {
    assert!(
        dst.len() >= m * n && a.fits(m, k) && b.fits(k, n),
        "matmul operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    let parallelism = if threads && m * n * k >= PARALLEL_FLOPS {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    };
    // SAFETY: bounds of all three operands were checked above for the given strides; `dst` is
    // exclusively borrowed and disjoint from the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `out[m, n] = x[m, k] · w[n, k]ᵀ`: a linear layer with PyTorch's `[out, in]` weight layout.
pub(super) fn x_wt(out: &mut [f32], x: &[f32], w: &[f32], m: usize, k: usize, n: usize) {
    let wt = View {
        data: w,
        offset: 0,
        rs: 1,
        cs: k,
    };
    matmul(out, m, n, k, View::row_major(x, k), wt, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_wt_matches_naive() {
        let (m, k, n) = (5, 7, 3);
        let x: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![f32::NAN; m * n];
        x_wt(&mut out, &x, &w, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let r: f32 = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum();
                assert!((out[i * n + j] - r).abs() < 1e-5);
            }
        }
    }
}
