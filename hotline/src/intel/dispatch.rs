//! The dispatcher (分流派发): ranks departments for a ticket and says why.
//!
//! Evidence, strongest first:
//! 1. **Rules** (`knowledge-base/dispatch_rules.toml`), checked in order; the first that matches
//!    decides the lead department (and co-handlers) outright.
//! 2. **The trained model** ([`Artifact`], task `dispatch`) when it is all but certain: it
//!    learned one dataset's wording (Beijing 政务问答 rows) and is right there 98% of the time
//!    from 0.97 up, and close to useless below that on requests unlike its rows.
//! 3. Otherwise a blend of four voices: the **duty model** (the catalogue's duties, keywords and
//!    written requests, [`crate::intel::duty`]), the trained model, the **catalogue's keywords**
//!    and **similar past tickets**. The lead's confidence is a logistic calibration of the blend
//!    fitted on written requests (`zhengwu eval dispatch`), so that 0.8 means right four times
//!    in five on requests like the ones citizens send.
//!
//! Departments that already returned the ticket (退单) are excluded. The lead's confidence picks
//! the bucket: automatic dispatch, sampled review, or a human decision; evidence that disagrees
//! (a rule the duty model disputes, a model sure of another department) is never automatic.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::intel::artifact::Artifact;
use crate::intel::artifact::Ranked;
use crate::intel::departments::{Catalogue, KeywordHit};
use crate::intel::IntelError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// At least one must occur (substring); empty = no such condition.
    #[serde(default)]
    pub any: Vec<String>,
    /// Every one must occur.
    #[serde(default)]
    pub all: Vec<String>,
    /// None may occur.
    #[serde(default)]
    pub none: Vec<String>,
    pub lead: String,
    #[serde(default)]
    pub co_handlers: Vec<String>,
}

impl Rule {
    /// The words that made the rule match, or `None`.
    pub fn matches(&self, text: &str) -> Option<Vec<String>> {
        if self.any.is_empty() && self.all.is_empty() {
            return None;
        }
        if self.none.iter().any(|w| text.contains(w.as_str())) {
            return None;
        }
        let mut hit = Vec::new();
        if !self.any.is_empty() {
            let found: Vec<&String> = self.any.iter().filter(|w| text.contains(w.as_str())).collect();
            if found.is_empty() {
                return None;
            }
            hit.extend(found.into_iter().cloned());
        }
        for w in &self.all {
            if !text.contains(w.as_str()) {
                return None;
            }
            hit.push(w.clone());
        }
        Some(hit)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// Parse rules and check they name catalogue departments.
pub fn parse_rules(text: &str, catalogue: &Catalogue) -> Result<Vec<Rule>, String> {
    let f: RulesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut ids = std::collections::HashSet::new();
    for r in &f.rule {
        if !ids.insert(r.id.clone()) {
            return Err(format!("rule id {} is used twice", r.id));
        }
        if r.any.is_empty() && r.all.is_empty() {
            return Err(format!("rule {}: needs `any` or `all` words", r.id));
        }
        for d in std::iter::once(&r.lead).chain(&r.co_handlers) {
            if catalogue.get(d).is_none() {
                return Err(format!("rule {}: department {d} is not in the catalogue", r.id));
            }
        }
    }
    Ok(f.rule)
}

pub fn load_rules(path: &Path, catalogue: &Catalogue) -> Result<Vec<Rule>, IntelError> {
    let text = fs_err::read_to_string(path).map_err(|e| IntelError::Config(e.to_string()))?;
    parse_rules(&text, catalogue).map_err(|e| IntelError::Config(format!("{}: {e}", path.display())))
}

/// `[dispatch]` settings. The defaults were chosen on the written requests' dev part and the
/// MSGABench rows (`zhengwu eval dispatch`); the report part was not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Lead confidence at or above which a ticket is dispatched without a person.
    pub auto_threshold: f32,
    /// Lead confidence at or above which it is dispatched but sampled for review; below, a
    /// person decides.
    pub review_threshold: f32,
    /// A runner-up at or above this share of the blend is suggested as co-handler (协办).
    pub co_handler_threshold: f32,
    /// Blend weights of the trained model, the duty model and the catalogue keywords. Voices
    /// that have nothing to say (no model loaded, no keyword found) drop out and the rest are
    /// renormalised.
    pub model_weight: f32,
    pub duty_weight: f32,
    pub keyword_weight: f32,
    /// Share of similar past tickets in the blend when there are any (0..1).
    pub case_weight: f32,
    /// The trained model alone decides from this confidence (above 1 = never).
    pub model_trusted_from: f32,
    /// A trained model at least this sure of another department than the blend's lead keeps
    /// the ticket from automatic dispatch.
    pub model_veto_from: f32,
    /// Logistic calibration of the blended lead: confidence = σ(c0 + c1·blend share + c2·duty
    /// model's probability of the lead + c3·[the strongest keyword match names the lead]).
    pub calibration: [f32; 4],
    /// Confidence of a rule's lead when the duty model agrees with it, and when it does not
    /// (a rule's words can appear in another matter: "工资跟停水似的说断就断").
    pub rule_confidence: f32,
    pub disputed_rule_confidence: f32,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            auto_threshold: 0.8,
            review_threshold: 0.4,
            co_handler_threshold: 0.25,
            model_weight: 0.3,
            duty_weight: 0.5,
            keyword_weight: 0.2,
            case_weight: 0.15,
            model_trusted_from: 0.97,
            model_veto_from: 0.6,
            calibration: [-2.09, 2.68, 3.71, 0.85],
            rule_confidence: 0.95,
            disputed_rule_confidence: 0.6,
        }
    }
}

/// Fit the logistic calibration (`σ(c · features)`) to blended leads and whether each was right:
/// gradient descent on the mean log loss with a small L2 penalty, from zero, deterministic.
pub fn fit_calibration(points: &[(BlendEvidence, bool)]) -> [f32; 4] {
    let mut w = [0f64; 4];
    if points.is_empty() {
        return [0.0; 4];
    }
    let n = points.len() as f64;
    for _ in 0..20_000 {
        let mut g = [0f64; 4];
        for (e, right) in points {
            let x = e.features().map(f64::from);
            let z: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            let err = 1.0 / (1.0 + (-z).exp()) - f64::from(u8::from(*right));
            for j in 0..4 {
                g[j] += err * x[j];
            }
        }
        for j in 0..4 {
            w[j] -= g[j] / n + 0.001 * w[j];
        }
    }
    w.map(|x| x as f32)
}

impl DispatchConfig {
    pub fn validate(&self) -> Result<(), String> {
        let ok = |x: f32| (0.0..=1.0).contains(&x);
        let unit = [self.auto_threshold, self.review_threshold, self.co_handler_threshold, self.model_weight, self.duty_weight, self.keyword_weight, self.case_weight, self.model_veto_from, self.rule_confidence, self.disputed_rule_confidence];
        if !unit.into_iter().all(ok) {
            return Err("dispatch thresholds, weights and confidences must be within 0..1".into());
        }
        if !(self.model_trusted_from >= 0.0 && self.model_trusted_from.is_finite()) || !self.calibration.iter().all(|c| c.is_finite()) {
            return Err("model_trusted_from and calibration must be finite numbers (model_trusted_from ≥ 0)".into());
        }
        if self.review_threshold > self.auto_threshold {
            return Err(format!("review_threshold {} is above auto_threshold {}", self.review_threshold, self.auto_threshold));
        }
        if self.model_weight + self.duty_weight + self.keyword_weight <= 0.0 {
            return Err("model_weight + duty_weight + keyword_weight must be above 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// Dispatched automatically.
    Auto,
    /// Dispatched, and sampled for a supervisor's review.
    Review,
    /// A person decides.
    Human,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Auto => "auto",
            Bucket::Review => "review",
            Bucket::Human => "human",
        }
    }
}

/// Why a department was suggested.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    Rule { rule: String, description: String, matched: Vec<String> },
    Model { model: String, dept: String, confidence: f32 },
    Keywords { dept: String, matched: Vec<String> },
    /// The duty model (catalogue duties, keywords and written requests).
    Duty { dept: String, probability: f32 },
    SimilarCase { ticket_id: i64, dept: String, similarity: f32 },
    Excluded { dept: String, why: String },
    /// Why a confident lead is still not dispatched automatically: `model_disagrees` (the
    /// trained model prefers `dept` at `confidence`), `rule_disputed` (the duty model reads the
    /// request as another department's) or `uncorroborated` (keywords or similar tickets only).
    NotAutomatic { cause: String, dept: Option<String>, confidence: Option<f32> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub dept: String,
    pub name: String,
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// `None` when nothing points anywhere (a person must decide).
    pub lead: Option<Candidate>,
    pub co_handlers: Vec<Candidate>,
    pub bucket: Bucket,
    /// Top candidates, best first (at most 5).
    pub candidates: Vec<Candidate>,
    pub reasons: Vec<Reason>,
    /// Which layer decided: `rule`, `model`, `duty`, `keywords`, `similar_cases`, `none`.
    pub decided_by: String,
    /// What the lead's confidence was calibrated from, when the blend decided (for refitting
    /// [`DispatchConfig::calibration`] on written requests: `zhengwu eval dispatch`).
    #[serde(skip)]
    pub blend: Option<BlendEvidence>,
}

/// The inputs of the calibration for a blended lead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlendEvidence {
    /// The lead's share of the blend.
    pub share: f32,
    /// The duty model's probability of the lead (0 without a duty model).
    pub duty: f32,
    /// Whether the strongest keyword match names the lead.
    pub keyword_names_lead: bool,
}

impl BlendEvidence {
    pub fn features(&self) -> [f32; 4] {
        [1.0, self.share, self.duty, f32::from(u8::from(self.keyword_names_lead))]
    }
}

/// A past ticket similar to the new one, with its final department.
#[derive(Debug, Clone)]
pub struct SimilarCase {
    pub ticket_id: i64,
    pub dept: String,
    pub similarity: f32,
}

pub struct Dispatcher {
    pub catalogue: Arc<Catalogue>,
    pub rules: Vec<Rule>,
    pub model: Option<Arc<Artifact>>,
    pub config: DispatchConfig,
}

impl Dispatcher {
    pub fn new(catalogue: Arc<Catalogue>, rules: Vec<Rule>, model: Option<Arc<Artifact>>, config: DispatchConfig) -> Result<Dispatcher, IntelError> {
        config.validate().map_err(IntelError::Config)?;
        if let Some(m) = &model {
            for l in m.labels() {
                if catalogue.get(l).is_none() {
                    return Err(IntelError::Config(format!("dispatch model {} knows department {l}, which is not in the catalogue", m.manifest.task)));
                }
            }
        }
        Ok(Dispatcher { catalogue, rules, model, config })
    }

    fn candidate(&self, dept: &str, confidence: f32) -> Candidate {
        let name = self.catalogue.get(dept).map(|d| d.name.clone()).unwrap_or_else(|| dept.to_string());
        Candidate { dept: dept.to_string(), name, confidence }
    }

    fn bucket(&self, confidence: f32) -> Bucket {
        if confidence >= self.config.auto_threshold {
            Bucket::Auto
        } else if confidence >= self.config.review_threshold {
            Bucket::Review
        } else {
            Bucket::Human
        }
    }

    /// Rank departments for `text`. `exclude`: departments that returned this ticket.
    /// `cases`: similar past tickets (best first).
    pub fn suggest(&self, text: &str, exclude: &[String], cases: &[SimilarCase]) -> Result<Suggestion, IntelError> {
        let mut suggestions = self.suggest_many(&[text], exclude, &[cases.to_vec()])?;
        Ok(suggestions.remove(0))
    }

    /// [`Dispatcher::suggest`] for a batch (the model runs once over all texts).
    pub fn suggest_many(&self, texts: &[&str], exclude: &[String], cases: &[Vec<SimilarCase>]) -> Result<Vec<Suggestion>, IntelError> {
        let model_out = match &self.model {
            Some(m) => Some(m.classify(texts)?),
            None => None,
        };
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let mut reasons = Vec::new();
            for d in exclude {
                reasons.push(Reason::Excluded { dept: d.clone(), why: "returned the ticket (退单)".into() });
            }
            // 1. Rules.
            if let Some((rule, matched)) = self
                .rules
                .iter()
                .filter(|r| !exclude.contains(&r.lead))
                .find_map(|r| r.matches(text).map(|m| (r, m)))
            {
                reasons.push(Reason::Rule { rule: rule.id.clone(), description: rule.description.clone(), matched });
                // A rule's words can turn up in another matter; the duty model, when there is
                // one, must not read the request as someone else's.
                let duty_top = self.catalogue.duty_model().and_then(|m| m.predict(text).into_iter().find(|s| !exclude.contains(&s.dept)));
                let disputed = duty_top.as_ref().is_some_and(|s| s.dept != rule.lead);
                if let (true, Some(s)) = (disputed, &duty_top) {
                    reasons.push(Reason::Duty { dept: s.dept.clone(), probability: s.probability });
                }
                let confidence = if disputed { self.config.disputed_rule_confidence } else { self.config.rule_confidence };
                if let (true, Some(s)) = (disputed, &duty_top) {
                    reasons.push(Reason::NotAutomatic { cause: "rule_disputed".into(), dept: Some(s.dept.clone()), confidence: Some(s.probability) });
                }
                let lead = self.candidate(&rule.lead, confidence);
                let co: Vec<Candidate> = rule.co_handlers.iter().filter(|d| !exclude.contains(*d)).map(|d| self.candidate(d, confidence)).collect();
                let bucket = self.bucket(confidence);
                out.push(Suggestion { lead: Some(lead.clone()), co_handlers: co, bucket, candidates: vec![lead], reasons, decided_by: "rule".into(), blend: None });
                continue;
            }
            // 2. + 3. The trained model when it is all but certain, else the blend.
            let depts: Vec<String> = self.catalogue.departments().iter().map(|d| d.id.clone()).collect();
            let index = |d: &str| depts.iter().position(|x| x == d);
            let allowed = |d: &str| !exclude.contains(&d.to_string()) && index(d).is_some();
            // Each voice as a distribution over departments (excluded ones removed, renormalised).
            let normalised = |pairs: Vec<(String, f32)>| -> Vec<f32> {
                let mut v = vec![0f32; depts.len()];
                for (d, x) in pairs.into_iter().filter(|(d, _)| allowed(d)) {
                    v[index(&d).unwrap_or(0)] += x.max(0.0);
                }
                let total: f32 = v.iter().sum();
                if total > 0.0 {
                    v.iter_mut().for_each(|x| *x /= total);
                }
                v
            };
            let model_ranked: Option<&Vec<Ranked>> = model_out.as_ref().map(|mo| &mo[i]);
            let model_p = model_ranked.map(|r| normalised(r.iter().map(|r| (r.label.clone(), r.confidence)).collect()));
            let duty_scores = self.catalogue.duty_model().map(|m| m.predict(text)).unwrap_or_default();
            let duty_p = (!duty_scores.is_empty()).then(|| normalised(duty_scores.iter().map(|s| (s.dept.clone(), s.probability)).collect()));
            let hits: Vec<KeywordHit> = self.catalogue.keyword_hits(text).into_iter().filter(|h| allowed(&h.dept)).collect();
            let kw_p = (!hits.is_empty()).then(|| normalised(hits.iter().map(|h| (h.dept.clone(), h.score)).collect()));
            let case_list: Vec<&SimilarCase> = cases.get(i).map(Vec::as_slice).unwrap_or(&[]).iter().filter(|c| allowed(&c.dept)).collect();
            let case_p = (!case_list.is_empty()).then(|| normalised(case_list.iter().map(|c| (c.dept.clone(), c.similarity)).collect()));
            let voices: Vec<(f32, &Vec<f32>)> = [(self.config.model_weight, &model_p), (self.config.duty_weight, &duty_p), (self.config.keyword_weight, &kw_p)]
                .into_iter()
                .filter_map(|(w, v)| v.as_ref().map(|v| (w, v)))
                .collect();
            let voice_total: f32 = voices.iter().map(|(w, _)| w).sum();
            let case_share = if case_p.is_some() { if voices.is_empty() { 1.0 } else { self.config.case_weight } } else { 0.0 };
            let mut p = vec![0f32; depts.len()];
            for (w, v) in &voices {
                for (pj, x) in p.iter_mut().zip(v.iter()) {
                    *pj += (1.0 - case_share) * w / voice_total.max(1e-6) * x;
                }
            }
            if let Some(v) = &case_p {
                for (pj, x) in p.iter_mut().zip(v) {
                    *pj += case_share * x;
                }
            }
            let top_of = |v: &Option<Vec<f32>>| v.as_ref().and_then(|v| (0..v.len()).filter(|&j| v[j] > 0.0).max_by(|&a, &b| v[a].total_cmp(&v[b]).then_with(|| b.cmp(&a))));
            let model_top = top_of(&model_p);
            let model_top_p = model_top.and_then(|j| model_p.as_ref().map(|v| v[j])).unwrap_or(0.0);
            let duty_top = top_of(&duty_p);
            if let (Some(j), Some(m)) = (model_top, &self.model) {
                reasons.push(Reason::Model { model: m.version(), dept: depts[j].clone(), confidence: model_top_p });
            }
            if let (Some(j), Some(v)) = (duty_top, &duty_p) {
                reasons.push(Reason::Duty { dept: depts[j].clone(), probability: v[j] });
            }
            for h in hits.iter().take(3) {
                reasons.push(Reason::Keywords { dept: h.dept.clone(), matched: h.matched.clone() });
            }
            for c in case_list.iter().take(3) {
                reasons.push(Reason::SimilarCase { ticket_id: c.ticket_id, dept: c.dept.clone(), similarity: c.similarity });
            }
            let mut order: Vec<usize> = (0..depts.len()).filter(|&j| p[j] > 0.0).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then_with(|| a.cmp(&b)));
            let trusted = model_top.filter(|_| model_top_p >= self.config.model_trusted_from);
            if let Some(j) = trusted {
                order.retain(|&x| x != j);
                order.insert(0, j);
            }
            let Some(&lead_j) = order.first() else {
                out.push(Suggestion { lead: None, co_handlers: Vec::new(), bucket: Bucket::Human, candidates: Vec::new(), reasons, decided_by: "none".into(), blend: None });
                continue;
            };
            let blend = trusted.is_none().then(|| BlendEvidence {
                share: p[lead_j],
                duty: duty_p.as_ref().map_or(0.0, |v| v[lead_j]),
                keyword_names_lead: hits.first().is_some_and(|h| h.dept == depts[lead_j]),
            });
            let confidence = match &blend {
                None => model_top_p,
                Some(e) => {
                    let z: f32 = e.features().iter().zip(self.config.calibration).map(|(x, c)| x * c).sum();
                    1.0 / (1.0 + (-z).exp())
                }
            };
            let decided_by = if trusted.is_some() || (duty_top.is_none() && model_top == Some(lead_j)) {
                "model"
            } else if duty_top == Some(lead_j) {
                "duty"
            } else if hits.first().is_some_and(|h| h.dept == depts[lead_j]) {
                "keywords"
            } else if model_top == Some(lead_j) {
                "model"
            } else {
                "similar_cases"
            };
            let mut candidates: Vec<Candidate> = order.iter().take(5).map(|&j| self.candidate(&depts[j], p[j])).collect();
            candidates[0].confidence = confidence;
            let mut bucket = self.bucket(confidence);
            // Evidence that disagrees is not automatic: the trained model sure of another
            // department, or no duty model to corroborate (keywords and cases alone are not
            // calibrated).
            let vetoed = trusted.is_none() && model_top.is_some_and(|j| j != lead_j) && model_top_p >= self.config.model_veto_from;
            if bucket == Bucket::Auto && (vetoed || (duty_p.is_none() && trusted.is_none())) {
                bucket = Bucket::Review;
                reasons.push(match model_top.filter(|_| vetoed) {
                    Some(j) => Reason::NotAutomatic { cause: "model_disagrees".into(), dept: Some(depts[j].clone()), confidence: Some(model_top_p) },
                    None => Reason::NotAutomatic { cause: "uncorroborated".into(), dept: None, confidence: None },
                });
            }
            let lead = Some(candidates[0].clone());
            let co_handlers = candidates.iter().skip(1).filter(|c| c.confidence >= self.config.co_handler_threshold).cloned().collect();
            out.push(Suggestion { lead, co_handlers, bucket, candidates, reasons, decided_by: decided_by.into(), blend });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::departments::test_catalogue;

    fn rules(c: &Catalogue) -> Vec<Rule> {
        parse_rules(
            r#"
[[rule]]
id = "gas-leak"
description = "燃气泄漏危及安全"
any = ["燃气泄漏", "煤气味"]
none = ["演练"]
lead = "gas"
co_handlers = ["emergency"]

[[rule]]
id = "unpaid-wages"
any = ["拖欠工资", "欠薪"]
all = ["工地"]
lead = "hrss"
"#,
            c,
        )
        .unwrap()
    }

    fn dispatcher(config: DispatchConfig) -> Dispatcher {
        let c = Arc::new(test_catalogue());
        let r = rules(&c);
        Dispatcher::new(c, r, None, config).unwrap()
    }

    #[test]
    fn a_matching_rule_wins_and_explains_itself() {
        let d = dispatcher(DispatchConfig::default());
        let s = d.suggest("楼道里有很浓的煤气味，驾驶证也丢了", &[], &[]).unwrap();
        assert_eq!(s.decided_by, "rule");
        assert_eq!(s.lead.as_ref().unwrap().dept, "gas");
        assert_eq!(s.co_handlers[0].dept, "emergency");
        assert_eq!(s.bucket, Bucket::Auto);
        assert!(matches!(&s.reasons[0], Reason::Rule { rule, matched, .. } if rule == "gas-leak" && matched == &vec!["煤气味".to_string()]));
        // `none` words veto the rule; `all` words are required.
        assert_ne!(d.suggest("燃气泄漏应急演练通知", &[], &[]).unwrap().decided_by, "rule");
        assert_ne!(d.suggest("公司拖欠工资", &[], &[]).unwrap().decided_by, "rule");
        assert_eq!(d.suggest("工地老板拖欠工资三个月", &[], &[]).unwrap().lead.unwrap().dept, "hrss");
    }

    #[test]
    fn keywords_alone_never_dispatch_automatically() {
        let d = dispatcher(DispatchConfig { auto_threshold: 0.5, review_threshold: 0.3, ..Default::default() });
        let s = d.suggest("我想提取公积金", &[], &[]).unwrap();
        assert_eq!(s.lead.as_ref().unwrap().dept, "housing-fund");
        assert_eq!(s.decided_by, "keywords");
        assert_eq!(s.bucket, Bucket::Review, "uncalibrated evidence is capped at review");
        let none = d.suggest("你好", &[], &[]).unwrap();
        assert!(none.lead.is_none());
        assert_eq!(none.bucket, Bucket::Human);
    }

    #[test]
    fn thresholds_pick_the_bucket() {
        let d = dispatcher(DispatchConfig { auto_threshold: 0.8, review_threshold: 0.5, ..Default::default() });
        assert_eq!(d.bucket(0.8), Bucket::Auto);
        assert_eq!(d.bucket(0.79), Bucket::Review);
        assert_eq!(d.bucket(0.5), Bucket::Review);
        assert_eq!(d.bucket(0.49), Bucket::Human);
        assert!(DispatchConfig { auto_threshold: 0.3, review_threshold: 0.5, ..Default::default() }.validate().is_err());
        assert!(DispatchConfig { auto_threshold: 1.5, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn a_department_that_returned_the_ticket_is_excluded() {
        let d = dispatcher(DispatchConfig::default());
        let text = "社保断缴了，养老保险怎么补，公积金也想咨询";
        let first = d.suggest(text, &[], &[]).unwrap();
        assert_eq!(first.lead.as_ref().unwrap().dept, "hrss");
        let again = d.suggest(text, &["hrss".to_string()], &[]).unwrap();
        assert_eq!(again.lead.as_ref().unwrap().dept, "housing-fund");
        assert!(again.candidates.iter().all(|c| c.dept != "hrss"));
        assert!(again.reasons.iter().any(|r| matches!(r, Reason::Excluded { dept, .. } if dept == "hrss")));
        // A rule whose lead returned the ticket no longer applies.
        let r = d.suggest("煤气味很重", &["gas".to_string()], &[]).unwrap();
        assert_ne!(r.decided_by, "rule");
    }

    #[test]
    fn similar_cases_vote_with_their_similarity() {
        let d = dispatcher(DispatchConfig::default());
        let cases = vec![
            SimilarCase { ticket_id: 7, dept: "traffic-police".into(), similarity: 0.9 },
            SimilarCase { ticket_id: 9, dept: "hrss".into(), similarity: 0.3 },
        ];
        let s = d.suggest("上次那个事情还没处理", &[], &cases).unwrap();
        assert_eq!(s.lead.unwrap().dept, "traffic-police");
        assert!(s.reasons.iter().any(|r| matches!(r, Reason::SimilarCase { ticket_id: 7, .. })));
    }

    fn ex(dept: &str, text: &str) -> crate::intel::duty::DutyExample {
        crate::intel::duty::DutyExample { dept: dept.into(), text: text.into(), matter: None }
    }

    /// The test catalogue with a few written requests, so the duty model speaks.
    fn with_duty(config: DispatchConfig) -> Dispatcher {
        let c = test_catalogue()
            .with_examples(&[
                ex("hrss", "老板三个月没给钱了，人也找不着"),
                ex("hrss", "干完活工头不给结账"),
                ex("gas", "厨房里一股臭鸡蛋味，灶台打不着火"),
                ex("gas", "家里的灶点不着火了"),
                ex("traffic-police", "有辆车天天横在我家门口"),
                ex("emergency", "山上下大雨了村里要不要转移"),
            ])
            .unwrap();
        let c = Arc::new(c);
        let r = rules(&c);
        Dispatcher::new(c, r, None, config).unwrap()
    }

    #[test]
    fn the_duty_model_places_requests_without_a_keyword() {
        let d = with_duty(DispatchConfig::default());
        let s = d.suggest("干了三个月的活，老板一分钱没给", &[], &[]).unwrap();
        assert_eq!(s.lead.as_ref().unwrap().dept, "hrss", "{s:?}");
        assert_eq!(s.decided_by, "duty");
        assert!(s.reasons.iter().any(|r| matches!(r, Reason::Duty { dept, .. } if dept == "hrss")));
        let c = s.lead.unwrap().confidence;
        assert!(c > 0.0 && c < 1.0, "a calibrated confidence, not a raw share: {c}");
    }

    #[test]
    fn a_rule_the_duty_model_disputes_is_not_automatic() {
        let d = with_duty(DispatchConfig::default());
        // "工地" + "拖欠工资" is the wages rule, and the duty model agrees: automatic.
        let agreed = d.suggest("工地老板拖欠工资三个月，干完活工头不给结账", &[], &[]).unwrap();
        assert_eq!(agreed.decided_by, "rule");
        assert_eq!(agreed.bucket, Bucket::Auto, "{agreed:?}");
        // The gas rule's words inside a message the duty model reads as someone else's.
        let disputed = d.suggest("有辆车天天横在我家门口，车主说他闻到煤气味才停这儿的", &[], &[]).unwrap();
        assert_eq!(disputed.decided_by, "rule");
        assert_eq!(disputed.lead.as_ref().unwrap().dept, "gas");
        assert_ne!(disputed.bucket, Bucket::Auto, "{disputed:?}");
        assert!(disputed.reasons.iter().any(|r| matches!(r, Reason::Duty { dept, .. } if dept == "traffic-police")), "{disputed:?}");
        assert!(disputed.reasons.iter().any(|r| matches!(r, Reason::NotAutomatic { cause, .. } if cause == "rule_disputed")), "{disputed:?}");
    }

    #[test]
    fn rules_must_name_known_departments() {
        let c = test_catalogue();
        let e = parse_rules("[[rule]]\nid='x'\nany=['a']\nlead='nobody'\n", &c).unwrap_err();
        assert!(e.contains("nobody"));
        assert!(parse_rules("[[rule]]\nid='x'\nlead='gas'\n", &c).is_err());
    }
}
