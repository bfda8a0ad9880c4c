//! A Python client, its stubs generated from proto/ with grpcio-tools at test time, submits,
//! watches and downloads against the running cluster.
//!
//! The interpreter comes from `TURBINE_PYTHON` (.ci/run sets it to a venv with the pinned
//! `tools/python_client/requirements.txt`). Unset, the test fails and says how to set it: it is
//! never skipped silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use turbine_cluster_tests::binaries::workspace_root;
use turbine_cluster_tests::client::{download, first_difference, mp4_video, run_to_end};
use turbine_cluster_tests::{Cluster, ClusterConfig};

const PYTHON_TIMEOUT: Duration = Duration::from_secs(120);

fn python() -> PathBuf {
    match std::env::var_os("TURBINE_PYTHON") {
        Some(python) if !python.is_empty() => PathBuf::from(python),
        _ => panic!(
            "\n\n*** TURBINE_PYTHON is not set: the Python interop test cannot run. ***\n\
             Set it to an interpreter with grpcio and grpcio-tools, as .ci/run does:\n\n    \
             python3 -m venv pyenv-ci\n    \
             pyenv-ci/bin/pip install -r tools/python_client/requirements.txt\n    \
             export TURBINE_PYTHON=$PWD/pyenv-ci/bin/python\n\n"
        ),
    }
}

/// Runs `python args…`; returns stdout, failing with both streams unless it exits 0.
async fn run_python(python: &Path, args: &[String]) -> String {
    let mut command = Command::new(python);
    command.args(args).current_dir(workspace_root());
    let output = run_to_end(command, PYTHON_TIMEOUT).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python {args:?} failed ({}):\n--- stdout\n{stdout}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The job id from the client's `job <id>` line.
fn job_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("job "))
        .unwrap_or_else(|| panic!("no `job <id>` line in:\n{stdout}"))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_submits_watches_and_downloads() {
    let python = python();
    let root = workspace_root();
    let work = tempfile::tempdir().expect("temporary directory");
    let stubs = work.path().join("stubs");

    // The stubs, generated from the checkout's protos.
    let protos: Vec<String> = std::fs::read_dir(root.join("proto/turbine/v1"))
        .expect("proto/turbine/v1")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .map(|path| {
            path.strip_prefix(root.join("proto"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert!(protos.len() >= 5, "protos: {protos:?}");
    std::fs::create_dir_all(&stubs).unwrap();
    let mut protoc = vec![
        "-m".to_string(),
        "grpc_tools.protoc".into(),
        format!("-I{}", root.join("proto").display()),
        format!("--python_out={}", stubs.display()),
        format!("--grpc_python_out={}", stubs.display()),
    ];
    protoc.extend(protos);
    run_python(&python, &protoc).await;
    assert!(stubs.join("turbine/v1/orchestrator_pb2_grpc.py").is_file());

    let cluster = Cluster::start(ClusterConfig::default()).await;
    let target = cluster.orchestrator.addr.to_string();
    let client_script = root
        .join("tools/python_client/turbine_client.py")
        .display()
        .to_string();
    let base = |command: &str| -> Vec<String> {
        vec![
            client_script.clone(),
            "--target".into(),
            target.clone(),
            "--stubs".into(),
            stubs.display().to_string(),
            command.into(),
        ]
    };
    // 30 guided Euler steps: long enough that the watch opened after the submit sees them.
    let job_args = |seed: u64| -> Vec<String> {
        [
            "--prompt",
            "a kite over the dunes",
            "--width",
            "64",
            "--height",
            "48",
            "--frames",
            "9",
            "--sampler",
            "euler",
            "--steps",
            "30",
            "--guidance",
            "5",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--seed".to_string(), seed.to_string()])
        .collect()
    };
    let mut rust = cluster.client().await;

    // `generate`: submit, watch and download in one command.
    let out = work.path().join("generate.mp4");
    let mut args = base("generate");
    args.extend(job_args(21));
    args.extend(["--out".to_string(), out.display().to_string()]);
    let stdout = run_python(&python, &args).await;
    let generated = job_id(&stdout);
    for expected in [
        "progress step=30/30",
        "stage STAGE_VAE_DECODE",
        "done ",
        "wrote ",
    ] {
        assert!(
            stdout.contains(expected),
            "no `{expected}` in the client's output:\n{stdout}"
        );
    }
    let from_python = std::fs::read(&out).expect("the client wrote the MP4");
    assert_eq!(&from_python[4..8], b"ftyp", "an MP4 file");
    assert_eq!(mp4_video(&from_python), (9, 64, 48));
    let (artifact, from_rust) = download(&mut rust, &generated).await;
    assert_eq!(artifact.size_bytes, from_python.len() as u64);
    assert!(
        from_python == from_rust,
        "Python and Rust downloads differ: {}",
        first_difference(&from_python, &from_rust)
    );

    // The same, one command at a time.
    let mut args = base("submit");
    args.extend(job_args(22));
    let submitted = job_id(&run_python(&python, &args).await);
    let mut args = base("watch");
    args.push(submitted.clone());
    let watched = run_python(&python, &args).await;
    assert!(watched.contains("done "), "watch output:\n{watched}");
    let out = work.path().join("download.mp4");
    let mut args = base("download");
    args.extend([submitted.clone(), "--out".into(), out.display().to_string()]);
    run_python(&python, &args).await;
    let (_, from_rust) = download(&mut rust, &submitted).await;
    assert!(
        std::fs::read(&out).expect("the client wrote the MP4") == from_rust,
        "Python's download of {submitted} differs from Rust's"
    );
    drop(cluster);
}
