//! The `turbine.v1` gRPC API, generated from `proto/turbine/v1/*.proto`.

#![allow(clippy::wildcard_enum_match_arm)] // generated code

/// Package `turbine.v1`.
pub mod v1 {
    tonic::include_proto!("turbine.v1");
}

/// The encoded `FileDescriptorSet` of every Turbine proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/turbine_descriptor.bin"));
