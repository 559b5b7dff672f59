//! Deterministic fakes of the model seams, so the answer pipeline, dispatch, the co-pilot and
//! the HTTP layer can be tested in a build without model files. They are not models: the
//! generator says what its script tells it to, the embedder hashes characters. Tests that
//! need real behaviour of a model load real weights and say so in their names.

use std::sync::Mutex;

use crate::{
    ChatMessage, ChatRequest, Completion, EmbedKind, Embedder, Embeddings, Error, FinishReason,
    GenerationEvent, GenerationStream, Generator, Result,
};

type Script = Box<dyn Fn(&[ChatMessage]) -> String + Send + Sync>;

/// A generator whose answer is a function of the messages. One token is one character (plus
/// four per message for the template), so context and `max_tokens` limits behave like a real
/// engine's: a prompt over the context is refused, a long answer stops with `length`.
pub struct FakeGenerator {
    model_id: String,
    context_length: usize,
    script: Script,
    requests: Mutex<Vec<ChatRequest>>,
}

impl FakeGenerator {
    pub fn new(script: impl Fn(&[ChatMessage]) -> String + Send + Sync + 'static) -> Self {
        Self { model_id: "fake-chat".into(), context_length: 8192, script: Box::new(script), requests: Mutex::new(Vec::new()) }
    }

    /// Always the same answer.
    pub fn constant(text: &str) -> Self {
        let text = text.to_string();
        Self::new(move |_| text.clone())
    }

    /// Answers with the last user message.
    pub fn echo() -> Self {
        Self::new(|m| m.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default())
    }

    pub fn with_context_length(mut self, tokens: usize) -> Self {
        self.context_length = tokens;
        self
    }

    pub fn with_model_id(mut self, id: &str) -> Self {
        self.model_id = id.into();
        self
    }

    /// Every request the fake was given, in order (to assert what a caller prompted).
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Tokens the messages take: one per character, four per message.
    pub fn prompt_tokens(messages: &[ChatMessage]) -> usize {
        messages.iter().map(|m| m.content.chars().count() + 4).sum()
    }
}

impl Generator for FakeGenerator {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn context_length(&self) -> usize {
        self.context_length
    }

    fn chat(&self, request: ChatRequest) -> Result<GenerationStream> {
        request.validate()?;
        let prompt_tokens = Self::prompt_tokens(&request.messages);
        let room = self.context_length.saturating_sub(prompt_tokens);
        if room == 0 || (!request.fit_max_tokens && request.params.max_tokens > room) {
            return Err(Error::ContextOverflow {
                model: self.model_id.clone(),
                tokens: prompt_tokens + if request.fit_max_tokens { 0 } else { request.params.max_tokens },
                limit: self.context_length,
            });
        }
        let max_tokens = request.params.max_tokens.min(room);
        let mut text = (self.script)(&request.messages);
        let mut finish_reason = FinishReason::Stop;
        if let Some(i) = request.params.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(i);
        }
        if text.chars().count() > max_tokens {
            text = text.chars().take(max_tokens).collect();
            finish_reason = FinishReason::Length;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(4) {
            let _ = tx.send(GenerationEvent::Delta(piece.iter().collect()));
        }
        let _ = tx.send(GenerationEvent::Done(Completion {
            finish_reason,
            prompt_tokens,
            completion_tokens: chars.len(),
            queue_secs: 0.0,
            prefill_secs: 0.0,
            decode_secs: 0.0,
        }));
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).push(request);
        Ok(rx)
    }

    fn queue_depth(&self) -> usize {
        0
    }
}

/// An embedder that hashes character unigrams and bigrams (letters, digits, CJK) into a
/// fixed number of signed buckets: texts that share characters are close, as lexical search
/// would rank them. Deterministic across runs and platforms.
pub struct HashEmbedder {
    dim: usize,
    max_tokens: usize,
}

impl HashEmbedder {
    pub fn new(dim: usize) -> Self {
        assert!(dim >= 8, "a hash embedder needs at least 8 dimensions");
        Self { dim, max_tokens: 512 }
    }

    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
    }

    fn vector(&self, text: &str) -> Vec<f32> {
        let cs: Vec<char> = text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
        let mut v = vec![0f32; self.dim];
        let mut add = |key: &str, weight: f32| {
            let h = Self::fnv(key.as_bytes());
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[(h % self.dim as u64) as usize] += sign * weight;
        };
        for c in &cs {
            add(&c.to_string(), 1.0);
        }
        for w in cs.windows(2) {
            add(&format!("{}{}", w[0], w[1]), 1.5);
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v[0] = 1.0;
        }
        v
    }
}

impl Default for HashEmbedder {
    fn default() -> Self {
        Self::new(384)
    }
}

impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        "hash-embedder"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn count_tokens(&self, text: &str, _kind: EmbedKind) -> Result<usize> {
        Ok(text.chars().count() + 2)
    }

    fn embed(&self, texts: &[&str], kind: EmbedKind) -> Result<Embeddings> {
        let mut prompt_tokens = 0;
        let mut vectors = Vec::with_capacity(texts.len());
        for t in texts {
            let n = self.count_tokens(t, kind)?;
            if n > self.max_tokens {
                return Err(Error::ContextOverflow { model: self.model_id().into(), tokens: n, limit: self.max_tokens });
            }
            prompt_tokens += n;
            vectors.push(self.vector(t));
        }
        Ok(Embeddings { vectors, prompt_tokens })
    }
}

/// Plain mini-batch gradient descent on the same losses as the real trainer (softmax
/// cross-entropy with class weights, mean squared error), for tests of code that trains models
/// in a build without the tensor library. Deterministic; slower to converge than AdamW, so it
/// takes ten times the configured learning rate.
pub struct GradientDescentTrainer;

impl crate::LinearTrainer for GradientDescentTrainer {
    fn train(&self, x: &[f32], dim: usize, targets: crate::Targets<'_>, cfg: &crate::TrainConfig) -> Result<(crate::LinearModel, f32)> {
        use crate::Targets;
        let (rows, k) = targets.check(x, dim)?;
        let class_w = targets.class_weights(cfg.class_balance);
        let (mut w, mut b) = (vec![0f32; dim * k], vec![0f32; k]);
        let lr = (cfg.learning_rate * 10.0) as f32;
        let mut order: Vec<usize> = (0..rows).collect();
        let mut rng = crate::linear::SplitMix(cfg.seed);
        let mut last = 0f32;
        for _ in 0..cfg.epochs.max(1) {
            rng.shuffle(&mut order);
            let (mut total, mut seen) = (0f64, 0usize);
            for batch in order.chunks(cfg.batch_size.max(1)) {
                let (mut gw, mut gb) = (vec![0f32; dim * k], vec![0f32; k]);
                for &r in batch {
                    let xr = &x[r * dim..(r + 1) * dim];
                    let mut y = b.clone();
                    for (xi, wrow) in xr.iter().zip(w.chunks_exact(k)) {
                        y.iter_mut().zip(wrow).for_each(|(o, w)| *o += xi * w);
                    }
                    // d loss / d y for this row.
                    let grad: Vec<f32> = match &targets {
                        Targets::Classes { labels, .. } => {
                            let l = labels[r] as usize;
                            let m = y.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                            let e: Vec<f32> = y.iter().map(|v| (v - m).exp()).collect();
                            let s: f32 = e.iter().sum();
                            total -= f64::from(class_w[l] * (e[l] / s).max(1e-12).ln());
                            e.iter().enumerate().map(|(j, v)| class_w[l] * (v / s - if j == l { 1.0 } else { 0.0 })).collect()
                        }
                        Targets::Values { values, outputs } => {
                            let t = &values[r * outputs..(r + 1) * outputs];
                            total += y.iter().zip(t).map(|(a, b)| f64::from((a - b) * (a - b))).sum::<f64>() / k as f64;
                            y.iter().zip(t).map(|(a, b)| 2.0 * (a - b) / k as f32).collect()
                        }
                    };
                    for (xi, grow) in xr.iter().zip(gw.chunks_exact_mut(k)) {
                        grow.iter_mut().zip(&grad).for_each(|(g, d)| *g += xi * d);
                    }
                    gb.iter_mut().zip(&grad).for_each(|(g, d)| *g += d);
                }
                let n = batch.len() as f32;
                let decay = 1.0 - lr * cfg.weight_decay as f32;
                w.iter_mut().zip(&gw).for_each(|(w, g)| *w = *w * decay - lr * g / n);
                b.iter_mut().zip(&gb).for_each(|(b, g)| *b -= lr * g / n);
                seen += batch.len();
            }
            last = (total / seen.max(1) as f64) as f32;
        }
        Ok((crate::LinearModel::new(dim, k, w, b)?, last))
    }
}

/// The behaviour every [`Generator`] backend must show, run against the fake here, the local
/// engine with real weights and the remote client against a second server. Blocking: call it
/// from a plain thread, not an async worker.
pub fn generator_suite(g: &dyn Generator) {
    use crate::{collect_blocking, ErrorKind, GenerationParams};
    let ask = |text: &str, max_tokens: usize| {
        ChatRequest::new(
            vec![ChatMessage::new("system", "你是政务服务助手。"), ChatMessage::new("user", text)],
            GenerationParams { max_tokens, ..Default::default() },
        )
    };
    // A greedy answer ends within its budget, and the summary says how it ended.
    let first = collect_blocking(g.chat(ask("用一句话介绍12345热线。", 8)).expect("queued")).expect("generated");
    let c = &first.completion;
    assert!((1..=8).contains(&c.completion_tokens), "{c:?}");
    assert!(c.prompt_tokens > 0, "{c:?}");
    assert!(c.finish_reason == FinishReason::Stop || c.completion_tokens == 8, "{c:?}");
    assert!(!first.text.is_empty() || c.finish_reason == FinishReason::Stop);
    // Greedy is deterministic.
    let again = collect_blocking(g.chat(ask("用一句话介绍12345热线。", 8)).expect("queued")).expect("generated");
    assert_eq!(again.text, first.text, "greedy decoding must repeat itself");
    // Bad requests are refused before any work, by kind and with the parameter named.
    let mut hot = ask("你好", 4);
    hot.params.temperature = 5.0;
    match g.chat(hot) {
        Err(Error::InvalidParam { param, .. }) => assert_eq!(param, "temperature"),
        other => panic!("temperature 5 must be InvalidParam, got {:?}", other.map(|_| ())),
    }
    let mut none = ask("你好", 4);
    none.messages.clear();
    assert_eq!(g.chat(none).map(|_| ()).unwrap_err().kind(), ErrorKind::Invalid);
    // A prompt longer than the context is ContextOverflow (at once, or as the stream's error).
    let long = "政务服务".repeat(g.context_length());
    let overflow = g.chat(ask(&long, 4)).and_then(collect_blocking).map(|_| ()).unwrap_err();
    assert_eq!(overflow.kind(), ErrorKind::ContextOverflow, "{overflow}");
    // A client that goes away cancels its generation; the backend serves the next one.
    drop(g.chat(ask("请详细介绍居住证的办理流程。", 64)).expect("queued"));
    let after = collect_blocking(g.chat(ask("用一句话介绍12345热线。", 8)).expect("queued")).expect("generated");
    assert_eq!(after.text, first.text);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while g.queue_depth() > 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(g.queue_depth(), 0, "a cancelled generation must leave the queue");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{collect_blocking, GenerationParams};

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn hash_embedder_ranks_shared_wording_higher_and_refuses_overlong_text() {
        let e = HashEmbedder::default();
        let v = e.embed(&["居住证怎么办理", "居住证办理需要的材料", "机动车年检周期"], EmbedKind::Passage).unwrap().vectors;
        assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]) + 0.2);
        assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-5);
        assert_eq!(e.embed(&["居住证怎么办理"], EmbedKind::Query).unwrap().vectors[0], v[0]);
        let long = "办".repeat(600);
        assert_eq!(e.embed(&[long.as_str()], EmbedKind::Query).unwrap_err().kind(), crate::ErrorKind::ContextOverflow);
    }

    #[test]
    fn the_gradient_descent_trainer_learns_a_separable_problem() {
        use crate::{LinearTrainer, Targets, TrainConfig};
        let x: Vec<f32> = (0..100).flat_map(|i| [if i % 2 == 1 { 1.0 } else { -1.0 }, (i % 7) as f32 / 7.0 - 0.5]).collect();
        let y: Vec<u32> = (0..100).map(|i| (i % 2) as u32).collect();
        let (m, loss) = GradientDescentTrainer.train(&x, 2, Targets::Classes { labels: &y, classes: 2 }, &TrainConfig::default()).unwrap();
        assert!(loss < 0.2, "loss {loss}");
        let out = m.forward(&[1.0, 0.0, -1.0, 0.0]).unwrap();
        assert!(out[1] > out[0] && out[2] > out[3], "{out:?}");
    }

    #[test]
    fn fake_generator_passes_the_generator_suite() {
        generator_suite(&FakeGenerator::echo().with_context_length(256));
    }

    #[test]
    fn fake_generator_follows_its_script_and_the_engine_limits() {
        let g = FakeGenerator::new(|m| format!("答：{}", m.last().map(|m| m.content.as_str()).unwrap_or("")));
        let req = |text: &str, max_tokens: usize| ChatRequest::new(vec![ChatMessage::new("user", text)], GenerationParams { max_tokens, ..Default::default() });
        let out = collect_blocking(g.chat(req("路灯坏了", 64)).unwrap()).unwrap();
        assert_eq!(out.text, "答：路灯坏了");
        assert_eq!(out.completion.finish_reason, FinishReason::Stop);
        let out = collect_blocking(g.chat(req("路灯坏了", 3)).unwrap()).unwrap();
        assert_eq!((out.text.as_str(), out.completion.finish_reason), ("答：路", FinishReason::Length));
        assert_eq!(g.requests().len(), 2);

        let small = FakeGenerator::echo().with_context_length(10);
        assert_eq!(small.chat(req("这条消息比上下文还长得多", 4)).unwrap_err().kind(), crate::ErrorKind::ContextOverflow);
        let mut strict = req("短", 50);
        strict.fit_max_tokens = false;
        assert_eq!(small.chat(strict).unwrap_err().kind(), crate::ErrorKind::ContextOverflow);
        assert_eq!(collect_blocking(small.chat(req("短", 50)).unwrap()).unwrap().text, "短");
        let mut stopped = req("一二三。四五", 50);
        stopped.params.stop = vec!["。".into()];
        assert_eq!(collect_blocking(FakeGenerator::echo().chat(stopped).unwrap()).unwrap().text, "一二三");
    }
}
