//! Form filling with the real 0.5B chat model on real citizen messages
//! (`classify/teddy2020_messages.jsonl` under `$ZHENGWU_DATA`): the model's output must be valid
//! JSON (after at most one retry) and name the district the message mentions, in a majority of
//! a fixed sample. The rates are printed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zhengwu_hotline::intel::form::FormFiller;
use zhengwu_hotline::intel::form_llm;
use zhengwu_hotline::tickets::model::Channel;
use zhengwu_inference::llm::{EngineOptions, LlmEngine};
use zhengwu_inference::registry::Registry;
use zhengwu_inference::Generator;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn data_file() -> PathBuf {
    let p = std::env::var_os("ZHENGWU_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"))
        .join("classify/teddy2020_messages.jsonl");
    assert!(p.is_file(), "{} is missing (set ZHENGWU_DATA to the shared data folder)", p.display());
    p
}

/// `A3区`-style district named in the text (the publisher's anonymised districts).
fn district(text: &str) -> Option<String> {
    let cs: Vec<char> = text.chars().collect();
    (0..cs.len().saturating_sub(2)).find_map(|i| (cs[i] == 'A' && cs[i + 1].is_ascii_digit() && cs[i + 2] == '区').then(|| cs[i..i + 3].iter().collect()))
}

#[test]
fn the_chat_model_fills_valid_forms_with_the_right_district() {
    let registry = Registry::load(&repo_root().join("models.toml")).unwrap();
    let path = registry.locate("qwen2.5-0.5b-instruct").expect("run: zhengwu models fetch qwen2.5-0.5b-instruct");
    let engine = LlmEngine::load(&path, "qwen2.5-0.5b-instruct", &candle_core::Device::Cpu, EngineOptions::default()).unwrap();
    let g: Arc<dyn Generator> = Arc::new(engine);
    // A fixed sample: the first 8 messages whose title names an A-district.
    let text = std::fs::read_to_string(data_file()).unwrap();
    let sample: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let title = v["title"].as_str()?.to_string();
            let d = district(&title)?;
            let detail: String = v["detail"].as_str().unwrap_or("").chars().take(150).collect();
            Some((format!("{title}。{detail}"), d))
        })
        .take(8)
        .collect();
    assert_eq!(sample.len(), 8);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let filler = FormFiller::new();
    let (mut valid, mut right, mut retried) = (0, 0, 0);
    for (msg, want) in &sample {
        let out = rt.block_on(form_llm::ask(g.clone(), msg)).unwrap();
        retried += usize::from(out.attempts > 1);
        if let Some(f) = &out.form {
            valid += 1;
            right += usize::from(f.district.contains(want.as_str()));
            // Merged into a rule-based draft, the ticket still validates and says where fields came from.
            let mut draft = filler.fill(msg, Channel::Web, None, None, None);
            let filled = form_llm::merge(&mut draft, msg, &out);
            for field in &filled {
                assert_eq!(draft.provenance[field.as_str()].source, "model");
            }
            assert!(draft.ticket.validate(None).is_ok(), "{:?}", draft.ticket.validate(None));
        }
        eprintln!("want {want}: {:?} (attempts {}, error {:?})", out.form.as_ref().map(|f| f.district.clone()), out.attempts, out.error);
    }
    eprintln!("form filling: valid JSON {valid}/8, district right {right}/8, retried {retried}/8");
    assert!(valid > 4, "valid JSON in only {valid}/8");
    assert!(right > 4, "the right district in only {right}/8");
}

#[test]
fn parse_form_accepts_objects_and_rejects_the_rest() {
    let f = form_llm::parse_form("好的：{\"request_type\": \"投诉\", \"district\": \"A3区\", \"extra\": 1}").unwrap();
    assert_eq!((f.request_type.as_str(), f.district.as_str()), ("投诉", "A3区"));
    assert!(form_llm::parse_form("没有JSON").is_err());
    assert!(form_llm::parse_form("{\"district\": [1,2]}").is_err());
    assert_eq!(form_llm::parse_form("{\"people\": [\"甲\", \"乙\"]}").unwrap().people, "甲、乙");
    assert!(form_llm::parse_form("{\"district\": \"A3区\"").is_err());
    assert_eq!(form_llm::request_type_of("建言"), Some(zhengwu_hotline::tickets::model::RequestType::Suggestion));
}
