//! Warns when the H.264 encoder is about to be built without its assembly: openh264-sys2 compiles
//! OpenH264's x86 kernels only where `nasm` runs at build time and otherwise falls back to C
//! without a word, encoding 2–3× slower.

use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=OPENH264_NO_ASM");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let asm_wanted = std::env::var_os("OPENH264_NO_ASM").is_none();
    if asm_wanted
        && matches!(arch.as_str(), "x86_64" | "x86")
        && Command::new("nasm").arg("-v").output().is_err()
    {
        println!(
            "cargo::warning=nasm is not on PATH, so OpenH264 builds without its x86 assembly and \
             encodes H.264 2-3x slower: `export PATH=\"$(tools/nasm.sh):$PATH\"` (or install \
             nasm), then `cargo clean -p openh264-sys2` and build again"
        );
    }
}
