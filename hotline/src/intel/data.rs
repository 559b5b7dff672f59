//! Readers for the evaluation/training data layout (`../shared/data` or any folder shaped like
//! it): each returns labelled [`Example`]s and says how many rows it skipped and why.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::intel::artifact::{Example, Target};
use crate::intel::departments::Catalogue;
use crate::intel::IntelError;

pub const TEDDY: &str = "classify/teddy2020_messages.jsonl";
pub const TEDDY_TAXONOMY: &str = "classify/teddy2020_taxonomy.jsonl";
pub const MSGABENCH: &str = "classify/msgabench_citizen_messages.jsonl";
pub const GOV_QA: &str = "dispatch/msgabench_gov_qa.jsonl";
pub const NLU_DEPT: &str = "dispatch/msgabench_nlu_dept.jsonl";
pub const STC3: &str = "quality/stc3_dialogues.jsonl";
pub const VOTES: &str = "messages/teddy2020_messages_with_votes_4326.jsonl";

/// Examples read from one file.
#[derive(Debug, Default)]
pub struct Loaded {
    pub examples: Vec<Example>,
    /// Rows without a usable text or label.
    pub skipped: usize,
    /// Line-numbered reasons for the first few skipped rows.
    pub notes: Vec<String>,
    /// Rows that only ever train (descriptions of the labels), never calibrate or score.
    pub train_only: Vec<Example>,
}

impl Loaded {
    fn skip(&mut self, line: usize, why: impl Into<String>) {
        self.skipped += 1;
        if self.notes.len() < 5 {
            self.notes.push(format!("line {line}: {}", why.into()));
        }
    }
}

/// Each JSON object of a JSONL file with its 1-based line number; a line that is not a JSON
/// object is an error naming the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<(usize, serde_json::Map<String, Value>)>, IntelError> {
    let text = fs_err::read_to_string(path).map_err(|e| IntelError::Data(e.to_string()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => out.push((i + 1, m)),
            Ok(_) => return Err(IntelError::Data(format!("{}:{}: not a JSON object", path.display(), i + 1))),
            Err(e) => return Err(IntelError::Data(format!("{}:{}: {e}", path.display(), i + 1))),
        }
    }
    Ok(out)
}

fn s<'a>(m: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).map(str::trim).unwrap_or("")
}

pub fn path(dir: &Path, rel: &str) -> PathBuf {
    dir.join(rel)
}

/// Teddy Cup messages: title + detail → first-level category.
pub fn teddy(dir: &Path) -> Result<Loaded, IntelError> {
    let mut l = Loaded::default();
    for (line, m) in read_jsonl(&path(dir, TEDDY))? {
        let text = format!("{}\n{}", s(&m, "title"), s(&m, "detail"));
        let label = s(&m, "label_l1");
        if text.trim().is_empty() || label.is_empty() {
            l.skip(line, "no text or no label_l1");
            continue;
        }
        l.examples.push(Example { text: text.trim().to_string(), target: Target::Class(label.to_string()) });
    }
    // The taxonomy names 15 first-level labels; the messages use 7. Describe only those, or
    // the model learns classes that never occur.
    let used: std::collections::HashSet<String> = l.examples.iter().filter_map(|e| if let Target::Class(c) = &e.target { Some(c.clone()) } else { None }).collect();
    l.train_only = teddy_taxonomy(dir)?.into_iter().filter(|e| matches!(&e.target, Target::Class(c) if used.contains(c))).collect();
    Ok(l)
}

/// The Teddy taxonomy as label descriptions, one row per level-2 heading ("l2：l3、l3…" → l1);
/// none when the file is missing.
pub fn teddy_taxonomy(dir: &Path) -> Result<Vec<Example>, IntelError> {
    let file = path(dir, TEDDY_TAXONOMY);
    if !file.exists() {
        return Ok(Vec::new());
    }
    let mut by_l2: std::collections::BTreeMap<(String, String), Vec<String>> = std::collections::BTreeMap::new();
    for (_, m) in read_jsonl(&file)? {
        if !s(&m, "l1").is_empty() {
            by_l2.entry((s(&m, "l1").to_string(), s(&m, "l2").to_string())).or_default().push(s(&m, "l3").to_string());
        }
    }
    Ok(by_l2.into_iter().map(|((l1, l2), l3)| Example { text: format!("{l2}：{}", l3.join("、")), target: Target::Class(l1) }).collect())
}


/// MSGABench citizen messages: message → `field` (`type` or `domain`); blank labels skipped.
pub fn msgabench(dir: &Path, field: &str) -> Result<Loaded, IntelError> {
    let mut l = Loaded::default();
    for (line, m) in read_jsonl(&path(dir, MSGABENCH))? {
        let (text, label) = (s(&m, "message"), s(&m, field));
        if text.is_empty() || label.is_empty() {
            l.skip(line, format!("no message or no {field}"));
            continue;
        }
        l.examples.push(Example { text: text.to_string(), target: Target::Class(label.to_string()) });
    }
    Ok(l)
}

/// Dispatch history: question → handling department, resolved to a catalogue id (a label listing
/// several departments with `、` takes the first as lead). Labels the catalogue does not know are
/// skipped and reported: add them as aliases to `departments.toml`.
pub fn dispatch(dir: &Path, catalogue: &Catalogue) -> Result<Loaded, IntelError> {
    let mut l = Loaded::default();
    for rel in [GOV_QA, NLU_DEPT] {
        let p = path(dir, rel);
        if !p.exists() {
            continue;
        }
        for (line, m) in read_jsonl(&p)? {
            let (q, dept) = (s(&m, "question"), s(&m, "department"));
            if q.is_empty() || dept.is_empty() {
                l.skip(line, format!("{rel}: no question or no department"));
                continue;
            }
            match catalogue.resolve_label(dept) {
                Some(d) => l.examples.push(Example { text: q.to_string(), target: Target::Class(d.id.clone()) }),
                None => l.skip(line, format!("{rel}: department {dept:?} is not in the catalogue")),
            }
        }
    }
    if l.examples.is_empty() {
        return Err(IntelError::Data(format!("no dispatch rows under {} ({GOV_QA}, {NLU_DEPT})", dir.display())));
    }
    Ok(l)
}

/// One customer/helpdesk dialogue with the annotators' mean scores.
#[derive(Debug, Clone)]
pub struct Dialogue {
    pub id: String,
    /// (speaker, text) in order; speaker is `customer` or `helpdesk`.
    pub turns: Vec<(String, String)>,
    /// Mean of the annotators' A (task accomplished), S (satisfaction), E (efficiency), -2..2.
    pub mean_a: f32,
    pub mean_s: f32,
    pub mean_e: f32,
}

impl Dialogue {
    /// The text the callback model reads: the citizen's turns, marked, then the agent's.
    pub fn model_text(&self) -> String {
        dialogue_text(self.turns.iter().map(|(a, b)| (a.as_str(), b.as_str())))
    }
}

/// Callback text for the model: customer turns first (they carry the verdict), the last one
/// first of all, each marked with its speaker.
pub fn dialogue_text<'a>(turns: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> String {
    let cust: Vec<&str> = turns.clone().filter(|(s, _)| *s == "customer" || *s == "citizen").map(|(_, t)| t).collect();
    let mut out = String::new();
    if let Some(last) = cust.last() {
        out.push_str("市民最后说：");
        out.push_str(last);
        out.push('\n');
    }
    for t in &cust {
        out.push_str("市民：");
        out.push_str(t);
        out.push('\n');
    }
    for (s, t) in turns {
        if s != "customer" && s != "citizen" {
            out.push_str("坐席：");
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

pub fn stc3(dir: &Path) -> Result<(Vec<Dialogue>, usize), IntelError> {
    let mut out = Vec::new();
    let mut skipped = 0;
    for (_line, m) in read_jsonl(&path(dir, STC3))? {
        let turns: Vec<(String, String)> = m
            .get("turns")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        let who = t.get("sender")?.as_str()?.to_string();
                        let text: Vec<&str> = t.get("utterances")?.as_array()?.iter().filter_map(Value::as_str).collect();
                        Some((who, text.join(" ")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let anns: Vec<&Value> = m.get("annotations").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
        let mean = |k: &str| -> Option<f32> {
            let v: Vec<f64> = anns.iter().filter_map(|a| a.get("quality")?.get(k)?.as_f64()).collect();
            (!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64) as f32)
        };
        match (turns.is_empty(), mean("A"), mean("S"), mean("E")) {
            (false, Some(a), Some(s_), Some(e)) => out.push(Dialogue {
                id: m.get("id").map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default(),
                turns,
                mean_a: a,
                mean_s: s_,
                mean_e: e,
            }),
            _ => skipped += 1,
        }
    }
    Ok((out, skipped))
}
