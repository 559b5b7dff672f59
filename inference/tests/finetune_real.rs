//! LoRA fine-tuning of the real 0.5B chat model on a tiny fixture: the loss falls, the adapter
//! changes the model's output (trainable forward and the served, merged engine), an adapter
//! saved and loaded gives the same outputs, and a run interrupted at a checkpoint and resumed
//! ends with the same weights as an uninterrupted one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use zhengwu_inference::finetune::{self, LoraAdapter, LoraSpec, Quiet, TrainOptions, TrainableModel};
use zhengwu_inference::llm::engine::tokenizer_and_template;
use zhengwu_inference::llm::{EngineOptions, LlmEngine};
use zhengwu_inference::registry::Registry;
use zhengwu_inference::{ChatMessage, ChatRequest, GenerationParams, Generator};

const MODEL: &str = "qwen2.5-0.5b-instruct";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn greedy(engine: &LlmEngine, messages: &[ChatMessage], max_tokens: usize) -> String {
    let params = GenerationParams { max_tokens, ..Default::default() };
    let stream = engine.chat(ChatRequest::new(messages.to_vec(), params)).unwrap();
    zhengwu_core::collect_blocking(stream).expect("generation").text
}

fn options(max_steps: usize) -> TrainOptions {
    TrainOptions {
        lora: LoraSpec { rank: 4, alpha: 8.0, targets: finetune::parse_targets("q,v,o,down").unwrap() },
        learning_rate: 3e-3,
        epochs: 1.0,
        max_steps: Some(max_steps),
        batch: 2,
        grad_accum: 1,
        max_len: 128,
        seed: 7,
        warmup_steps: 0,
        weight_decay: 0.0,
        clip_norm: 1.0,
    }
}

#[test]
fn lora_training_learns_saves_loads_and_resumes_exactly() {
    let registry = Registry::load(&repo_root().join("models.toml")).unwrap();
    let path = registry.locate(MODEL).expect("run: zhengwu models fetch qwen2.5-0.5b-instruct");
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let (tokenizer, template) = tokenizer_and_template(&content, MODEL).unwrap();
    let dataset = finetune::read_jsonl(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/finetune_tiny.jsonl")).unwrap();
    let data: Vec<_> =
        dataset.examples.iter().map(|e| finetune::tokenize(e, &template, &tokenizer, 128).unwrap().unwrap()).collect();
    // Loss only on the assistant turn: the first tokens (system, user) are context.
    assert!(!data[0].targets[0] && data[0].targets[data[0].ids.len() - 1]);
    let mut model = TrainableModel::from_gguf(&content, &mut file, &Device::Cpu, 256, true).unwrap();

    // 0. The int8 frozen path agrees with the f32 one: same loss and, through all 24 layers'
    //    backward passes, the same direction of the gradient of the lowest LoRA matrix.
    if model.int8 {
        let mut exact = TrainableModel::from_gguf(&content, &mut file, &Device::Cpu, 256, false).unwrap();
        let opts = options(1);
        let grad_of_first_b = |m: &mut TrainableModel| -> (f64, Tensor) {
            m.init_lora(&opts.lora, opts.seed).unwrap();
            let (loss, n) = m.loss_sum(&data[0].ids, &data[0].targets).unwrap();
            let grads = loss.backward().unwrap();
            let (name, var) = m.lora_vars().into_iter().find(|(n, _)| n.ends_with("lora_b")).unwrap();
            assert!(name.starts_with("blk.0."), "{name}");
            (loss.to_scalar::<f32>().unwrap() as f64 / n as f64, grads.get(var.as_tensor()).unwrap().flatten_all().unwrap())
        };
        let (l8, g8) = grad_of_first_b(&mut model);
        let (l32, g32) = grad_of_first_b(&mut exact);
        let cos = (&g8 * &g32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
            / (g8.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt()
                * g32.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt());
        println!("int8 vs f32: loss {l8:.4} vs {l32:.4}, gradient cosine {cos:.4}");
        assert!((l8 - l32).abs() < 0.05 * l32, "int8 loss {l8} vs f32 {l32}");
        assert!(cos > 0.95, "int8 and f32 gradients point apart (cosine {cos})");
    }

    // 1. The loss falls over a few steps on the fixture.
    let opts = options(6);
    let state = finetune::train(&mut model, &data, &opts, None, 0, None, &mut Quiet).unwrap();
    println!("losses: {:?}", state.losses);
    assert_eq!(state.losses.len(), 6);
    let tail = (state.losses[4] + state.losses[5]) / 2.0;
    assert!(tail < 0.8 * state.losses[0], "loss did not fall: {:?}", state.losses);

    // 2. The adapter changes the output; 3. saved and loaded, it gives the same output.
    let question = &dataset.examples[0].messages[..2];
    let prompt = template.render(question, true).unwrap();
    let ids = tokenizer.encode(prompt.as_str(), false).unwrap().get_ids().to_vec();
    let tuned = model.last_logits(&ids).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let adapter_path = dir.path().join("tiny.safetensors");
    let adapter = LoraAdapter {
        manifest: finetune::AdapterManifest::new(MODEL, &registry.get(MODEL).unwrap().sha256, &opts, &dataset.sha256, data.len(), &state),
        weights: model.lora_weights().unwrap(),
    };
    adapter.save(&adapter_path).unwrap();
    model.init_lora(&opts.lora, 123).unwrap(); // B = 0: the base model again
    let base = model.last_logits(&ids).unwrap();
    let changed = max_abs_diff(&tuned, &base);
    assert!(changed > 0.05, "the adapter barely changes the logits ({changed})");
    let loaded = LoraAdapter::load(&adapter_path, &Device::Cpu).unwrap();
    assert_eq!(loaded.manifest.lora, opts.lora);
    model.load_adapter(&loaded).unwrap();
    let reloaded = model.last_logits(&ids).unwrap();
    assert_eq!(max_abs_diff(&reloaded, &tuned), 0.0, "saved -> loaded adapter gives other logits");

    // The served engine (adapter merged into the quantized weights) answers differently.
    let base_engine = LlmEngine::load(&path, MODEL, &Device::Cpu, EngineOptions::default()).unwrap();
    let tuned_engine = LlmEngine::load(
        &path,
        "tiny-lora",
        &Device::Cpu,
        EngineOptions { adapter: Some(Arc::new(loaded)), ..Default::default() },
    )
    .unwrap();
    let a = greedy(&base_engine, question, 24);
    let b = greedy(&tuned_engine, question, 24);
    println!("base: {a}\ntuned: {b}");
    assert_ne!(a, b, "the merged adapter does not change the served answer");
    drop((base_engine, tuned_engine));

    // 4. Interrupted at a checkpoint and resumed == uninterrupted (same seed).
    let opts = options(4);
    let whole_dir = dir.path().join("whole");
    let parts_dir = dir.path().join("parts");
    let whole = finetune::train(&mut model, &data, &opts, Some(&whole_dir), 2, None, &mut Quiet).unwrap();
    let whole_w = model.lora_weights().unwrap();
    let first = finetune::train(&mut model, &data, &opts, Some(&parts_dir), 2, Some(2), &mut Quiet).unwrap();
    assert_eq!(first.step, 2);
    let resumed = finetune::train(&mut model, &data, &opts, Some(&parts_dir), 2, None, &mut Quiet).unwrap();
    assert_eq!(resumed.step, 4);
    assert_eq!(resumed.losses, whole.losses, "resumed run saw other losses");
    let resumed_w = model.lora_weights().unwrap();
    for (name, (a, b)) in &whole_w {
        let (ra, rb) = &resumed_w[name];
        assert!(max_abs_diff(a, ra) < 1e-6 && max_abs_diff(b, rb) < 1e-6, "{name} differs after resume");
    }

    // A checkpoint of another run is refused, not silently mixed in.
    let mut other = options(4);
    other.learning_rate = 1e-3;
    let err = finetune::train(&mut model, &data, &other, Some(&parts_dir), 2, None, &mut Quiet).err().expect("mismatched checkpoint accepted");
    assert!(err.to_string().contains("other options or data"), "{err}");
}

#[test]
fn bad_training_files_are_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(&p, "{\"messages\": [{\"role\": \"user\", \"content\": \"只有问题\"}]}\n").unwrap();
    let err = finetune::read_jsonl(&p).err().unwrap().to_string();
    assert!(err.contains("line 1") && err.contains("assistant"), "{err}");
    std::fs::write(&p, "not json\n").unwrap();
    assert!(finetune::read_jsonl(&p).err().unwrap().to_string().contains("line 1"));
    std::fs::write(&p, "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}\n").unwrap();
    assert!(finetune::read_jsonl(&p).err().unwrap().to_string().contains("robot"));
    assert!(finetune::parse_targets("q,zz").is_err());
    assert_eq!(finetune::parse_targets("v,q,attn").unwrap(), vec!["attn_q", "attn_k", "attn_v", "attn_output"]);
}
