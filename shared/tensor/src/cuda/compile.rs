//! Run-time compilation of `kernels/*.cu` with NVRTC, and the two-level cache in front of it.
//!
//! - **Arch**: the running GPU's compute capability picks the target: `sm_90a` on 9.0 (Hopper's
//!   arch-specific instructions), `sm_120a` on 12.0, otherwise `sm_{major}{minor}`. NVRTC emits a
//!   CUBIN for that real arch, so the driver loads machine code without a PTX JIT step.
//! - **Disk**: CUBINs are stored under `$TURBINE_KERNEL_CACHE`, else `~/.cache/turbine/kernels`,
//!   as `{arch}/{file}-{key}.cubin`, where the key hashes the source, every header, the option
//!   list, the arch and the NVRTC version, so any change compiles afresh and stale files are never
//!   loaded. A failed read or write is a warning, never an error: the cost is a recompile.
//! - **Memory**: loaded modules per process, and functions per symbol ([`KernelCache`]).
//!
//! A compile error carries the kernel file name and NVRTC's log.

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{Ptx, result as nvrtc_result, sys as nvrtc_sys};
use sha2::{Digest, Sha256};

use super::Wrap;
use super::kernels::{HEADERS, Kernel, Module};
use crate::{Error, Result};

/// The NVRTC target for a device of compute capability `major.minor`.
pub fn arch_for(major: i32, minor: i32) -> String {
    match (major, minor) {
        (9, 0) => "sm_90a".into(),
        (12, 0) => "sm_120a".into(),
        _ => format!("sm_{major}{minor}"),
    }
}

/// NVRTC options for `arch`. `-lineinfo` keeps profiles readable at no run-time cost; no fast-math,
/// so `expf`/`tanhf`/division keep their documented accuracy.
fn options(arch: &str) -> Vec<String> {
    vec![
        "--std=c++17".into(),
        format!("--gpu-architecture={arch}"),
        "-lineinfo".into(),
    ]
}

/// True when the NVRTC library can be loaded; without it nothing here works, and calling into it
/// would panic inside cudarc.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library under its candidate names.
    unsafe { nvrtc_sys::is_culib_present() }
}

/// NVRTC's `(major, minor)` version.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .w("nvrtc_version")?;
    Ok((major, minor))
}

/// A compiled module: the CUBIN the driver loads, the PTX it came from (for symbol checks) and
/// NVRTC's log (warnings, and register/spill counts when asked for).
#[derive(Debug, Clone)]
pub struct Compiled {
    pub cubin: Vec<u8>,
    pub ptx: String,
    pub log: String,
}

impl Compiled {
    /// Kernel symbols (`.entry` names) defined by the module.
    pub fn entries(&self) -> Vec<&str> {
        self.ptx
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".visible .entry "))
            .map(|l| l.split('(').next().unwrap_or(l).trim())
            .collect()
    }
}

/// The disk-cache key of `module` compiled for `arch` by NVRTC `version`.
fn cache_key(module: Module, arch: &str, version: (i32, i32)) -> String {
    let mut h = Sha256::new();
    for part in [module.file(), module.source()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (name, text) in HEADERS {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    for opt in options(arch) {
        h.update(opt.as_bytes());
        h.update([0]);
    }
    h.update(format!("nvrtc {}.{}", version.0, version.1).as_bytes());
    h.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Owns an `nvrtcProgram` and destroys it on every exit path.
struct Program(nvrtc_sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram and destroyed only here. A failure to free a
        // program cannot be acted upon.
        let _ = unsafe { nvrtc_result::destroy_program(self.0) };
    }
}

fn c_string(op: &'static str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(op, "string holds a NUL byte"))
}

fn program_log(prog: &Program) -> String {
    // SAFETY: `prog` is a live program.
    match unsafe { nvrtc_result::get_program_log(prog.0) } {
        Ok(chars) => {
            let bytes: Vec<u8> = chars
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).trim().to_string()
        }
        Err(e) => format!("<no log: {e}>"),
    }
}

/// Compiles one module for `arch` with NVRTC, with `extra` options appended (e.g.
/// `--ptxas-options=-v` for register counts). Needs only the NVRTC library, no GPU.
pub fn compile_module(module: Module, arch: &str, extra: &[&str]) -> Result<Compiled> {
    compile_source(module.file(), module.source(), arch, extra)
}

/// Compiles `source` (named `file` in messages; it may include the [`HEADERS`]) for `arch`.
pub fn compile_source(file: &str, source: &str, arch: &str, extra: &[&str]) -> Result<Compiled> {
    if !nvrtc_available() {
        return Err(Error::Backend {
            backend: "cuda",
            msg: "the NVRTC library (libnvrtc.so.13) was not found".into(),
        });
    }
    let source = c_string("nvrtc", source)?;
    let name = c_string("nvrtc", file)?;
    let header_texts = HEADERS
        .iter()
        .map(|(_, text)| c_string("nvrtc", text))
        .collect::<Result<Vec<_>>>()?;
    let header_names = HEADERS
        .iter()
        .map(|(n, _)| c_string("nvrtc", n))
        .collect::<Result<Vec<_>>>()?;
    let text_ptrs: Vec<*const c_char> = header_texts.iter().map(|s| s.as_ptr()).collect();
    let name_ptrs: Vec<*const c_char> = header_names.iter().map(|s| s.as_ptr()).collect();

    let mut raw = std::mem::MaybeUninit::uninit();
    // SAFETY: every pointer is a NUL-terminated string that outlives the program (all CStrings
    // live until the end of this function, after `Program` is dropped), and the two header arrays
    // have HEADERS.len() entries.
    unsafe {
        nvrtc_sys::nvrtcCreateProgram(
            raw.as_mut_ptr(),
            source.as_ptr(),
            name.as_ptr(),
            HEADERS.len() as c_int,
            text_ptrs.as_ptr(),
            name_ptrs.as_ptr(),
        )
    }
    .result()
    .w("nvrtc")?;
    // SAFETY: nvrtcCreateProgram succeeded, so the program is initialised.
    let prog = Program(unsafe { raw.assume_init() });

    let mut opts = options(arch);
    opts.extend(extra.iter().map(|s| s.to_string()));
    // SAFETY: `prog` is a live program; the options are converted to C strings by the callee.
    let compiled = unsafe { nvrtc_result::compile_program(prog.0, &opts) };
    let log = program_log(&prog);
    if let Err(e) = compiled {
        return Err(Error::Backend {
            backend: "cuda",
            msg: format!(
                "NVRTC could not compile kernels/{file} for {arch} ({e}), options {opts:?}:\n{log}"
            ),
        });
    }

    let mut size = 0usize;
    // SAFETY: `prog` compiled successfully; `size` is a valid out-pointer.
    unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog.0, &mut size) }
        .result()
        .w("nvrtc")?;
    if size == 0 {
        return Err(Error::Backend {
            backend: "cuda",
            msg: format!(
                "NVRTC produced no CUBIN for kernels/{file} ({arch} is not a real architecture)"
            ),
        });
    }
    let mut cubin = vec![0u8; size];
    // SAFETY: `cubin` has exactly the size NVRTC reported.
    unsafe { nvrtc_sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr().cast()) }
        .result()
        .w("nvrtc")?;
    // SAFETY: `prog` compiled successfully.
    let ptx_chars = unsafe { nvrtc_result::get_ptx(prog.0) }.w("nvrtc")?;
    let ptx_bytes: Vec<u8> = ptx_chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(Compiled {
        cubin,
        ptx: String::from_utf8_lossy(&ptx_bytes).into_owned(),
        log,
    })
}

/// The disk cache directory, when one can be named.
pub(super) fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TURBINE_KERNEL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/turbine/kernels"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A concurrent reader sees either no file or a complete one.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// How the modules of a backend were obtained, for start-up reports.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KernelStats {
    /// Modules compiled by NVRTC in this process.
    pub compiled: usize,
    /// Modules loaded from the disk cache.
    pub disk_hits: usize,
    /// Wall time spent compiling and loading modules, ms.
    pub load_ms: f64,
}

#[derive(Default)]
struct Loaded {
    modules: HashMap<Module, Arc<CudaModule>>,
    functions: HashMap<(Module, String), CudaFunction>,
    stats: KernelStats,
}

/// Compiled modules and their functions for one context.
pub(crate) struct KernelCache {
    ctx: Arc<CudaContext>,
    arch: String,
    nvrtc: (i32, i32),
    disk: Option<PathBuf>,
    loaded: Mutex<Loaded>,
}

impl KernelCache {
    pub fn new(ctx: Arc<CudaContext>, arch: String) -> Result<Self> {
        Ok(Self {
            ctx,
            arch,
            nvrtc: nvrtc_version()?,
            disk: cache_dir(),
            loaded: Mutex::new(Loaded::default()),
        })
    }

    pub fn nvrtc(&self) -> (i32, i32) {
        self.nvrtc
    }

    pub fn stats(&self) -> KernelStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The function for `kernel`, compiling or loading its module on first use.
    pub fn function(&self, kernel: Kernel) -> Result<CudaFunction> {
        let key = (kernel.module, kernel.symbol.to_string());
        // Held across a first compile: concurrent first uses would otherwise compile twice.
        let mut loaded = self.lock();
        if let Some(f) = loaded.functions.get(&key) {
            return Ok(f.clone());
        }
        let module = match loaded.modules.get(&kernel.module) {
            Some(m) => m.clone(),
            None => {
                let m = self.load(kernel.module, &mut loaded.stats)?;
                loaded.modules.insert(kernel.module, m.clone());
                m
            }
        };
        let f = module.load_function(&key.1).map_err(|e| Error::Backend {
            backend: "cuda",
            msg: format!(
                "kernels/{} has no kernel {}: {e}",
                kernel.module.file(),
                key.1
            ),
        })?;
        loaded.functions.insert(key, f.clone());
        Ok(f)
    }

    /// Loads every module now, so later launches pay no compile time.
    pub fn load_all(&self) -> Result<()> {
        let mut loaded = self.lock();
        for m in Module::ALL {
            if !loaded.modules.contains_key(&m) {
                let module = self.load(m, &mut loaded.stats)?;
                loaded.modules.insert(m, module);
            }
        }
        Ok(())
    }

    fn load(&self, module: Module, stats: &mut KernelStats) -> Result<Arc<CudaModule>> {
        let start = Instant::now();
        let path = self.disk.as_ref().map(|dir| {
            dir.join(&self.arch).join(format!(
                "{}-{}.cubin",
                module.file().trim_end_matches(".cu"),
                cache_key(module, &self.arch, self.nvrtc)
            ))
        });
        if let Some(path) = &path
            && let Ok(bytes) = std::fs::read(path)
        {
            match self.ctx.load_module(Ptx::from_binary(bytes)) {
                Ok(m) => {
                    stats.disk_hits += 1;
                    stats.load_ms += start.elapsed().as_secs_f64() * 1e3;
                    return Ok(m);
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cached kernel module did not load; recompiling"
                ),
            }
        }
        let compiled = compile_module(module, &self.arch, &[])?;
        if !compiled.log.is_empty() {
            tracing::debug!(file = module.file(), log = %compiled.log, "NVRTC log");
        }
        let m = self
            .ctx
            .load_module(Ptx::from_binary(compiled.cubin.clone()))
            .map_err(|e| Error::Backend {
                backend: "cuda",
                msg: format!("loading kernels/{} ({}): {e}", module.file(), self.arch),
            })?;
        if let Some(path) = &path
            && let Err(e) = write_atomically(path, &compiled.cubin)
        {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "could not write the kernel cache; the module will be compiled again next run"
            );
        }
        stats.compiled += 1;
        stats.load_ms += start.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            file = module.file(),
            arch = %self.arch,
            ms = start.elapsed().as_secs_f64() * 1e3,
            "compiled kernel module"
        );
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_prefers_arch_specific_targets_where_used() {
        assert_eq!(arch_for(9, 0), "sm_90a");
        assert_eq!(arch_for(12, 0), "sm_120a");
        assert_eq!(arch_for(8, 9), "sm_89");
        assert_eq!(arch_for(10, 0), "sm_100");
    }

    #[test]
    fn cache_key_depends_on_module_arch_and_nvrtc() {
        let k = cache_key(Module::Norm, "sm_90a", (13, 0));
        assert_eq!(k.len(), 32);
        assert_eq!(k, cache_key(Module::Norm, "sm_90a", (13, 0)));
        assert_ne!(k, cache_key(Module::Rope, "sm_90a", (13, 0)));
        assert_ne!(k, cache_key(Module::Norm, "sm_120a", (13, 0)));
        assert_ne!(k, cache_key(Module::Norm, "sm_90a", (13, 1)));
    }

    #[test]
    fn entries_are_read_from_ptx() {
        let c = Compiled {
            cubin: vec![],
            ptx: ".visible .entry rope_f32(\n\t.param .align 8 .b8 rope_f32_param_0[48]\n)".into(),
            log: String::new(),
        };
        assert_eq!(c.entries(), ["rope_f32"]);
    }
}
