//! Writing safetensors files (model artifacts, adapters, checkpoints) in one place.

use std::path::Path;

use candle_core::Tensor;

use crate::{Error, Result};

/// Write named tensors and string metadata to a safetensors file, atomically.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)], meta: &[(&str, String)]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs_err::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    let metadata: std::collections::HashMap<String, String> =
        meta.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let views: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), std::io::Error::other(e.to_string())))?;
    fs_err::rename(&tmp, path).map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))?;
    Ok(())
}
