//! Compiles proto/turbine/v1 with protox (a pure-Rust protobuf compiler: no `protoc` on build
//! machines) and writes the encoded descriptor set that gRPC reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "turbine/v1/tensor.proto",
    "turbine/v1/params.proto",
    "turbine/v1/text_encoder.proto",
    "turbine/v1/denoiser.proto",
    "turbine/v1/vae.proto",
    "turbine/v1/orchestrator.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, [&root])?;
    std::fs::write(
        out.join("turbine_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // Tensor and artifact payloads: `Bytes` slices share the receive buffer instead of copying.
        .bytes(".turbine.v1")
        .compile_fds(fds)?;
    // tonic-prost-build 0.14 does not emit these itself.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    Ok(())
}
