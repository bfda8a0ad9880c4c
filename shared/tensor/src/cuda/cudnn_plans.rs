//! cuDNN's algorithm choices kept on disk, so that a new process runs a convolution problem it
//! has met before without timing every algorithm again (`cudnnFindConvolutionForwardAlgorithmEx`
//! takes milliseconds per problem: about 90 ms over a 480p VAE decode's 25 problems).
//!
//! One file per cuDNN version and GPU model, beside the kernel cache
//! (`{dir}/cudnn/{version}-{gpu}.plans`), one line per problem, appended as problems are planned.
//! Lines that do not parse (another version's format, a torn write) are skipped; a failed read or
//! write is a warning, never an error: the cost is a new search.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use cudarc::cudnn::sys::{cudnnConvolutionFwdAlgo_t as Algo, cudnnMathType_t as Math};

use super::cudnn::Problem;
use crate::DType;

/// What the search chose for one problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Choice {
    pub algo: Algo,
    pub math: Math,
}

/// The choices known to this process: read from the file at start, then added as planned.
pub(super) struct PlanStore {
    path: Option<PathBuf>,
    known: Mutex<HashMap<Problem, Choice>>,
}

impl PlanStore {
    /// The store of `gpu` under cuDNN `version` in `dir` (none: this process's choices only).
    pub fn open(dir: Option<PathBuf>, version: usize, gpu: &str) -> Self {
        let name: String = gpu
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.map(|d| d.join("cudnn").join(format!("{version}-{name}.plans")));
        let known = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|text| text.lines().filter_map(parse).collect())
            .unwrap_or_default();
        Self {
            path,
            known: Mutex::new(known),
        }
    }

    pub fn get(&self, p: &Problem) -> Option<Choice> {
        self.lock().get(p).copied()
    }

    /// Keeps `c` for `p` and appends it to the file.
    pub fn record(&self, p: &Problem, c: Choice) {
        self.lock().insert(*p, c);
        let Some(path) = &self.path else {
            return;
        };
        let appended = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                // One short write per line: concurrent processes append whole lines.
                file.write_all(format(p, c).as_bytes())
            });
        if let Err(e) = appended {
            tracing::warn!(path = %path.display(), "cuDNN plan not saved: {e}");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Problem, Choice>> {
        // Every update is one insert: the map stays consistent across a panic.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `dtype x×4 w×5 stride×3 pad×3 algo math`, space-separated, newline-terminated.
fn format(p: &Problem, c: Choice) -> String {
    let dims =
        p.x.iter()
            .chain(&p.w)
            .chain(&p.stride)
            .chain(&p.pad)
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" ");
    format!(
        "{} {dims} {} {}\n",
        dtype_name(p.dtype),
        c.algo as u32,
        c.math as u32
    )
}

fn parse(line: &str) -> Option<(Problem, Choice)> {
    let mut fields = line.split(' ');
    let dtype = match fields.next()? {
        "bf16" => DType::BF16,
        "f32" => DType::F32,
        _ => return None,
    };
    let nums = fields
        .map(|f| f.parse::<usize>().ok())
        .collect::<Option<Vec<_>>>()?;
    let &[
        x0,
        x1,
        x2,
        x3,
        w0,
        w1,
        w2,
        w3,
        w4,
        s0,
        s1,
        s2,
        p0,
        p1,
        p2,
        algo,
        math,
    ] = &nums[..]
    else {
        return None;
    };
    let problem = Problem {
        dtype,
        x: [x0, x1, x2, x3],
        w: [w0, w1, w2, w3, w4],
        stride: [s0, s1, s2],
        pad: [p0, p1, p2],
    };
    Some((
        problem,
        Choice {
            algo: algo_from(algo)?,
            math: math_from(math)?,
        },
    ))
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bf16",
        DType::F32 | DType::F16 | DType::I8 => "f32",
    }
}

fn algo_from(v: usize) -> Option<Algo> {
    Some(match v {
        0 => Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        1 => Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        2 => Algo::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        3 => Algo::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        4 => Algo::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        5 => Algo::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        6 => Algo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        7 => Algo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

fn math_from(v: usize) -> Option<Math> {
    Some(match v {
        0 => Math::CUDNN_DEFAULT_MATH,
        1 => Math::CUDNN_TENSOR_OP_MATH,
        2 => Math::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
        3 => Math::CUDNN_FMA_MATH,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(frames: usize) -> Problem {
        Problem {
            dtype: DType::BF16,
            x: [frames, 480, 832, 96],
            w: [96, 3, 3, 3, 96],
            stride: [1, 1, 1],
            pad: [0, 1, 1],
        }
    }

    const CHOICE: Choice = Choice {
        algo: Algo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        math: Math::CUDNN_TENSOR_OP_MATH,
    };

    #[test]
    fn lines_round_trip_and_bad_lines_are_skipped() {
        let p = Problem {
            dtype: DType::F32,
            stride: [2, 1, 1],
            ..problem(5)
        };
        let c = Choice {
            algo: Algo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
            math: Math::CUDNN_FMA_MATH,
        };
        let line = format(&p, c);
        assert_eq!(parse(line.trim_end()), Some((p, c)));
        for bad in [
            "",
            "bf16 1 2 3",
            "f16 6 480 832 96 96 3 3 3 96 1 1 1 0 1 1 1 1",
            &line[..20],
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let unknown_algo = line.trim_end().replace(" 7 3", " 9 3");
        assert_eq!(parse(&unknown_algo), None);
    }

    #[test]
    fn a_new_store_reads_what_an_earlier_one_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let first = PlanStore::open(Some(dir.path().into()), 91400, "NVIDIA H100 80GB HBM3");
        assert_eq!(first.get(&problem(6)), None);
        first.record(&problem(6), CHOICE);
        first.record(&problem(3), CHOICE);
        assert_eq!(first.get(&problem(6)), Some(CHOICE));
        let path = dir.path().join("cudnn/91400-NVIDIA_H100_80GB_HBM3.plans");
        std::fs::write(
            &path,
            std::fs::read_to_string(&path).unwrap() + "a torn line",
        )
        .unwrap();
        let second = PlanStore::open(Some(dir.path().into()), 91400, "NVIDIA H100 80GB HBM3");
        assert_eq!(second.get(&problem(6)), Some(CHOICE));
        assert_eq!(second.get(&problem(3)), Some(CHOICE));
        assert_eq!(second.get(&problem(4)), None);
        let other_gpu = PlanStore::open(Some(dir.path().into()), 91400, "NVIDIA H200");
        assert_eq!(
            other_gpu.get(&problem(6)),
            None,
            "choices are per GPU model"
        );
    }
}
