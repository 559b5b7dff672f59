//! Drafting department replies (答复) to citizen messages: the fine-tuning task of the chat
//! model. Turns the message/official-reply history into chat examples with a fixed hold-out,
//! adds written out-of-scope questions that teach refusal and hand-off, and scores drafts
//! (character ROUGE-L against the official reply, format of the official style, refusals).

use serde::{Deserialize, Serialize};
use std::path::Path;

use super::features::fnv1a;
use zhengwu_core::ChatMessage;

/// The history file under a data folder with the layout of `../shared/data`.
pub const REPLIES_FILE: &str = "messages/teddy2020_messages_with_official_replies_2816.jsonl";
/// Written out-of-scope questions with refusal answers, under the knowledge base.
pub const OUT_OF_SCOPE_FILE: &str = "finetune/out_of_scope.jsonl";

/// System prompt of the reply drafter (the same in training, evaluation and serving).
pub const SYSTEM_PROMPT: &str = "你是12345政务服务便民热线的答复起草助手。请以承办部门的身份为群众留言起草正式答复：称呼并问候，说明留言已收悉，写明调查核实和处理情况，最后致谢。与政务服务无关的问题，说明不在受理范围，并引导拨打12345热线转人工服务。";

/// One message with its official reply.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplyCase {
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub reply: String,
}

fn id_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    })
}

/// An out-of-scope question and the refusal we want.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutOfScope {
    pub question: String,
    #[serde(default)]
    pub topic: String,
    pub answer: String,
}

/// Errors reading the task's files.
#[derive(Debug, thiserror::Error)]
pub enum RepliesError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} line {line}: {msg}")]
    Line { path: String, line: usize, msg: String },
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, RepliesError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| RepliesError::Io { path: path.display().to_string(), source })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(line).map_err(|e| RepliesError::Line {
            path: path.display().to_string(),
            line: i + 1,
            msg: e.to_string(),
        })?);
    }
    Ok(out)
}

/// Messages with a non-empty official reply, from `data_dir/REPLIES_FILE`.
pub fn load_cases(data_dir: &Path) -> Result<Vec<ReplyCase>, RepliesError> {
    let cases: Vec<ReplyCase> = read_lines(&data_dir.join(REPLIES_FILE))?;
    Ok(cases.into_iter().filter(|c| !c.reply.trim().is_empty() && !(c.detail.trim().is_empty() && c.title.trim().is_empty())).collect())
}

/// The written out-of-scope questions, from `kb_dir/OUT_OF_SCOPE_FILE`.
pub fn load_out_of_scope(kb_dir: &Path) -> Result<Vec<OutOfScope>, RepliesError> {
    read_lines(&kb_dir.join(OUT_OF_SCOPE_FILE))
}

/// The fixed hold-out: one key in ten, by a stable hash (the same on any machine and any data
/// folder of this layout).
pub fn is_heldout(key: &str) -> bool {
    fnv1a(key.as_bytes()) % 10 == 0
}

/// The out-of-scope questions are few, so one in four is held out.
pub fn is_heldout_question(question: &str) -> bool {
    fnv1a(question.trim().as_bytes()) % 4 == 0
}

/// Cut `text` to at most `max_chars` characters, marking the cut.
pub fn clip(text: &str, max_chars: usize) -> String {
    let t = text.trim();
    if t.chars().count() <= max_chars {
        t.to_string()
    } else {
        let mut s: String = t.chars().take(max_chars).collect();
        s.push('…');
        s
    }
}

/// The user turn for a message.
pub fn user_turn(title: &str, detail: &str, max_detail_chars: usize) -> String {
    format!("留言标题：{}\n留言内容：{}\n请起草答复。", title.trim(), clip(detail, max_detail_chars))
}

/// Chat messages (system, user and, when `reply` is given, assistant) for one case.
pub fn chat(title: &str, detail: &str, reply: Option<&str>, max_detail_chars: usize) -> Vec<ChatMessage> {
    let mut m = vec![ChatMessage::new("system", SYSTEM_PROMPT), ChatMessage::new("user", user_turn(title, detail, max_detail_chars))];
    if let Some(r) = reply {
        m.push(ChatMessage::new("assistant", r.trim()));
    }
    m
}

/// Chat messages for an out-of-scope question, asked as it is.
pub fn chat_out_of_scope(q: &OutOfScope, with_answer: bool) -> Vec<ChatMessage> {
    let mut m = vec![ChatMessage::new("system", SYSTEM_PROMPT), ChatMessage::new("user", q.question.trim())];
    if with_answer {
        m.push(ChatMessage::new("assistant", q.answer.trim()));
    }
    m
}

/// Chat messages for an out-of-scope question posted as a message (title and content), the
/// form every real message has: the drafter must refuse on the content, not on the form.
pub fn chat_out_of_scope_as_message(q: &OutOfScope, with_answer: bool) -> Vec<ChatMessage> {
    let title = clip(q.question.trim_end_matches(['。', '？', '?', '！', '!']), 24);
    chat(&title, &q.question, with_answer.then_some(q.answer.as_str()), usize::MAX)
}

/// The official replies name the citizen by the publisher's anonymised account id
/// (网友“A00023583”, “UU0000000”): ids no draft should copy. Removes them with their quotes.
pub fn strip_user_ids(text: &str) -> String {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r#"[“"「]?(?:UU|[A-Z])\d{6,}[”"」]?"#).expect("valid id pattern"));
    re.replace_all(text, "").into_owned()
}

/// The reply with account ids removed, or `None` when (almost) nothing is left: a reply of
/// fewer than 10 letters, digits or characters teaches nothing and cannot score a draft.
pub fn usable_reply(reply: &str) -> Option<String> {
    let r = strip_user_ids(reply).trim().to_string();
    (r.chars().filter(|c| c.is_alphanumeric()).count() >= 10).then_some(r)
}

/// How the training file is built.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub max_detail_chars: usize,
    /// Replies longer than this are left out of training (they would not fit `max_len`).
    pub max_reply_chars: usize,
    /// How many times each out-of-scope example is repeated (they are few next to the replies);
    /// the repeats alternate between the bare question and the question posted as a message.
    pub out_of_scope_repeat: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self { max_detail_chars: 240, max_reply_chars: 420, out_of_scope_repeat: 12 }
    }
}

/// What `prepare` produced.
pub struct Prepared {
    /// Training examples as JSONL lines (`{"messages": [...]}`).
    pub train: Vec<String>,
    pub train_replies: usize,
    pub train_out_of_scope: usize,
    pub skipped_long: usize,
    /// Replies with (almost) nothing left once account ids are removed.
    pub skipped_empty: usize,
    pub heldout_replies: usize,
    pub heldout_out_of_scope: usize,
}

/// Training lines from the history (hold-out excluded) and the out-of-scope questions.
pub fn prepare(cases: &[ReplyCase], oos: &[OutOfScope], opts: &PrepareOptions) -> Prepared {
    let mut p = Prepared { train: Vec::new(), train_replies: 0, train_out_of_scope: 0, skipped_long: 0, skipped_empty: 0, heldout_replies: 0, heldout_out_of_scope: 0 };
    let line = |msgs: Vec<ChatMessage>| serde_json::json!({ "messages": msgs }).to_string();
    for c in cases {
        if is_heldout(&c.id) {
            p.heldout_replies += 1;
            continue;
        }
        if c.reply.trim().chars().count() > opts.max_reply_chars {
            p.skipped_long += 1;
            continue;
        }
        let Some(reply) = usable_reply(&c.reply) else {
            p.skipped_empty += 1;
            continue;
        };
        p.train.push(line(chat(&c.title, &c.detail, Some(&reply), opts.max_detail_chars)));
        p.train_replies += 1;
    }
    for q in oos {
        if is_heldout_question(&q.question) {
            p.heldout_out_of_scope += 1;
            continue;
        }
        for k in 0..opts.out_of_scope_repeat.max(1) {
            let msgs = if k % 2 == 0 { chat_out_of_scope(q, true) } else { chat_out_of_scope_as_message(q, true) };
            p.train.push(line(msgs));
        }
        p.train_out_of_scope += 1;
    }
    p
}

/// Character-level ROUGE-L F1 (longest common subsequence), ignoring whitespace.
pub fn rouge_l_f1(candidate: &str, reference: &str) -> f64 {
    let a: Vec<char> = candidate.chars().filter(|c| !c.is_whitespace()).collect();
    let b: Vec<char> = reference.chars().filter(|c| !c.is_whitespace()).collect();
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut prev = vec![0u32; b.len() + 1];
    let mut cur = vec![0u32; b.len() + 1];
    for &ca in &a {
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = if ca == cb { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let lcs = prev[b.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let p = lcs / a.len() as f64;
    let r = lcs / b.len() as f64;
    2.0 * p * r / (p + r)
}

/// The parts of the official reply style a draft shows.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FormatCheck {
    /// Addresses and greets the citizen near the start (您好 / 网友 / 市民 ...).
    pub greeting: bool,
    /// Has a body of substance (at least 60 characters).
    pub body: bool,
    /// Ends with thanks, a formal closing, a contact channel or a date.
    pub closing: bool,
}

impl FormatCheck {
    pub fn all(&self) -> bool {
        self.greeting && self.body && self.closing
    }
}

pub fn format_check(text: &str) -> FormatCheck {
    let t = text.trim();
    let chars: Vec<char> = t.chars().collect();
    let head: String = chars.iter().take(40).collect();
    let tail: String = chars.iter().skip(chars.len().saturating_sub(80)).collect();
    let greeting = ["您好", "你好", "网友", "市民", "尊敬的", "同志"].iter().any(|w| head.contains(w));
    let closing = ["感谢", "谢谢", "特此", "此复", "联系电话", "咨询电话", "支持", "理解"].iter().any(|w| tail.contains(w))
        || regex::Regex::new(r"\d{4}年\d{1,2}月\d{1,2}日").map(|r| r.is_match(&tail)).unwrap_or(false);
    FormatCheck { greeting, body: chars.len() >= 60, closing }
}

/// A refusal with a hand-off: says it cannot help here and points to 12345 / a human.
pub fn is_refusal(text: &str) -> bool {
    let declines = ["不属于", "无法", "不能", "不在", "超出"].iter().any(|w| text.contains(w));
    let hands_off = ["12345", "人工", "工作人员", "相关部门", "120", "12348"].iter().any(|w| text.contains(w));
    declines && hands_off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rouge_l_counts_the_longest_common_subsequence() {
        assert!((rouge_l_f1("您好感谢", "您好感谢") - 1.0).abs() < 1e-9);
        // LCS of 您好谢谢 and 您好感谢谢 is 您好谢谢 (4): p = 1, r = 0.8.
        let f = rouge_l_f1("您好谢谢", "您好感谢谢");
        assert!((f - 2.0 * 0.8 / 1.8).abs() < 1e-9, "{f}");
        assert_eq!(rouge_l_f1("", "您好"), 0.0);
        assert_eq!(rouge_l_f1("甲乙", "丙丁"), 0.0);
    }

    #[test]
    fn format_check_sees_greeting_body_and_closing() {
        let good = format!("网友您好！您的留言已收悉。{}感谢您的关心和支持！", "经调查核实，该路段施工已于本月完成验收，".repeat(3));
        assert!(format_check(&good).all());
        let bare = "好的。";
        let f = format_check(bare);
        assert!(!f.greeting && !f.body && !f.closing);
    }

    #[test]
    fn refusal_needs_decline_and_hand_off() {
        assert!(is_refusal("这不属于受理范围，请拨打12345转人工。"));
        assert!(!is_refusal("无法回答。"));
        assert!(!is_refusal("请拨打12345。"));
    }

    #[test]
    fn user_ids_are_stripped_with_their_quotes() {
        assert_eq!(strip_user_ids("网友“A00023583”：您好！"), "网友：您好！");
        assert_eq!(strip_user_ids("网友\"UU0000000\"您好，A2区的问题"), "网友您好，A2区的问题");
        assert_eq!(strip_user_ids("A3区潇楚南路2019年"), "A3区潇楚南路2019年");
        assert_eq!(strip_user_ids("网友A00023583您好"), "网友您好");
    }

    #[test]
    fn out_of_scope_lines_come_in_both_forms() {
        let q = OutOfScope { question: "帮我写一首诗。".into(), topic: String::new(), answer: "不属于受理范围，请拨打12345转人工。".into() };
        let qs: Vec<OutOfScope> = (0..12).map(|i| OutOfScope { question: format!("第{i}个与政务无关的问题？"), ..q.clone() }).collect();
        let p = prepare(&[], &qs, &PrepareOptions::default());
        let kept = p.train_out_of_scope;
        assert!(kept > 0 && kept + p.heldout_out_of_scope == 12);
        assert_eq!(p.train.len(), kept * 12);
        assert_eq!(p.train.iter().filter(|l| l.contains("留言标题")).count(), kept * 6);
        let m = chat_out_of_scope_as_message(&q, true);
        assert!(m[1].content.contains("留言标题：帮我写一首诗") && m[1].content.contains("留言内容：帮我写一首诗。"));
        assert_eq!(m[2].content, q.answer);
    }

    #[test]
    fn prepare_holds_out_a_stable_tenth() {
        let cases: Vec<ReplyCase> = (0..200)
            .map(|i| ReplyCase { id: i.to_string(), title: "标题".into(), detail: "内容".into(), reply: "您好，您反映的问题已收悉，现答复如下。".into() })
            .collect();
        let p = prepare(&cases, &[], &PrepareOptions::default());
        assert_eq!(p.train_replies + p.heldout_replies, 200);
        assert!(p.heldout_replies > 5 && p.heldout_replies < 40, "{}", p.heldout_replies);
        assert_eq!(p.train.len(), p.train_replies);
        assert!(p.train[0].contains("\"assistant\""));
    }
}
