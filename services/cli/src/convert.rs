//! `turbine convert`: a torch.save checkpoint to safetensors, once, so that serving only ever
//! memory-maps safetensors.

use std::path::PathBuf;

use anyhow::Context;
use turbine_checkpoint::convert::{Cast, ConvertOptions, ConvertReport, convert};

/// How many skipped or unprefixed names to list before summarizing the rest.
const LISTED: usize = 20;

#[derive(clap::Args)]
pub struct Args {
    /// The `.pth` checkpoint, as written by torch.save (zip format).
    input: PathBuf,
    /// The `.safetensors` file to write (replaced if it exists).
    output: PathBuf,
    /// Convert only the tensors under this dotted key and drop it from their names, e.g.
    /// `state_dict` for a training checkpoint `{"state_dict": {...}, "epoch": ...}`. Without it,
    /// nested dicts are flattened to dotted names (`state_dict.net.blocks.0.w`).
    #[arg(long, value_name = "KEY")]
    select: Option<String>,
    /// Then remove this prefix from the names that start with it, e.g. `net.` for TurboDiffusion
    /// checkpoints.
    #[arg(long, value_name = "PREFIX")]
    strip_prefix: Option<String>,
    /// Element type of floating-point tensors; integer (quantized), bool and fp8 tensors keep
    /// theirs.
    #[arg(long, value_enum, default_value_t = DTypeArg::Keep)]
    dtype: DTypeArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DTypeArg {
    Keep,
    Bf16,
    F32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let options = ConvertOptions {
        select: args.select,
        strip_prefix: args.strip_prefix,
        cast: match args.dtype {
            DTypeArg::Keep => Cast::Keep,
            DTypeArg::Bf16 => Cast::BF16,
            DTypeArg::F32 => Cast::F32,
        },
    };
    let report = convert(&args.input, &args.output, &options)
        .with_context(|| format!("converting {}", args.input.display()))?;
    print!("{}", summary(&args.output, &options, &report));
    Ok(())
}

fn summary(output: &std::path::Path, options: &ConvertOptions, report: &ConvertReport) -> String {
    let mut out = format!(
        "wrote {}: {} tensors, {} of tensor data, {} file\n",
        output.display(),
        report.tensors,
        size(report.data_bytes),
        size(report.file_bytes),
    );
    if report.unselected > 0
        && let Some(key) = &options.select
    {
        out += &format!("left out {} tensors outside `{key}`\n", report.unselected);
    }
    if let Some(prefix) = &options.strip_prefix
        && !report.unprefixed.is_empty()
    {
        out += &format!(
            "kept {} names without the prefix `{prefix}`: {}\n",
            report.unprefixed.len(),
            listing(report.unprefixed.iter())
        );
    }
    if !report.skipped.is_empty() {
        out += &format!(
            "skipped {} non-tensor entries: {}\n",
            report.skipped.len(),
            listing(report.skipped.iter())
        );
    }
    out
}

fn listing<T: std::fmt::Display>(items: impl ExactSizeIterator<Item = T>) -> String {
    let total = items.len();
    let mut text = items
        .take(LISTED)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if total > LISTED {
        text += &format!(" and {} more", total - LISTED);
    }
    text
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn args(input: &str, output: &Path, select: Option<&str>) -> Args {
        Args {
            input: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/fixtures/pth")
                .join(input),
            output: output.to_path_buf(),
            select: select.map(Into::into),
            strip_prefix: Some("net.".into()),
            dtype: DTypeArg::Bf16,
        }
    }

    #[test]
    fn the_summary_names_what_was_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("turbowan.safetensors");
        let a = args("turbowan.pth", &out, Some("state_dict"));
        let options = ConvertOptions {
            select: a.select.clone(),
            strip_prefix: a.strip_prefix.clone(),
            cast: Cast::BF16,
        };
        let report = convert(&a.input, &out, &options).unwrap();
        let text = summary(&out, &options, &report);
        assert!(text.contains(": 6 tensors, "), "{text}");
        assert!(
            text.contains("left out 2 tensors outside `state_dict`"),
            "{text}"
        );
        assert!(
            text.contains("kept 1 names without the prefix `net.`: logvar.weight"),
            "{text}"
        );
        assert!(
            text.contains(
                "skipped 3 non-tensor entries: optimizer.param_groups (list), args \
                 (argparse.Namespace), iteration (int)"
            ),
            "{text}"
        );
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.safetensors");
        for input in ["legacy.pth", "bad_pickle.pth", "absent.pth"] {
            let err = run(args(input, &out, None)).expect_err(input);
            assert!(format!("{err:#}").contains(input), "{err:#}");
        }
        assert!(!out.exists());
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(11 * 1024 * 1024 * 1024), "11.0 GiB");
    }
}
