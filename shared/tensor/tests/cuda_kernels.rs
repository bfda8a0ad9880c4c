//! Every `kernels/*.cu` compiles with NVRTC for the targets Turbine ships (`sm_90a`: H100/H200,
//! `sm_120a`: RTX 5090, and the sm_80 / sm_89 fallbacks: A100, L40, RTX 4090; the backend
//! compiles every module when it starts) and defines every kernel the backend launches. Needs the NVRTC library,
//! not a GPU: CI installs the `nvidia-cuda-nvrtc` wheel (tools/ci/compile_kernels.sh) and sets
//! `TURBINE_REQUIRE_NVRTC=1`, which turns a missing library into a failure instead of a skip.

use turbine_tensor::cuda::kernels::Module;
use turbine_tensor::cuda::{compile_module, compile_source, nvrtc_available, nvrtc_version};

const TARGETS: [&str; 4] = ["sm_80", "sm_89", "sm_90a", "sm_120a"];

/// False (after a note) when NVRTC is missing and not required.
fn nvrtc() -> bool {
    if nvrtc_available() {
        return true;
    }
    assert!(
        std::env::var_os("TURBINE_REQUIRE_NVRTC").is_none_or(|v| v != "1"),
        "TURBINE_REQUIRE_NVRTC=1 but libnvrtc.so.13 cannot be loaded (LD_LIBRARY_PATH?)"
    );
    println!("note: NVRTC not found; kernel compilation not checked on this machine");
    false
}

#[test]
fn every_kernel_compiles_for_the_shipped_targets() {
    if !nvrtc() {
        return;
    }
    let (major, minor) = nvrtc_version().unwrap();
    println!("NVRTC {major}.{minor}");
    for arch in TARGETS {
        for module in Module::ALL {
            // ptxas' resource report (registers, spills, shared memory) lands in the log.
            let compiled = compile_module(module, arch, &["--ptxas-options=-v"])
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(!compiled.cubin.is_empty());
            let entries = compiled.entries();
            for kernel in module.kernels() {
                let symbol = kernel.symbol;
                assert!(
                    entries.contains(&symbol),
                    "kernels/{} defines no {symbol} for {arch} (entries: {entries:?})",
                    module.file()
                );
            }
            println!(
                "{arch} {}: {} kernels\n{}",
                module.file(),
                entries.len(),
                compiled.log
            );
        }
    }
}

#[test]
fn compile_errors_name_the_file_and_carry_the_log() {
    if !nvrtc() {
        return;
    }
    let src = concat!(
        "#include \"common.cuh\"\n",
        "extern \"C\" __global__ void broken_f32(float* x) { x[0] = undefined_name; }\n",
    );
    let err = compile_source("broken.cu", src, "sm_90a", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("kernels/broken.cu"), "{err}");
    assert!(err.contains("undefined_name"), "{err}");
}
