//! What a citizen's message is, decided before retrieval: a policy question, a
//! service request (诉求) for the hotline, a question about a ticket already filed, small talk,
//! or a request for help with something illegal; for questions, the aspect asked (材料, 时限,
//! 费用 …) and the 证件/事项 it is about.
//!
//! Why not one cosine: e5 places "居住证要多久" and "居住证每年都要弄吗" close together (the same
//! entity), so a similarity threshold cannot tell a FAQ that answers the question from one that
//! answers another aspect of the same 证件. Aspect and entity are read explicitly from word lists
//! a deployment edits (`knowledge-base/understanding.toml`, `synonyms.toml`), and the question /
//! request split, where wording varies most, by a small naive Bayes model over character n-grams
//! trained at start-up on written examples (`knowledge-base/intents.jsonl`).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What kind of message the citizen sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A policy or procedure question: answered from the knowledge base or refused.
    Question,
    /// Something to be handled by a department (repair, complaint, report, help): a 12345 ticket.
    ServiceRequest,
    /// The progress of a request already filed.
    Status,
    SmallTalk,
    /// Help with something illegal or harmful: refused with the reason.
    Harmful,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] =
        [MessageKind::Question, MessageKind::ServiceRequest, MessageKind::Status, MessageKind::SmallTalk, MessageKind::Harmful];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Question => "question",
            MessageKind::ServiceRequest => "service_request",
            MessageKind::Status => "status",
            MessageKind::SmallTalk => "small_talk",
            MessageKind::Harmful => "harmful",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A 证件/事项 of `synonyms.toml`: the names citizens use and the knowledge-base sources on it
/// (document stems like `juzhuzheng-shenling`, FAQ entries as `faq:ID`). An entity with no
/// sources is one the knowledge base knows it has nothing on (护照, 结婚登记 …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub name: String,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub docs: Vec<String>,
}

impl Entity {
    /// Whether a stored chunk's `doc_id` (`docs/x.md`, `faq/file.jsonl#id`) is one of this
    /// entity's sources.
    pub fn covers(&self, doc_id: &str) -> bool {
        self.docs.iter().any(|d| source_matches(d, doc_id))
    }
}

/// Whether `source` (a stem `x` or `faq:id`) names the stored document `doc_id`.
pub fn source_matches(source: &str, doc_id: &str) -> bool {
    match source.strip_prefix("faq:") {
        Some(id) => doc_id.rsplit_once('#').is_some_and(|(_, k)| k == id),
        None => {
            let file = doc_id.rsplit('/').next().unwrap_or(doc_id);
            !doc_id.contains('#') && file.rsplit_once('.').map_or(file, |(stem, _)| stem) == source
        }
    }
}

/// A colloquial variant and the knowledge base's own word for it.
#[derive(Debug, Clone, Deserialize)]
struct Term {
    canonical: String,
    variants: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct SynonymsFile {
    #[serde(default)]
    term: Vec<Term>,
    #[serde(default)]
    entity: Vec<Entity>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct KindCues {
    #[serde(default)]
    harmful: Vec<String>,
    /// The model's harmful reading counts only with one of these in the message.
    #[serde(default)]
    harmful_hints: Vec<String>,
    #[serde(default)]
    status: Vec<String>,
    #[serde(default)]
    small_talk: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AspectCues {
    #[serde(default)]
    asked: Vec<String>,
    #[serde(default)]
    stated: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct UnderstandingFile {
    #[serde(default)]
    kind: KindCues,
    #[serde(default)]
    aspect: AspectTable,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct AspectTable {
    #[serde(default)]
    order: Vec<String>,
    #[serde(flatten)]
    cues: HashMap<String, AspectCues>,
}

/// One labelled example of `intents.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct IntentExample {
    pub text: String,
    pub kind: String,
    #[serde(default)]
    pub aspect: String,
}

/// What was read from a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Understanding {
    pub kind: MessageKind,
    /// How sure the kind is: 1.0 for a cue-word decision, else the model's probability.
    pub kind_confidence: f32,
    /// `cue` (a word list decided) or `model`.
    pub kind_by: &'static str,
    /// The aspect asked (`understanding.toml` names: 材料, 时限 …); `None` for a general question.
    pub aspect: Option<String>,
    /// The 证件/事项 named, the longest name found first.
    pub entities: Vec<Entity>,
    /// Canonical words added to the search query for colloquial variants found (工钱 → 工资).
    pub expansions: Vec<String>,
}

impl Understanding {
    pub fn entity(&self) -> Option<&Entity> {
        self.entities.first()
    }
}

/// The word lists and the kind model.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    cues: KindCues,
    aspect_order: Vec<String>,
    aspects: HashMap<String, AspectCues>,
    terms: Vec<Term>,
    entities: Vec<Entity>,
    model: Option<NaiveBayes>,
    /// Where it was read from, for status and logs.
    pub source: Option<String>,
}

/// Lower case, full-width ASCII to half-width, whitespace removed: how cue words are matched.
pub fn normalise(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Particles and filler that say nothing about the topic (for [`Lexicon::residual_terms`]).
const FILLER: &str = "的了吗呢啊吧呀哦嘛么我你您他她它们想要请问一下这个那个是不有没在和与及或就都还也又再很太得地着过把被给让对向从到才该能会";

/// Everyday words that are not what a question is specifically about (where, now, if, my
/// family): removed before the residual check, so "我来这边才住了三个月" is not refused for
/// 这边 being absent from every document. Cut as whole words, before the filler characters.
const GENERIC_WORDS: &[&str] = &[
    "应该", "这边", "那边", "这里", "那里", "本地", "外地", "现在", "已经", "还是", "是否", "然后", "如果", "的话", "一般",
    "大概", "同志", "麻烦", "师傅", "老人", "家里", "孩子", "娃儿", "老伴", "儿子", "女儿", "老公", "老婆", "爸妈",
    "父母", "自己", "本人", "别人", "人家", "东西", "事情", "情况", "问题", "时候", "办理", "申请", "知道", "告诉",
    "谢谢", "您好", "你好", "车子", "上次", "之前", "以后", "以前", "今年", "去年", "明年", "这个", "那个", "什么", "怎么",
];

impl Lexicon {
    /// Read `understanding.toml`, `synonyms.toml` and `intents.jsonl` from `dir` (the
    /// `knowledge-base` folder). `understanding.toml` must exist; the other two may be absent
    /// (no expansion / entities; kinds from cue words alone, everything else a question).
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |name: &str| -> Result<Option<String>> {
            let p = dir.join(name);
            if !p.exists() {
                return Ok(None);
            }
            Ok(Some(fs_err::read_to_string(&p)?))
        };
        let u: UnderstandingFile = match read("understanding.toml")? {
            Some(t) => toml::from_str(&t).map_err(|e| Error::invalid(format!("{}/understanding.toml: {e}", dir.display())))?,
            None => return Err(Error::invalid(format!("{}/understanding.toml not found", dir.display()))),
        };
        let s: SynonymsFile = match read("synonyms.toml")? {
            Some(t) => toml::from_str(&t).map_err(|e| Error::invalid(format!("{}/synonyms.toml: {e}", dir.display())))?,
            None => SynonymsFile::default(),
        };
        let examples = match read("intents.jsonl")? {
            Some(t) => parse_examples(&t).map_err(|e| Error::invalid(format!("{}/intents.jsonl: {e}", dir.display())))?,
            None => Vec::new(),
        };
        let mut lex = Self::from_parts(u, s, &examples)?;
        lex.source = Some(dir.display().to_string());
        Ok(lex)
    }

    /// From the texts of the three files (tests, and `load`).
    pub fn from_texts(understanding: &str, synonyms: &str, intents: &str) -> Result<Self> {
        let u: UnderstandingFile = toml::from_str(understanding).map_err(|e| Error::invalid(format!("understanding.toml: {e}")))?;
        let s: SynonymsFile = toml::from_str(synonyms).map_err(|e| Error::invalid(format!("synonyms.toml: {e}")))?;
        let examples = parse_examples(intents).map_err(|e| Error::invalid(format!("intents.jsonl: {e}")))?;
        Self::from_parts(u, s, &examples)
    }

    fn from_parts(u: UnderstandingFile, s: SynonymsFile, examples: &[IntentExample]) -> Result<Self> {
        for name in &u.aspect.order {
            if !u.aspect.cues.contains_key(name) {
                return Err(Error::invalid(format!("understanding.toml: aspect `{name}` is in `order` but has no table")));
            }
        }
        let norm = |v: Vec<String>| v.into_iter().map(|w| normalise(&w)).filter(|w| !w.is_empty()).collect::<Vec<_>>();
        let cues = KindCues {
            harmful: norm(u.kind.harmful),
            harmful_hints: norm(u.kind.harmful_hints),
            status: norm(u.kind.status),
            small_talk: norm(u.kind.small_talk),
        };
        let aspects = u
            .aspect
            .cues
            .into_iter()
            .map(|(k, c)| (k, AspectCues { asked: norm(c.asked), stated: norm(c.stated) }))
            .collect();
        let terms = s
            .term
            .into_iter()
            .map(|t| Term { canonical: t.canonical.trim().to_string(), variants: norm(t.variants) })
            .collect();
        let entities = s.entity.into_iter().map(|e| Entity { names: norm(e.names), ..e }).collect();
        let model = if examples.is_empty() { None } else { Some(NaiveBayes::train(examples)?) };
        Ok(Self { cues, aspect_order: u.aspect.order, aspects, terms, entities, model, source: None })
    }

    /// The same lists without entities: for a knowledge base other than the one `synonyms.toml`
    /// describes (the evaluation corpora), where its document names mean nothing.
    pub fn without_entities(&self) -> Self {
        Self { entities: Vec::new(), ..self.clone() }
    }

    pub fn entities(&self) -> &[Entity] {
        &self.entities
    }

    /// The aspects in priority order.
    pub fn aspect_names(&self) -> &[String] {
        &self.aspect_order
    }

    /// Read one message.
    pub fn understand(&self, text: &str) -> Understanding {
        let t = normalise(text);
        let (kind, kind_confidence, kind_by) = self.kind_of(&t);
        Understanding {
            kind,
            kind_confidence,
            kind_by,
            aspect: self.aspect_asked(&t),
            entities: self.entities_in(&t),
            expansions: self.expansions(&t),
        }
    }

    fn kind_of(&self, t: &str) -> (MessageKind, f32, &'static str) {
        let has = |list: &[String]| list.iter().any(|w| t.contains(w.as_str()));
        if has(&self.cues.harmful) {
            return (MessageKind::Harmful, 1.0, "cue");
        }
        if has(&self.cues.status) {
            return (MessageKind::Status, 1.0, "cue");
        }
        // Small talk: what is left without greeting words and punctuation is (almost) nothing.
        let mut rest = t.to_string();
        let mut greeted = false;
        let mut words: Vec<&String> = self.cues.small_talk.iter().collect();
        words.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
        for w in words {
            if rest.contains(w.as_str()) {
                greeted = true;
                rest = rest.replace(w.as_str(), "");
            }
        }
        let left = rest.chars().filter(|c| c.is_alphanumeric()).count();
        if (greeted && left <= 2) || t.chars().filter(|c| c.is_alphanumeric()).count() == 0 {
            return (MessageKind::SmallTalk, 1.0, "cue");
        }
        match &self.model {
            Some(m) => {
                let (k, p) = m.predict(t);
                // Cue words decide the clear cases above; the model takes the rest. Its harmful,
                // status and small-talk readings count only when it is sure (a question misread
                // as harmful would be refused insultingly; tuned on the dev part of the citizen
                // set); otherwise the message is a question, the safe default.
                match k {
                    MessageKind::ServiceRequest | MessageKind::Question => (k, p, "model"),
                    MessageKind::Harmful if p >= 0.7 && has(&self.cues.harmful_hints) => (k, p, "model"),
                    MessageKind::Status | MessageKind::SmallTalk if p >= 0.6 => (k, p, "model"),
                    _ => (MessageKind::Question, p, "model"),
                }
            }
            None => (MessageKind::Question, 0.0, "default"),
        }
    }

    /// The first aspect (in `order`) whose question cue occurs in `t` (normalised).
    fn aspect_asked(&self, t: &str) -> Option<String> {
        self.aspect_order
            .iter()
            .find(|a| self.aspects.get(*a).is_some_and(|c| c.asked.iter().any(|w| t.contains(w.as_str()))))
            .cloned()
    }

    /// Entities named in `t`, longest name first; a name inside a longer matched name is not
    /// counted again (社保 inside 社保卡).
    fn entities_in(&self, t: &str) -> Vec<Entity> {
        let mut found: Vec<(usize, usize, &Entity)> = Vec::new(); // (name length, first position, entity)
        for e in &self.entities {
            let best = e.names.iter().filter_map(|n| t.find(n.as_str()).map(|at| (n.len(), at))).max_by_key(|(len, _)| *len);
            if let Some((len, at)) = best {
                found.push((len, at, e));
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut taken: Vec<(usize, usize)> = Vec::new();
        let mut out = Vec::new();
        for (len, at, e) in found {
            if taken.iter().any(|&(s, l)| at >= s && at + len <= s + l) {
                continue;
            }
            taken.push((at, len));
            out.push(e.clone());
        }
        out
    }

    fn expansions(&self, t: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for term in &self.terms {
            if term.variants.iter().any(|v| t.contains(v.as_str())) && !t.contains(&normalise(&term.canonical)) && !out.contains(&term.canonical) {
                out.push(term.canonical.clone());
            }
        }
        out
    }

    /// The search query: the message with the canonical words of its colloquial variants added.
    pub fn expand_query(&self, text: &str, u: &Understanding) -> String {
        if u.expansions.is_empty() {
            text.to_string()
        } else {
            format!("{text} {}", u.expansions.join(" "))
        }
    }

    /// Whether `passage` states `aspect`: one of its `stated` words, or for 时限 / 费用 / 电话 a
    /// number of the right shape (15日, 20元, a 5+ digit hotline).
    pub fn states(&self, aspect: &str, passage: &str) -> bool {
        self.states_counting(aspect, passage, true)
    }

    /// [`Lexicon::states`] without counting the aspect's own name: "材料齐全的，…十五日内制发"
    /// names 材料 but lists none, so it does not answer what to bring. For a text written for
    /// another question (a FAQ entry on another aspect), where a passing mention is likely.
    pub fn states_beyond_name(&self, aspect: &str, passage: &str) -> bool {
        self.states_counting(aspect, passage, false)
    }

    fn states_counting(&self, aspect: &str, passage: &str, count_name: bool) -> bool {
        let p = normalise(&crate::grounding::normalise_numbers(passage));
        let words = self
            .aspects
            .get(aspect)
            .is_some_and(|c| c.stated.iter().any(|w| (count_name || w != aspect) && p.contains(w.as_str())));
        words
            || match aspect {
                "时限" => has_number_before(&p, &["个工作日", "工作日", "日", "天", "个月", "小时", "分钟"]),
                "费用" => has_number_before(&p, &["元", "块"]),
                "电话" => has_digit_run(&p, 5),
                _ => false,
            }
    }

    /// The aspects (in `order`) that `passages` state, for "知识库里有…，但没有…".
    pub fn aspects_stated<'a>(&self, passages: impl IntoIterator<Item = &'a str> + Clone) -> Vec<String> {
        self.aspect_order.iter().filter(|a| passages.clone().into_iter().any(|p| self.states(a, p))).cloned().collect()
    }

    /// The words of a question that say what it is about beyond its entity and aspect: the
    /// character bigrams left after removing entity names, aspect and kind cue words, and
    /// filler. "社保卡密码忘了怎么重置" leaves 密码/忘了/重置: if the sources hold none of
    /// them, they answer another question about the same card.
    pub fn residual_terms(&self, text: &str, u: &Understanding) -> Vec<String> {
        let mut t = normalise(text);
        let mut cut: Vec<&str> = Vec::new();
        for e in &u.entities {
            cut.extend(e.names.iter().map(String::as_str));
        }
        for c in self.aspects.values() {
            cut.extend(c.asked.iter().map(String::as_str));
        }
        cut.extend(self.cues.small_talk.iter().map(String::as_str));
        cut.extend(GENERIC_WORDS.iter().copied());
        for term in &self.terms {
            cut.extend(term.variants.iter().map(String::as_str));
        }
        cut.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
        for w in cut {
            if w.chars().count() >= 2 {
                t = t.replace(w, "|");
            }
        }
        let kept: String = t.chars().map(|c| if c.is_alphanumeric() && !FILLER.contains(c) { c } else { '|' }).collect();
        let mut out: Vec<String> = Vec::new();
        for piece in kept.split('|') {
            let cs: Vec<char> = piece.chars().collect();
            for w in cs.windows(2) {
                // Numbers are facts the answer may state in other forms (第6年 / 六年).
                if w.iter().any(|c| c.is_ascii_digit()) {
                    continue;
                }
                let b: String = w.iter().collect();
                if !out.contains(&b) {
                    out.push(b);
                }
            }
        }
        out
    }

    /// The kind model's prediction for labelled examples (for the eval's confusion table).
    pub fn model_kind(&self, text: &str) -> Option<(MessageKind, f32)> {
        self.model.as_ref().map(|m| m.predict(&normalise(text)))
    }
}

fn parse_examples(text: &str) -> std::result::Result<Vec<IntentExample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: IntentExample = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if MessageKind::parse(&e.kind).is_none() {
            return Err(format!("line {}: unknown kind `{}`", i + 1, e.kind));
        }
        out.push(e);
    }
    Ok(out)
}

/// Whether `p` holds a digit run followed by one of `units` (after numerals were normalised).
fn has_number_before(p: &str, units: &[&str]) -> bool {
    let cs: Vec<char> = p.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        if cs[i].is_ascii_digit() {
            let mut j = i;
            while j < cs.len() && (cs[j].is_ascii_digit() || cs[j] == '.') {
                j += 1;
            }
            let rest: String = cs[j..cs.len().min(j + 4)].iter().collect();
            if units.iter().any(|u| rest.starts_with(u)) {
                return true;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    false
}

fn has_digit_run(p: &str, min: usize) -> bool {
    let mut run = 0;
    for c in p.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= min {
            return true;
        }
    }
    false
}

/// Multinomial naive Bayes over character unigrams and bigrams, with uniform class priors (the
/// written examples are not in the proportions citizens send) and add-one smoothing.
#[derive(Debug, Clone)]
struct NaiveBayes {
    classes: Vec<MessageKind>,
    /// Per class: log P(feature | class) for seen features, and the log probability of an unseen one.
    log_probs: Vec<HashMap<String, f32>>,
    unseen: Vec<f32>,
}

fn features(t: &str) -> Vec<String> {
    let cs: Vec<char> = t.chars().filter(|c| c.is_alphanumeric()).collect();
    let mut f: Vec<String> = cs.iter().map(|c| c.to_string()).collect();
    f.extend(cs.windows(2).map(|w| w.iter().collect::<String>()));
    f
}

impl NaiveBayes {
    fn train(examples: &[IntentExample]) -> Result<Self> {
        let mut counts: HashMap<MessageKind, HashMap<String, f32>> = HashMap::new();
        let mut vocab: std::collections::HashSet<String> = std::collections::HashSet::new();
        for e in examples {
            let k = MessageKind::parse(&e.kind).ok_or_else(|| Error::invalid(format!("unknown kind `{}`", e.kind)))?;
            let c = counts.entry(k).or_default();
            for f in features(&normalise(&e.text)) {
                *c.entry(f.clone()).or_default() += 1.0;
                vocab.insert(f);
            }
        }
        let v = vocab.len() as f32;
        let mut classes = Vec::new();
        let mut log_probs = Vec::new();
        let mut unseen = Vec::new();
        for k in MessageKind::ALL {
            let Some(c) = counts.get(&k) else { continue };
            let total: f32 = c.values().sum();
            classes.push(k);
            log_probs.push(c.iter().map(|(f, n)| (f.clone(), ((n + 1.0) / (total + v)).ln())).collect());
            unseen.push((1.0 / (total + v)).ln());
        }
        Ok(Self { classes, log_probs, unseen })
    }

    /// The most likely class and its posterior (features scaled by 1/√n so long rambling
    /// messages do not get absurdly confident posteriors).
    fn predict(&self, t: &str) -> (MessageKind, f32) {
        let f = features(t);
        let scale = 1.0 / (f.len().max(1) as f32).sqrt();
        let scores: Vec<f32> = (0..self.classes.len())
            .map(|i| f.iter().map(|x| *self.log_probs[i].get(x).unwrap_or(&self.unseen[i])).sum::<f32>() * scale)
            .collect();
        let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let z: f32 = exp.iter().sum();
        let (best, p) = exp.iter().enumerate().fold((0, 0.0f32), |acc, (i, &e)| if e > acc.1 { (i, e) } else { acc });
        (self.classes[best], p / z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = r#"
[kind]
harmful = ["伪造", "假证"]
status = ["我反映的", "工单号"]
small_talk = ["你好", "谢谢"]
[aspect]
order = ["费用", "时限", "有效期", "地点", "流程"]
[aspect."费用"]
asked = ["多少钱", "收费"]
stated = ["收费", "免费", "不收取"]
[aspect."时限"]
asked = ["多久", "几天"]
stated = ["日内"]
[aspect."有效期"]
asked = ["每年", "有效期"]
stated = ["每年", "签注"]
[aspect."地点"]
asked = ["哪里", "去哪"]
stated = ["派出所"]
[aspect."流程"]
asked = ["怎么办"]
stated = ["申请"]
"#;
    const S: &str = r#"
[[term]]
canonical = "工资"
variants = ["工钱"]
[[entity]]
name = "社保卡"
names = ["社保卡", "社报卡"]
docs = ["shebaoka-shenling", "faq:shebaoka-guashi"]
[[entity]]
name = "社会保险"
names = ["社保"]
docs = ["shebao-danwei-canbao"]
[[entity]]
name = "护照"
names = ["护照"]
docs = []
"#;
    const I: &str = r#"{"text": "路灯坏了没人修", "kind": "service_request", "aspect": ""}
{"text": "楼下噪音太吵了", "kind": "service_request", "aspect": ""}
{"text": "井盖丢了很危险", "kind": "service_request", "aspect": ""}
{"text": "居住证怎么办理", "kind": "question", "aspect": "流程"}
{"text": "办身份证要多久", "kind": "question", "aspect": "时限"}
{"text": "社保卡在哪里补办", "kind": "question", "aspect": "地点"}
"#;

    fn lex() -> Lexicon {
        Lexicon::from_texts(U, S, I).unwrap()
    }

    #[test]
    fn cue_words_decide_harm_status_and_small_talk_before_the_model() {
        let l = lex();
        assert_eq!(l.understand("能帮我伪造一个居住证明吗").kind, MessageKind::Harmful);
        assert_eq!(l.understand("我反映的路灯修了没有").kind, MessageKind::Status);
        assert_eq!(l.understand("你好！").kind, MessageKind::SmallTalk);
        assert_eq!(l.understand("谢谢 ").kind, MessageKind::SmallTalk);
        let q = l.understand("你好，社保卡在哪里补办");
        assert_eq!(q.kind, MessageKind::Question, "a greeting before a question is a question");
        assert_eq!(l.understand("？？").kind, MessageKind::SmallTalk);
    }

    #[test]
    fn the_model_separates_requests_from_questions() {
        let l = lex();
        let r = l.understand("我家门口路灯坏了好几天");
        assert_eq!((r.kind, r.kind_by), (MessageKind::ServiceRequest, "model"));
        assert_eq!(l.understand("居住证要怎么办理").kind, MessageKind::Question);
    }

    #[test]
    fn aspect_entity_and_expansion_are_read() {
        let l = lex();
        let u = l.understand("社报卡丢了去哪 补");
        assert_eq!(u.aspect.as_deref(), Some("地点"));
        assert_eq!(u.entities.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["社保卡"], "社保 inside 社保卡 is not a second entity");
        let u = l.understand("居住证每年都要弄吗，收费吗");
        assert_eq!(u.aspect.as_deref(), Some("费用"), "order decides between two aspects");
        assert_eq!(l.understand("老板欠工钱").expansions, ["工资"]);
        assert!(l.understand("办护照").entity().is_some_and(|e| e.docs.is_empty()));
        assert_eq!(l.understand("随便问问").aspect, None);
    }

    #[test]
    fn passages_state_aspects_by_word_or_number() {
        let l = lex();
        assert!(l.states("时限", "材料齐全的，一般在十五个工作日办好"), "a number with a time unit");
        assert!(l.states("时限", "十五日内制发"));
        assert!(!l.states("时限", "向派出所申请"));
        assert!(l.states("费用", "工本费二十元"));
        assert!(l.states("费用", "首次申领不收取工本费"));
        assert_eq!(l.aspects_stated(["向派出所申请，每年签注一次"]), ["有效期", "地点", "流程"]);
    }

    #[test]
    fn residual_terms_keep_what_the_question_is_about() {
        let l = lex();
        let q = "社保卡密码忘了怎么办";
        let r = l.residual_terms(q, &l.understand(q));
        assert!(r.contains(&"密码".to_string()), "{r:?}");
        assert!(!r.iter().any(|b| b.contains('社')), "{r:?}");
    }

    #[test]
    fn sources_match_stored_document_ids() {
        assert!(source_matches("juzhuzheng-shenling", "docs/juzhuzheng-shenling.md"));
        assert!(!source_matches("juzhuzheng", "docs/juzhuzheng-shenling.md"));
        assert!(source_matches("faq:juzhuzheng-duojiu", "faq/changjian-wenti.jsonl#juzhuzheng-duojiu"));
        assert!(!source_matches("juzhuzheng-duojiu", "faq/changjian-wenti.jsonl#juzhuzheng-duojiu"));
    }

    #[test]
    fn the_shipped_lists_read_everyday_messages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../knowledge-base");
        let l = Lexicon::load(&dir).expect("knowledge-base word lists");
        let kind = |q: &str| l.understand(q).kind;
        // A recipe is not a crime because "怎么做" is also how forgers ask.
        assert_eq!(kind("红烧肉怎么做才好吃"), MessageKind::Question);
        assert_eq!(kind("能不能帮我做个假的租房合同"), MessageKind::Harmful);
        // "查不到" is how evaders ask ("让他们查不到") and how citizens complain ("网上查不到").
        assert_ne!(kind("孩子明年上一年级，房子划到哪个小学了，网上怎么都查不到"), MessageKind::Harmful);
        assert_eq!(kind("有没有办法让税务局查不到我这笔收入"), MessageKind::Harmful);
        assert_eq!(kind("我家楼下的路灯坏了三天了，晚上黑漆漆的"), MessageKind::ServiceRequest);
        assert_eq!(kind("居住证要带哪些材料"), MessageKind::Question);
        assert_eq!(l.understand("居住证要带哪些材料").aspect.as_deref(), Some("材料"));
        assert_eq!(l.understand("老板欠了我两个月工钱").expansions.first().map(String::as_str), Some("工资"));
    }

    #[test]
    fn a_bad_file_is_a_clear_error() {
        let e = Lexicon::from_texts("[aspect]\norder = [\"费用\"]\n", "", "").unwrap_err().to_string();
        assert!(e.contains("`费用`"), "{e}");
        let e = Lexicon::from_texts(U, S, "{\"text\": \"x\", \"kind\": \"chat\"}").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("chat"), "{e}");
    }
}
