//! The CUDA backend against the CPU oracle, op by op (`turbine_tensor::cuda::check`), and its
//! host-side precondition checks. Without a usable GPU (no driver, no device) the backend must
//! refuse to start with an error, not a panic; the GPU tests then print a note and return.

use turbine_tensor::cuda::check::{CheckRow, format_table, op_checks};
use turbine_tensor::{Backend, CudaBackend, CudaOptions, HostTensor, SlaParams};

fn gpu() -> Option<CudaBackend> {
    match CudaBackend::with_options(
        0,
        CudaOptions {
            poison_allocations: true,
            ..CudaOptions::default()
        },
    ) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("note: no usable CUDA device ({e}); GPU checks skipped");
            None
        }
    }
}

#[test]
fn every_op_matches_the_cpu_backend() {
    let Some(gpu) = gpu() else { return };
    let rows = op_checks(&gpu, 0x5eed).unwrap();
    println!("{}", format_table(&rows));
    let failed: Vec<&CheckRow> = rows.iter().filter(|r| !r.passed()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn bad_shapes_are_errors_before_any_launch() {
    let Some(gpu) = gpu() else { return };
    let t = |shape: &[usize]| {
        let n = shape.iter().product();
        gpu.upload(&HostTensor::from_f32(shape.to_vec(), vec![0.5; n]).unwrap())
            .unwrap()
    };
    let (q, k) = (t(&[8, 2, 128]), t(&[8, 3, 128]));
    assert!(gpu.attention(&q, &k, &k).is_err());
    assert!(
        gpu.attention(&t(&[8, 2, 130]), &t(&[8, 2, 130]), &t(&[8, 2, 130]))
            .is_err()
    );
    assert!(gpu.add(&t(&[4, 6]), &t(&[4])).is_err());
    assert!(gpu.slice(&t(&[4, 6]), 1, 5, 2).is_err());
    assert!(gpu.permute(&t(&[4, 6]), &[0, 0]).is_err());
    assert!(gpu.clamp(&t(&[4]), 1.0, -1.0).is_err());
    assert!(gpu.reshape(&t(&[4, 6]), &[5, 5]).is_err());
    let sla = SlaParams {
        topk: 0.0,
        block_q: 4,
        block_k: 4,
    };
    assert!(gpu.sla_block_map(&q, &q, &sla).is_err());
    // A tensor of another backend instance (another stream and pool) is refused.
    let other = CudaBackend::new(0).unwrap();
    assert!(
        gpu.gelu_tanh(
            &other
                .upload(&HostTensor::from_f32([2], vec![1.0, 2.0]).unwrap())
                .unwrap()
        )
        .is_err()
    );
}
