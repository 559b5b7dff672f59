//! The quantized transformer on real weights (the 0.5B test model): the one-token host decode
//! path against the tensor path.

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::Device;
use zhengwu_inference::llm::model::QuantizedTransformer;
use zhengwu_inference::registry::Registry;

const MODEL: &str = "qwen2.5-0.5b-instruct";

fn model_path() -> std::path::PathBuf {
    let registry = Registry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../models.toml")).unwrap();
    registry.locate(MODEL).expect("run: zhengwu models fetch qwen2.5-0.5b-instruct")
}

fn load() -> QuantizedTransformer {
    let path = model_path();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    QuantizedTransformer::from_gguf(&content, &mut file, &Device::Cpu, 4096, None).unwrap()
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap()
}

#[test]
fn host_decode_matches_the_tensor_path() {
    let mut model = load();
    assert!(model.set_host_decode(true).unwrap(), "host decode is available on the CPU");
    // A prompt of ordinary token ids, then greedy steps; each step's logits from both paths.
    let prompt: Vec<u32> = vec![104307, 9370, 59975, 100165, 99459, 11319, 14880, 91680, 102104, 99805, 29991, 1773];
    let (mut host_cache, mut tensor_cache) = (model.new_cache(), model.new_cache());
    let first = model.forward(&prompt, &mut host_cache).unwrap().to_vec1::<f32>().unwrap();
    model.forward(&prompt, &mut tensor_cache).unwrap();
    let mut next = argmax(&first) as u32;
    // Past 256 positions the cache buffer grows: cross that boundary too.
    let filler: Vec<u32> = (0..250).map(|i| 1000 + i).collect();
    for step in 0..8 {
        if step == 4 {
            model.forward(&filler, &mut host_cache).unwrap();
            model.forward(&filler, &mut tensor_cache).unwrap();
        }
        model.set_host_decode(true).unwrap();
        let a = model.forward(&[next], &mut host_cache).unwrap().to_vec1::<f32>().unwrap();
        model.set_host_decode(false).unwrap();
        let b = model.forward(&[next], &mut tensor_cache).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        // The int8 activation quantization amplifies float-order differences through the
        // layers: the tensor path itself moves by ~1% (relative L2) when the same prompt is
        // prefilled in two chunks instead of one. A wrong rotation, head mapping or cache
        // offset moves the logits by far more.
        let l2 = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
        let rel = l2(&mut a.iter().zip(&b).map(|(x, y)| x - y)) / l2(&mut b.iter().copied());
        eprintln!("step {step}: relative L2 difference {rel}");
        assert!(rel < 0.1, "step {step}: logits differ by {rel} (relative L2)");
        let (ta, tb) = (argmax(&a), argmax(&b));
        if ta != tb {
            // Only a near tie may flip the greedy token.
            let gap = (b[tb] - b[ta]).abs();
            assert!(gap < 0.05 * b[tb].abs().max(1.0), "step {step}: greedy token {ta} vs {tb} (gap {gap})");
        }
        next = argmax(&a) as u32;
    }
    assert_eq!(host_cache.len(), tensor_cache.len());
}

#[test]
fn embeddings_read_from_the_file_equal_the_table_in_memory() {
    let path = model_path();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let paged = QuantizedTransformer::from_gguf_path(&path, &content, &Device::Cpu, 4096, None).unwrap();
    // The 0.5B GGUF has its own output matrix, so its embedding table stays in the file.
    assert!(paged.embeddings_in_file());
    let memory = load();
    assert!(!memory.embeddings_in_file());
    let prompt: Vec<u32> = vec![151644, 872, 198, 104307, 9370, 59975, 100165, 99459, 11319, 151645];
    let a = paged.forward(&prompt, &mut paged.new_cache()).unwrap().to_vec1::<f32>().unwrap();
    let b = memory.forward(&prompt, &mut memory.new_cache()).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a, b, "same rows, same arithmetic");
    // A token id past the vocabulary is an error, not a read past the table.
    let err = paged.forward(&[10_000_000], &mut paged.new_cache()).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
}

/// The local engine shows the behaviour every generator backend must (the same suite runs on
/// the test fake and on the remote client against a second server).
#[test]
fn the_engine_passes_the_generator_suite() {
    use zhengwu_inference::llm::{EngineOptions, LlmEngine};
    let engine = LlmEngine::load(&model_path(), MODEL, &Device::Cpu, EngineOptions { max_context: 1024, ..Default::default() }).unwrap();
    zhengwu_core::testing::generator_suite(&engine);
}
