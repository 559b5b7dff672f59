//! Callback (回访) quality: did the citizen say the problem was solved, how satisfied they are,
//! whether the agent followed the script (greeting, identity, restating the request, closing),
//! sensitive content, and whether the ticket must be reopened. Every finding carries the words
//! that support it (turn index and character span).
//!
//! Phrase rules (`knowledge-base/callback_phrases.toml`) decide when the citizen says it in so
//! many words; otherwise the trained callback model (regression of the annotators' A and S
//! scores, task `callback`) gives its estimate, marked as such.

use std::path::Path;

use aho_corasick::{AhoCorasick, MatchKind};
use serde::{Deserialize, Serialize};

use crate::intel::artifact::Artifact;
use crate::intel::data::dialogue_text;
use crate::intel::IntelError;
use crate::sensitive::Screener;
use crate::tickets::model::Satisfaction;

pub const DEFAULT_PHRASES: &str = include_str!("../../../knowledge-base/callback_phrases.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhraseFile {
    solved: SolvedPhrases,
    satisfaction: SatisfactionPhrases,
    script: ScriptPhrases,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SolvedPhrases {
    yes: Vec<String>,
    no: Vec<String>,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SatisfactionPhrases {
    satisfied: Vec<String>,
    basic: Vec<String>,
    unsatisfied: Vec<String>,
}
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptPhrases {
    greeting: Vec<String>,
    identity: Vec<String>,
    restate: Vec<String>,
    closing: Vec<String>,
}

/// One group of labelled phrases matched leftmost-longest.
struct PhraseSet {
    ac: AhoCorasick,
    labels: Vec<u8>,
}

impl PhraseSet {
    fn new(groups: &[(u8, &[String])]) -> Result<PhraseSet, String> {
        let mut pats = Vec::new();
        let mut labels = Vec::new();
        for (l, words) in groups {
            for w in words.iter().filter(|w| !w.trim().is_empty()) {
                pats.push(w.trim().to_string());
                labels.push(*l);
            }
        }
        let ac = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&pats).map_err(|e| e.to_string())?;
        Ok(PhraseSet { ac, labels })
    }
    /// (label, byte start, byte end) of each match.
    fn find(&self, text: &str) -> Vec<(u8, usize, usize)> {
        self.ac.find_iter(text).map(|m| (self.labels[m.pattern().as_usize()], m.start(), m.end())).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Agent,
    Citizen,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// Words that support a finding: turn index and character offsets within that turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub turn: usize,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding<T> {
    pub value: T,
    /// `rule` (the citizen's own words), `model` (the trained estimate), `none`.
    pub source: &'static str,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScriptCheck {
    pub passed: bool,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compliance {
    pub greeting: ScriptCheck,
    pub identity: ScriptCheck,
    pub restate: ScriptCheck,
    pub closing: ScriptCheck,
    /// Fraction of the four checks passed.
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelScores {
    pub model: String,
    /// Estimated task accomplishment, -2..2.
    pub accomplished: f32,
    /// Estimated satisfaction, -2..2.
    pub satisfaction: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub solved: Finding<Option<bool>>,
    pub satisfaction: Finding<Option<Satisfaction>>,
    pub compliance: Compliance,
    /// Sensitive-word categories hit in any turn.
    pub sensitive: Vec<String>,
    pub reopen: bool,
    pub reopen_reason: Option<String>,
    pub model: Option<ModelScores>,
}

pub struct CallbackChecker {
    solved: PhraseSet,
    satisfaction: PhraseSet,
    script: [PhraseSet; 4],
    pub screener: Option<Screener>,
}

const YES: u8 = 1;
const NO: u8 = 2;
const SAT: u8 = 1;
const BASIC: u8 = 2;
const UNSAT: u8 = 3;

fn evidence(turn: usize, text: &str, start: usize, end: usize) -> Evidence {
    Evidence { turn, start: text[..start].chars().count(), end: text[..end].chars().count(), text: text[start..end].to_string() }
}

impl CallbackChecker {
    pub fn from_toml(text: &str) -> Result<CallbackChecker, IntelError> {
        let f: PhraseFile = toml::from_str(text).map_err(|e| IntelError::Config(format!("callback phrases: {e}")))?;
        let cfg = |e: String| IntelError::Config(format!("callback phrases: {e}"));
        Ok(CallbackChecker {
            solved: PhraseSet::new(&[(YES, f.solved.yes.as_slice()), (NO, f.solved.no.as_slice())]).map_err(cfg)?,
            satisfaction: PhraseSet::new(&[(SAT, f.satisfaction.satisfied.as_slice()), (BASIC, f.satisfaction.basic.as_slice()), (UNSAT, f.satisfaction.unsatisfied.as_slice())]).map_err(cfg)?,
            script: [
                PhraseSet::new(&[(1, f.script.greeting.as_slice())]).map_err(cfg)?,
                PhraseSet::new(&[(1, f.script.identity.as_slice())]).map_err(cfg)?,
                PhraseSet::new(&[(1, f.script.restate.as_slice())]).map_err(cfg)?,
                PhraseSet::new(&[(1, f.script.closing.as_slice())]).map_err(cfg)?,
            ],
            screener: None,
        })
    }

    pub fn load(path: Option<&Path>) -> Result<CallbackChecker, IntelError> {
        match path {
            Some(p) => CallbackChecker::from_toml(&fs_err::read_to_string(p).map_err(|e| IntelError::Config(e.to_string()))?),
            None => CallbackChecker::from_toml(DEFAULT_PHRASES),
        }
    }

    /// The citizen's last stated verdict in a phrase group: (label, evidence).
    fn last_verdict(set: &PhraseSet, turns: &[Turn]) -> Option<(u8, Evidence)> {
        turns
            .iter()
            .enumerate()
            .filter(|(_, t)| t.speaker == Speaker::Citizen)
            .flat_map(|(i, t)| set.find(&t.text).into_iter().map(move |(l, s, e)| (l, evidence(i, &t.text, s, e))))
            .last()
    }

    fn script_check(set: &PhraseSet, turns: &[Turn]) -> ScriptCheck {
        let ev: Vec<Evidence> = turns
            .iter()
            .enumerate()
            .filter(|(_, t)| t.speaker == Speaker::Agent)
            .flat_map(|(i, t)| set.find(&t.text).into_iter().map(move |(_, s, e)| evidence(i, &t.text, s, e)))
            .take(3)
            .collect();
        ScriptCheck { passed: !ev.is_empty(), evidence: ev }
    }

    /// Assess a batch of conversations; `model` (task `callback`) runs once over all and fills
    /// in where the citizen's words decide nothing.
    pub fn assess_many(&self, convs: &[Vec<Turn>], model: Option<&Artifact>) -> Result<Vec<Assessment>, IntelError> {
        for (i, c) in convs.iter().enumerate() {
            if c.is_empty() {
                return Err(IntelError::Data(format!("conversation {i} has no turns")));
            }
        }
        let scores: Option<Vec<Vec<f32>>> = match model {
            Some(m) => {
                let texts: Vec<String> = convs
                    .iter()
                    .map(|c| dialogue_text(c.iter().map(|t| (if t.speaker == Speaker::Citizen { "customer" } else { "helpdesk" }, t.text.as_str()))))
                    .collect();
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                Some(m.regress(&refs)?)
            }
            None => None,
        };
        Ok(convs
            .iter()
            .enumerate()
            .map(|(i, turns)| {
                let model = scores.as_ref().map(|s| ModelScores {
                    model: model.map(|m| m.manifest.task.clone()).unwrap_or_default(),
                    accomplished: s[i][0],
                    satisfaction: s[i].get(1).copied().unwrap_or(0.0),
                });
                self.assess_one(turns, model)
            })
            .collect())
    }

    pub fn assess(&self, turns: &[Turn], model: Option<&Artifact>) -> Result<Assessment, IntelError> {
        Ok(self.assess_many(&[turns.to_vec()], model)?.remove(0))
    }

    fn assess_one(&self, turns: &[Turn], model: Option<ModelScores>) -> Assessment {
        let solved = match Self::last_verdict(&self.solved, turns) {
            Some((l, ev)) => Finding { value: Some(l == YES), source: "rule", evidence: vec![ev] },
            None => match &model {
                Some(m) => Finding { value: Some(m.accomplished > 0.0), source: "model", evidence: Vec::new() },
                None => Finding { value: None, source: "none", evidence: Vec::new() },
            },
        };
        let satisfaction = match Self::last_verdict(&self.satisfaction, turns) {
            Some((l, ev)) => {
                let v = match l {
                    SAT => Satisfaction::Satisfied,
                    BASIC => Satisfaction::BasicallySatisfied,
                    _ => Satisfaction::Unsatisfied,
                };
                Finding { value: Some(v), source: "rule", evidence: vec![ev] }
            }
            None => match &model {
                Some(m) => {
                    let v = if m.satisfaction >= 0.5 {
                        Satisfaction::Satisfied
                    } else if m.satisfaction >= -0.5 {
                        Satisfaction::BasicallySatisfied
                    } else {
                        Satisfaction::Unsatisfied
                    };
                    Finding { value: Some(v), source: "model", evidence: Vec::new() }
                }
                None => Finding { value: None, source: "none", evidence: Vec::new() },
            },
        };
        let [g, id, re, cl] = &self.script;
        let checks = [Self::script_check(g, turns), Self::script_check(id, turns), Self::script_check(re, turns), Self::script_check(cl, turns)];
        let score = checks.iter().filter(|c| c.passed).count() as f32 / 4.0;
        let [greeting, identity, restate, closing] = checks;
        let mut sensitive: Vec<String> = Vec::new();
        if let Some(s) = &self.screener {
            for t in turns {
                for h in s.screen(&t.text).hits {
                    if !sensitive.contains(&h.category) {
                        sensitive.push(h.category);
                    }
                }
            }
        }
        let reopen_reason = if solved.value == Some(false) {
            Some(format!("市民表示问题未解决（{}）", if solved.source == "rule" { "原话" } else { "模型判断" }))
        } else if satisfaction.value == Some(Satisfaction::Unsatisfied) {
            Some(format!("市民不满意（{}）", if satisfaction.source == "rule" { "原话" } else { "模型判断" }))
        } else {
            None
        };
        Assessment {
            solved,
            satisfaction,
            compliance: Compliance { greeting, identity, restate, closing, score },
            sensitive,
            reopen: reopen_reason.is_some(),
            reopen_reason,
            model,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: Speaker, x: &str) -> Turn {
        Turn { speaker: s, text: x.into() }
    }

    #[test]
    fn a_compliant_callback_with_a_satisfied_citizen() {
        let c = CallbackChecker::load(None).unwrap();
        let a = c
            .assess(&[
                t(Speaker::Agent, "您好，这里是12345热线回访，关于您反映的小区停水问题，现在处理得怎么样？"),
                t(Speaker::Citizen, "已经解决了，水也通了，挺满意的。"),
                t(Speaker::Agent, "好的，感谢您的配合，再见。"),
            ], None)
            .unwrap();
        assert_eq!(a.solved.value, Some(true));
        assert_eq!(a.solved.source, "rule");
        assert_eq!(a.solved.evidence[0].turn, 1);
        assert_eq!(a.solved.evidence[0].text, "已经解决");
        assert_eq!(a.satisfaction.value, Some(Satisfaction::Satisfied));
        assert!(a.compliance.greeting.passed && a.compliance.identity.passed && a.compliance.restate.passed && a.compliance.closing.passed);
        assert_eq!(a.compliance.score, 1.0);
        assert!(!a.reopen);
    }

    #[test]
    fn negation_wins_over_the_word_inside_it_and_triggers_reopen() {
        let c = CallbackChecker::load(None).unwrap();
        let a = c.assess(&[t(Speaker::Agent, "请问问题解决了吗？"), t(Speaker::Citizen, "根本没有解决，我很不满意")], None).unwrap();
        assert_eq!(a.solved.value, Some(false), "没有解决 must not count as 解决");
        assert_eq!(a.satisfaction.value, Some(Satisfaction::Unsatisfied), "不满意 must not count as 满意");
        assert!(a.reopen);
        assert!(a.reopen_reason.unwrap().contains("未解决"));
        // The agent asked about 解决 but only citizen turns count; the agent skipped the script.
        assert!(!a.compliance.greeting.passed && !a.compliance.closing.passed);
        assert_eq!(a.compliance.score, 0.0);
    }

    #[test]
    fn the_last_verdict_counts_and_silence_is_unknown() {
        let c = CallbackChecker::load(None).unwrap();
        let a = c.assess(&[t(Speaker::Citizen, "一开始没解决"), t(Speaker::Citizen, "后来又来修，现在修好了，基本满意")], None).unwrap();
        assert_eq!(a.solved.value, Some(true));
        assert_eq!(a.satisfaction.value, Some(Satisfaction::BasicallySatisfied));
        let u = c.assess(&[t(Speaker::Citizen, "嗯")], None).unwrap();
        assert_eq!(u.solved.value, None);
        assert_eq!(u.solved.source, "none");
        assert!(!u.reopen);
        assert!(c.assess(&[], None).is_err());
    }

    #[test]
    fn evidence_offsets_are_characters() {
        let c = CallbackChecker::load(None).unwrap();
        let a = c.assess(&[t(Speaker::Citizen, "师傅说已经处理")], None).unwrap();
        let e = &a.solved.evidence[0];
        assert_eq!((e.start, e.end), (3, 7));
        assert_eq!(e.text, "已经处理");
    }
}
