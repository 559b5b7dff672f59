//! Form filling with the chat model: the model reads the citizen's words (personal data masked)
//! and returns the ticket fields as JSON, checked against [`LlmForm`]; invalid JSON is retried
//! once with the parse error. Values that should be quoted from the text (district, address,
//! people, time) are kept only when they occur in it, and carry that span as provenance; the
//! rule-based [`FormFiller`](crate::intel::form::FormFiller) fills contact details, which the
//! model never sees.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zhengwu_core::{ChatMessage, ChatRequest, GenerationParams, Generator};

use crate::intel::features::head_chars;
use crate::intel::form::{FormDraft, Provenance};
use crate::intel::IntelError;
use crate::tickets::model::RequestType;

/// The JSON the model must produce (every field a string; empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmForm {
    pub request_type: String,
    pub district: String,
    pub address: String,
    pub time: String,
    pub people: String,
    pub summary: String,
}

/// What the model returned, and whether it was usable.
#[derive(Debug, Clone, Serialize)]
pub struct LlmOutcome {
    pub form: Option<LlmForm>,
    /// Attempts made (1, or 2 after invalid JSON).
    pub attempts: usize,
    pub raw: String,
    pub error: Option<String>,
    pub model: String,
}

const SYSTEM: &str = "你是12345政务服务热线的工单录入员。阅读市民的诉求，只输出一个JSON对象，不要输出任何其他文字。\
字段：request_type（咨询、求助、投诉、举报、建议 五者之一），district（诉求发生地所在的区或县，照原文写，如“东城区”“A3区”），\
address（原文中的详细地址），time（原文中事件发生的时间），people（原文中涉及的单位或人员），summary（不超过30字的诉求摘要）。\
原文没有的信息填空字符串。";

/// The first `{...}` object in `text`, parsed.
pub fn parse_form(text: &str) -> Result<LlmForm, String> {
    let start = text.find('{').ok_or("no JSON object in the output")?;
    let end = text.rfind('}').ok_or("the JSON object is not closed")?;
    if end < start {
        return Err("the JSON object is not closed".into());
    }
    let v: serde_json::Value = serde_json::from_str(&text[start..=end]).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    // Every field must be a string when present (numbers and lists of strings are turned into text).
    let mut f = LlmForm::default();
    for (k, val) in obj {
        let s = match val {
            serde_json::Value::String(s) => s.trim().to_string(),
            serde_json::Value::Null => String::new(),
            serde_json::Value::Number(n) => n.to_string(),
            // A list of names (the model's habit for `people`) is joined.
            serde_json::Value::Array(items) if items.iter().all(|x| x.is_string()) => {
                items.iter().filter_map(|x| x.as_str()).map(str::trim).collect::<Vec<_>>().join("、")
            }
            other => return Err(format!("field {k} must be a string, got {other}")),
        };
        match k.as_str() {
            "request_type" => f.request_type = s,
            "district" => f.district = s,
            "address" => f.address = s,
            "time" => f.time = s,
            "people" => f.people = s,
            "summary" => f.summary = s,
            _ => {}
        }
    }
    Ok(f)
}

pub fn request_type_of(label: &str) -> Option<RequestType> {
    match label.trim() {
        "咨询" => Some(RequestType::Consult),
        "求助" => Some(RequestType::Help),
        "投诉" => Some(RequestType::Complaint),
        "举报" => Some(RequestType::Report),
        "建议" | "建言" => Some(RequestType::Suggestion),
        _ => None,
    }
}

async fn generate(g: &Arc<dyn Generator>, messages: &[ChatMessage]) -> Result<String, IntelError> {
    let params = GenerationParams { max_tokens: 200, temperature: 0.0, stop: vec!["}".into()], ..Default::default() };
    let request = ChatRequest::new(messages.to_vec(), params).with_deadline(std::time::Instant::now() + std::time::Duration::from_secs(120));
    let stream = g.chat(request).map_err(|e| IntelError::Model(e.to_string()))?;
    let mut out = zhengwu_core::collect(stream).await.map_err(|e| IntelError::Model(e.to_string()))?.text;
    // The stop string is not part of the output: close the object again.
    if out.contains('{') && !out.trim_end().ends_with('}') {
        out.push('}');
    }
    Ok(out)
}

/// Ask the model for the form of `text` (at most 400 characters of it, personal data masked).
pub async fn ask(g: Arc<dyn Generator>, text: &str) -> Result<LlmOutcome, IntelError> {
    let masked = crate::redact::for_prompt(text);
    let mut messages = vec![ChatMessage::new("system", SYSTEM), ChatMessage::new("user", format!("诉求：{}", head_chars(&masked, 400)))];
    let mut raw = generate(&g, &messages).await?;
    match parse_form(&raw) {
        Ok(f) => Ok(LlmOutcome { form: Some(f), attempts: 1, raw, error: None, model: g.model_id().to_string() }),
        Err(e) => {
            messages.push(ChatMessage::new("assistant", raw.clone()));
            messages.push(ChatMessage::new("user", format!("你的输出不是合法的JSON对象（{e}）。请只输出一个JSON对象。")));
            raw = generate(&g, &messages).await?;
            match parse_form(&raw) {
                Ok(f) => Ok(LlmOutcome { form: Some(f), attempts: 2, raw, error: None, model: g.model_id().to_string() }),
                Err(e2) => Ok(LlmOutcome { form: None, attempts: 2, raw, error: Some(e2), model: g.model_id().to_string() }),
            }
        }
    }
}

/// Character span of `needle` in `text`, if it occurs.
fn span(text: &str, needle: &str) -> Option<String> {
    let i = text.find(needle)?;
    let start = text[..i].chars().count();
    Some(format!("{start}..{}", start + needle.chars().count()))
}

/// Merge the model's form into a rule-based draft: the model fills what the rules left empty
/// (quoted fields only when grounded in the text); the summary comes from the model when it gave
/// one. Returns the names of the fields it filled.
pub fn merge(draft: &mut FormDraft, text: &str, out: &LlmOutcome) -> Vec<String> {
    let mut filled = Vec::new();
    let Some(f) = &out.form else { return filled };
    let prov = |value: &str| Provenance {
        source: "model",
        by: out.model.clone(),
        evidence: span(text, value).map(|s| format!("原文 {s}：{value}")),
        confidence: None,
    };
    let t = &mut draft.ticket;
    if t.address.district.is_none() && !f.district.is_empty() && text.contains(f.district.as_str()) {
        t.address.district = Some(f.district.clone());
        draft.provenance.insert("address.district".into(), prov(&f.district));
        filled.push("address.district".into());
    }
    if t.address.text.is_empty() && !f.address.is_empty() && text.contains(f.address.as_str()) {
        t.address.text = f.address.chars().take(200).collect();
        draft.provenance.insert("address.text".into(), prov(&f.address));
        filled.push("address.text".into());
    }
    if !f.summary.is_empty() {
        t.summary = f.summary.chars().take(60).collect();
        draft.provenance.insert("summary".into(), Provenance { source: "model", by: out.model.clone(), evidence: None, confidence: None });
        filled.push("summary".into());
    }
    // Not ticket fields, but shown to the agent with where they were read.
    for (name, v) in [("time", &f.time), ("people", &f.people)] {
        if !v.is_empty() && text.contains(v.as_str()) {
            draft.provenance.insert(name.into(), prov(v));
            filled.push(name.into());
        }
    }
    filled
}
