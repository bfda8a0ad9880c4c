//! The binaries under test, built once per test process.
//!
//! `env!("CARGO_BIN_EXE_…")` only names binaries of the test's own package, so the harness asks
//! cargo: the first test to need a binary runs
//!
//! ```text
//! cargo build --bins --tests --profile test -p turbine-text-encoder -p turbine-denoiser \
//!     -p turbine-vae -p turbine-orchestrator -p turbine-cli --message-format=json-render-diagnostics
//! ```
//!
//! (`--release` when the tests themselves are built without debug assertions) with the `cargo`
//! that runs the tests, in this workspace and its target directory, and takes the paths from the
//! `compiler-artifact` messages. Cargo rebuilds whatever is stale, so the processes always run the
//! current sources; when everything is fresh this takes about a second. The result is kept in a
//! `OnceLock` for every later test of the process.
//!
//! `--tests` is there for the features: it activates those packages' dev-dependencies, so
//! dependencies resolve with the same features as under `cargo test --workspace` (e.g.
//! `turbine-rpc/testing`), and after that command this build finds everything fresh instead of
//! compiling a second variant of the workspace.
//!
//! `TURBINE_BIN_DIR=<dir>` skips the build and takes the binaries from `<dir>` (e.g. an
//! installed release); the caller is then responsible for them being current.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

/// Paths of the service binaries and of the `turbine` command.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub text_encoder: PathBuf,
    pub denoiser: PathBuf,
    pub vae: PathBuf,
    pub orchestrator: PathBuf,
    /// `turbine` (services/cli): the embedded reference pipeline.
    pub turbine: PathBuf,
}

/// `(package, binary)` of every executable the tests start.
const TARGETS: [(&str, &str); 5] = [
    ("turbine-text-encoder", "turbine-text-encoder"),
    ("turbine-denoiser", "turbine-denoiser"),
    ("turbine-vae", "turbine-vae"),
    ("turbine-orchestrator", "turbine-orchestrator"),
    ("turbine-cli", "turbine"),
];

/// The binaries, built (or found) on first use. A failed build fails every test that needs a
/// binary, with cargo's errors, without building again.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    let found = BINARIES.get_or_init(|| match std::env::var_os("TURBINE_BIN_DIR") {
        Some(dir) => from_dir(Path::new(&dir)),
        None => build(),
    });
    match found {
        Ok(binaries) => binaries,
        Err(e) => panic!("{e}"),
    }
}

/// The repository root (the workspace this package belongs to).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies inside the workspace")
        .to_path_buf()
}

fn assemble(mut found: HashMap<String, PathBuf>) -> Result<Binaries, String> {
    let mut take = |name: &str| {
        found
            .remove(name)
            .ok_or_else(|| format!("no `{name}` binary; the cluster tests need all of {TARGETS:?}"))
    };
    Ok(Binaries {
        text_encoder: take("turbine-text-encoder")?,
        denoiser: take("turbine-denoiser")?,
        vae: take("turbine-vae")?,
        orchestrator: take("turbine-orchestrator")?,
        turbine: take("turbine")?,
    })
}

fn from_dir(dir: &Path) -> Result<Binaries, String> {
    let found = TARGETS
        .iter()
        .map(|(_, bin)| (bin.to_string(), dir.join(bin)))
        .filter(|(_, path)| path.is_file())
        .collect();
    assemble(found)
}

/// The end of cargo's report: the errors, not every linker command line before them.
fn tail(stderr: &[u8]) -> String {
    const KEEP: usize = 6000;
    let text = String::from_utf8_lossy(stderr);
    match text.char_indices().nth_back(KEEP) {
        Some((start, _)) => format!("[…]{}", &text[start..]),
        None => text.into_owned(),
    }
}

fn build() -> Result<Binaries, String> {
    let root = workspace_root();
    // The cargo running these tests (it sets CARGO for them), else the one that compiled them.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let profile = if cfg!(debug_assertions) {
        "test"
    } else {
        "release"
    };
    let mut command = Command::new(&cargo);
    command
        .current_dir(&root)
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--bins", "--tests", "--profile", profile])
        .arg("--message-format=json-render-diagnostics");
    for (package, _) in TARGETS {
        command.args(["-p", package]);
    }
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !output.status.success() {
        return Err(format!(
            "building the service binaries failed ({command:?}, {}):\n{}",
            output.status,
            tail(&output.stderr)
        ));
    }
    let wanted: Vec<&str> = TARGETS.iter().map(|(_, bin)| *bin).collect();
    let mut found = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // `--tests` also reports each binary's unit-test harness (`profile.test`): not a server.
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != false {
            continue;
        }
        let (Some(name), Some(executable)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        if wanted.contains(&name) {
            found.insert(name.to_string(), PathBuf::from(executable));
        }
    }
    eprintln!(
        "cluster tests: service binaries built ({profile} profile) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assemble(found)
}
