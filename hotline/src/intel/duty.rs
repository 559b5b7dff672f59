//! The catalogue's own voice in dispatch: which department's duties a request reads like.
//!
//! The trained dispatch model learned one dataset's wording (Beijing 政务问答 rows) and leans to
//! that dataset's frequent departments on requests unlike its rows: a broken street light went
//! to 市应急管理局. What a deployment knows about its departments is written down instead:
//! each department's duties and keywords in `departments.toml`, and requests in citizens' own
//! words for each department in `dispatch_examples/*.jsonl` beside it. This module turns those
//! into a multinomial naive Bayes model over character unigrams and bigrams, trained in
//! milliseconds when the catalogue loads, so an edit to the files changes dispatch on restart.
//!
//! Naive Bayes because the data is small (tens of examples per department, forty departments)
//! and the classes are many: it needs no tuning loop and degrades gracefully to "nothing here
//! is specific" (a flat posterior) on text that shares nothing with any department.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::intel::IntelError;

/// One written request and the department that handles it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DutyExample {
    pub dept: String,
    pub text: String,
    /// Optional: the kind of matter (for the writer's bookkeeping; not used by the model).
    #[serde(default)]
    pub matter: Option<String>,
}

/// Read every `*.jsonl` file of `dir` (sorted by name, so training is the same on every
/// machine). Blank lines are skipped; any other bad line is an error naming file and line.
pub fn read_examples(dir: &Path) -> Result<Vec<DutyExample>, IntelError> {
    let mut files: Vec<_> = fs_err::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = fs_err::read_to_string(&f)?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let e: DutyExample = serde_json::from_str(line).map_err(|e| IntelError::Config(format!("{} line {}: {e}", f.display(), i + 1)))?;
            if e.text.trim().is_empty() {
                return Err(IntelError::Config(format!("{} line {}: empty text", f.display(), i + 1)));
            }
            out.push(e);
        }
    }
    Ok(out)
}

/// Unigrams and bigrams of the letters and digits of `text` (lower-cased, digits as `0`: a
/// house number is not a topic), bigrams not crossing punctuation.
fn grams(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prev: Option<char> = None;
    for c in text.chars() {
        let c = if c.is_ascii_digit() { '0' } else { c.to_lowercase().next().unwrap_or(c) };
        if !c.is_alphanumeric() {
            prev = None;
            continue;
        }
        out.push(c.to_string());
        if let Some(p) = prev {
            out.push([p, c].iter().collect());
        }
        prev = Some(c);
    }
    out
}

/// Weight of one catalogue keyword, counted as that many written examples: a keyword is the
/// deployment saying outright "this is ours".
const KEYWORD_WEIGHT: f32 = 2.0;
/// Weight of the duties text (long, and partly boilerplate: 负责…受理…).
const DUTIES_WEIGHT: f32 = 1.0;
/// Additive smoothing. Below 1 because the vocabulary (every bigram of every department) is
/// large against a department's few hundred bigrams: add-one flattens everything.
const SMOOTHING: f32 = 0.1;

/// Naive Bayes over the catalogue's departments. Class priors are uniform: how many examples a
/// writer gave a department says nothing about how often citizens need it.
#[derive(Debug, Clone)]
pub struct DutyModel {
    depts: Vec<String>,
    /// Per department: log P(gram | department) for grams it has seen.
    log_probs: Vec<HashMap<String, f32>>,
    /// Per department: log P of a gram it has never seen.
    unseen: Vec<f32>,
    /// Grams no department has seen carry no evidence and are skipped.
    vocab: std::collections::HashSet<String>,
    examples: usize,
}

/// A department and the model's posterior for it.
#[derive(Debug, Clone, PartialEq)]
pub struct DutyScore {
    pub dept: String,
    pub probability: f32,
}

impl DutyModel {
    /// Train on the catalogue's keywords and duties plus the written `examples`, whose
    /// departments must all be in `depts`.
    pub fn train(depts: &[(String, Vec<String>, String)], examples: &[DutyExample]) -> Result<DutyModel, String> {
        let index: HashMap<&str, usize> = depts.iter().enumerate().map(|(i, (id, _, _))| (id.as_str(), i)).collect();
        let mut counts: Vec<HashMap<String, f32>> = vec![HashMap::new(); depts.len()];
        let mut add = |i: usize, text: &str, w: f32| {
            for g in grams(text) {
                *counts[i].entry(g).or_default() += w;
            }
        };
        for (i, (_, keywords, duties)) in depts.iter().enumerate() {
            for k in keywords {
                add(i, k, KEYWORD_WEIGHT);
            }
            add(i, duties, DUTIES_WEIGHT);
        }
        for (n, e) in examples.iter().enumerate() {
            let i = *index.get(e.dept.as_str()).ok_or_else(|| format!("example {}: department {} is not in the catalogue", n + 1, e.dept))?;
            add(i, &e.text, 1.0);
        }
        let vocab: std::collections::HashSet<String> = counts.iter().flat_map(|c| c.keys().cloned()).collect();
        let v = vocab.len() as f32;
        let mut log_probs = Vec::with_capacity(depts.len());
        let mut unseen = Vec::with_capacity(depts.len());
        for c in counts {
            let total: f32 = c.values().sum::<f32>() + SMOOTHING * v;
            unseen.push((SMOOTHING / total).ln());
            log_probs.push(c.into_iter().map(|(g, n)| (g, ((n + SMOOTHING) / total).ln())).collect());
        }
        Ok(DutyModel { depts: depts.iter().map(|(id, _, _)| id.clone()).collect(), log_probs, unseen, vocab, examples: examples.len() })
    }

    /// How many written examples it was trained on (keywords and duties not counted).
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// Posterior over departments, best first. The summed log likelihoods are divided by √n (n =
    /// grams with evidence): naive Bayes treats overlapping bigrams as independent and would
    /// otherwise be near-certain about any long message. Empty when no gram of the text was
    /// ever seen (nothing to go on).
    pub fn predict(&self, text: &str) -> Vec<DutyScore> {
        let g: Vec<String> = grams(text).into_iter().filter(|g| self.vocab.contains(g)).collect();
        if g.is_empty() {
            return Vec::new();
        }
        let scale = 1.0 / (g.len() as f32).sqrt();
        let scores: Vec<f32> = (0..self.depts.len())
            .map(|i| g.iter().map(|x| *self.log_probs[i].get(x).unwrap_or(&self.unseen[i])).sum::<f32>() * scale)
            .collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let z: f32 = exp.iter().sum();
        let mut out: Vec<DutyScore> = self.depts.iter().zip(exp).map(|(d, e)| DutyScore { dept: d.clone(), probability: e / z }).collect();
        out.sort_by(|a, b| b.probability.total_cmp(&a.probability).then_with(|| a.dept.cmp(&b.dept)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depts() -> Vec<(String, Vec<String>, String)> {
        vec![
            ("city-management".into(), vec!["路灯".into(), "井盖".into()], "负责道路照明和井盖等市政设施。".into()),
            ("power".into(), vec!["停电".into()], "负责供电抢修。".into()),
            ("hrss".into(), vec!["欠薪".into()], "负责劳动关系和工资支付。".into()),
        ]
    }

    fn ex(dept: &str, text: &str) -> DutyExample {
        DutyExample { dept: dept.into(), text: text.into(), matter: None }
    }

    #[test]
    fn written_examples_teach_wording_the_keywords_lack() {
        let examples = vec![
            ex("city-management", "晚上小区门口那条路黑漆漆的灯一直不亮"),
            ex("city-management", "马路上的铁盖子没了，有个大坑"),
            ex("power", "家里突然没电了，整栋楼都黑了"),
            ex("hrss", "老板干了三个月不给钱"),
        ];
        let m = DutyModel::train(&depts(), &examples).unwrap();
        assert_eq!(m.examples(), 4);
        assert_eq!(m.predict("我们那条路晚上灯不亮，黑漆漆的")[0].dept, "city-management");
        assert_eq!(m.predict("干了活老板不给钱")[0].dept, "hrss");
        let p = m.predict("整栋楼没电了");
        assert_eq!(p[0].dept, "power");
        let total: f32 = p.iter().map(|s| s.probability).sum();
        assert!((total - 1.0).abs() < 1e-4);
    }

    #[test]
    fn text_with_nothing_known_gives_no_opinion() {
        let m = DutyModel::train(&depts(), &[]).unwrap();
        assert!(m.predict("？？？").is_empty());
        assert!(m.predict("").is_empty());
    }

    #[test]
    fn an_example_for_an_unknown_department_is_an_error() {
        let e = DutyModel::train(&depts(), &[ex("nobody", "随便说说")]).unwrap_err();
        assert!(e.contains("nobody"), "{e}");
    }

    #[test]
    fn examples_are_read_from_every_jsonl_file_and_bad_lines_are_named() {
        let dir = std::env::temp_dir().join(format!("zhengwu-duty-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("b.jsonl"), "{\"dept\":\"power\",\"text\":\"没电了\"}\n\n").unwrap();
        fs_err::write(dir.join("a.jsonl"), "{\"dept\":\"hrss\",\"text\":\"欠薪\",\"matter\":\"欠薪\"}\n").unwrap();
        fs_err::write(dir.join("notes.txt"), "not read").unwrap();
        let got = read_examples(&dir).unwrap();
        assert_eq!(got.iter().map(|e| e.dept.as_str()).collect::<Vec<_>>(), vec!["hrss", "power"]);
        fs_err::write(dir.join("c.jsonl"), "{\"dept\":\"power\"}\n").unwrap();
        let e = read_examples(&dir).unwrap_err().to_string();
        assert!(e.contains("c.jsonl line 1"), "{e}");
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
