//! Smart form filling (智能填单): a ticket draft from a call transcript or a chat, every field
//! with where it came from (`rule` patterns with the matched text, or a `model` with its
//! confidence) so the agent or citizen can check it before the ticket is created.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Serialize;

use crate::intel::artifact::Ranked;
use crate::redact::{find_pii, PiiKind};
use crate::tickets::model::{Address, Channel, Contact, NewTicket, RequestType, Urgency};
use crate::tickets::taxonomy::Taxonomy;

/// Where a field's value came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    /// `rule` or `model`.
    pub source: &'static str,
    /// The rule or model name.
    pub by: String,
    /// The words it was read from (rules) or the confidence (models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FormDraft {
    pub ticket: NewTicket,
    /// Field path (`contact.phone`, `request_type`, …) → provenance.
    pub provenance: BTreeMap<String, Provenance>,
}

fn rule(by: &str, evidence: &str) -> Provenance {
    Provenance { source: "rule", by: by.into(), evidence: Some(evidence.into()), confidence: None }
}

/// Teddy-style first-level labels → this deployment's taxonomy (when it has them).
fn taxonomy_l1(label: &str) -> &str {
    match label {
        "教育文体" => "教育",
        "卫生计生" => "卫生健康",
        "商贸旅游" => "市场监管",
        "环境保护" => "生态环境",
        other => other,
    }
}

/// Request type from the type model's label and the words used.
fn request_type(model_label: Option<&str>, text: &str) -> (RequestType, &'static str) {
    if ["举报", "检举", "违法经营", "偷排"].iter().any(|w| text.contains(w)) {
        return (RequestType::Report, "words: 举报");
    }
    match model_label {
        Some("咨询") => (RequestType::Consult, "model"),
        Some("建言") | Some("建议") => (RequestType::Suggestion, "model"),
        Some(_) if ["求助", "帮帮", "帮忙", "救救", "被困"].iter().any(|w| text.contains(w)) => (RequestType::Help, "model + words: 求助"),
        Some(_) => (RequestType::Complaint, "model"),
        None if text.contains("请问") || text.contains("咨询") || text.contains('？') || text.contains('?') => (RequestType::Consult, "words: 请问/咨询"),
        None => (RequestType::Complaint, "default"),
    }
}

pub struct FormFiller {
    district: Regex,
    street: Regex,
    address: Regex,
    name: Regex,
}

impl Default for FormFiller {
    fn default() -> Self {
        FormFiller::new()
    }
}

impl FormFiller {
    pub fn new() -> FormFiller {
        FormFiller {
            district: Regex::new(r"([\p{Han}A-Za-z0-9]{1,6}?(?:新区|区|县))").expect("district regex"),
            street: Regex::new(r"([\p{Han}]{2,6}?(?:街道|镇|乡))").expect("street regex"),
            address: Regex::new(r"([\p{Han}A-Za-z0-9]{2,16}?(?:路|街|大道|巷|胡同|小区|花园|家园|公寓|村)(?:[0-9一二三四五六七八九十]+(?:号院|号楼|号|栋|幢|单元|室))*)").expect("address regex"),
            name: Regex::new(r"(?:我(?:叫|是|姓))([\p{Han}]{1,3}?)(?:[，,。 ]|先生|女士|$)").expect("name regex"),
        }
    }

    /// A draft ticket from `text` (the citizen's words). `type_top` / `category_top` are the
    /// classifiers' rankings, when loaded.
    pub fn fill(&self, text: &str, channel: Channel, type_top: Option<(&str, &[Ranked])>, category_top: Option<(&str, &[Ranked])>, taxonomy: Option<&Taxonomy>) -> FormDraft {
        let mut prov = BTreeMap::new();
        let mut contact = Contact::default();
        for m in find_pii(text) {
            let found = text[m.start..m.end].to_string();
            match m.kind {
                PiiKind::Mobile | PiiKind::Landline if contact.phone.is_none() => {
                    prov.insert("contact.phone".into(), rule("phone pattern", &found));
                    contact.phone = Some(found);
                }
                PiiKind::IdNumber if contact.id_number.is_none() => {
                    prov.insert("contact.id_number".into(), rule("resident ID pattern + check digit", &found));
                    contact.id_number = Some(found);
                }
                PiiKind::Email if contact.email.is_none() => {
                    prov.insert("contact.email".into(), rule("e-mail pattern", &found));
                    contact.email = Some(found);
                }
                _ => {}
            }
        }
        if let Some(c) = self.name.captures(text).and_then(|c| c.get(1)) {
            contact.name = Some(c.as_str().to_string());
            prov.insert("contact.name".into(), rule("我叫/我是/我姓", c.as_str()));
        }
        // Leading function words the patterns pick up ("我是", "我们", "住在" …), removed until none is left.
        let strip = |s: &str| -> String {
            let mut s = s;
            loop {
                let before = s.len();
                for p in ["我家住在", "我住在", "住在", "位于", "我们", "我在", "在", "是", "的", "家", "我", "们"] {
                    if let Some(r) = s.strip_prefix(p) {
                        s = r;
                    }
                }
                if s.len() == before {
                    return s.to_string();
                }
            }
        };
        let mut address = Address::default();
        let mut after = 0usize;
        // The first 区/县 that is an administrative district: "我们小区", "社区", "景区" and
        // "阳光小区" end in 区 too.
        for m in self.district.find_iter(text) {
            let d = strip(m.as_str());
            if d.chars().count() >= 2 && !is_place_noun(&d) {
                prov.insert("address.district".into(), rule("区/县 pattern", m.as_str()));
                address.district = Some(d);
                after = m.end();
                break;
            }
        }
        if let Some(m) = self.street.find(&text[after..]) {
            let mut d = strip(m.as_str());
            if let Some(rest) = address.district.as_deref().and_then(|dist| d.strip_prefix(dist)) {
                d = rest.to_string();
            }
            if d.chars().count() >= 3 {
                prov.insert("address.street".into(), rule("街道/镇 pattern", m.as_str()));
                address.street = Some(d);
                after += m.end();
            }
        }
        if let Some(m) = self.address.find(&text[after..]) {
            let a = strip(m.as_str());
            // "小区" alone says nothing: an address needs a name as well.
            if a.chars().count() >= 4 {
                prov.insert("address.text".into(), rule("road/estate + number pattern", m.as_str()));
                address.text = a.chars().take(200).collect();
            }
        }
        let type_label = type_top.and_then(|(_, r)| r.first()).map(|r| r.label.as_str());
        let (rt, why) = request_type(type_label, text);
        prov.insert(
            "request_type".into(),
            match (why, type_top.and_then(|(m, r)| r.first().map(|x| (m, x)))) {
                (w, Some((m, top))) if w.starts_with("model") => Provenance { source: "model", by: format!("{m} ({w})"), evidence: Some(top.label.clone()), confidence: Some(top.confidence) },
                (w, _) => Provenance { source: "rule", by: w.into(), evidence: None, confidence: None },
            },
        );
        let mut category = Vec::new();
        if let Some((m, top)) = category_top.and_then(|(m, r)| r.first().map(|x| (m, x))) {
            let l1 = taxonomy_l1(&top.label);
            if taxonomy.is_none_or(|t| t.tree.contains_key(l1)) {
                category.push(l1.to_string());
                prov.insert("category".into(), Provenance { source: "model", by: m.to_string(), evidence: Some(top.label.clone()), confidence: Some(top.confidence) });
            }
        }
        let urgent_words = ["着火", "火灾", "煤气味", "燃气泄漏", "被困", "受伤", "晕倒", "触电", "坍塌", "爆炸"];
        let urgency = match urgent_words.iter().find(|w| text.contains(**w)) {
            Some(w) => {
                prov.insert("urgency".into(), rule("danger words", w));
                Urgency::Critical
            }
            None => Urgency::Normal,
        };
        // Summary: the first sentence that says something, at most 60 characters.
        let summary: String = text
            .split(['。', '！', '!', '？', '?', '\n'])
            .map(str::trim)
            .find(|s| s.chars().count() >= 4)
            .unwrap_or(text.trim())
            .chars()
            .take(60)
            .collect();
        prov.insert("summary".into(), rule("first sentence", &summary));
        FormDraft {
            ticket: NewTicket {
                channel,
                contact,
                address,
                request_type: rt,
                category,
                summary,
                text: text.chars().take(20_000).collect(),
                transcript_ref: None,
                urgency,
                lead_dept: None,
                co_handlers: Vec::new(),
                actor: None,
            },
            provenance: prov,
        }
    }
}

/// Words ending in 区 that name a kind of place, not a district: a match that is one of them, or
/// ends with one of the first group (a housing estate's or a park's own name), is not a 区.
fn is_place_noun(d: &str) -> bool {
    const NAME_ENDINGS: &[&str] = &["小区", "社区", "园区", "校区", "景区", "厂区", "营区", "矿区", "住宅区", "生活区", "家属区", "办公区", "服务区", "保护区", "宿舍区"];
    const EXACT: &[&str] = &["城区", "市区", "郊区", "片区", "辖区", "山区", "老区", "新区", "商业区", "工业区", "开发区", "灾区", "地区", "本区", "该区", "全区", "各区"];
    NAME_ENDINGS.iter().any(|w| d.ends_with(w)) || EXACT.contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_housing_estate_is_not_a_district() {
        let f = FormFiller::new();
        let d = |t: &str| f.fill(t, Channel::Phone, None, None, None).ticket.address.district;
        assert_eq!(d("我们小区门口那个井盖没了"), None);
        assert_eq!(d("阳光小区3号楼电梯坏了"), None);
        assert_eq!(d("我们小区在朝阳区，井盖没了").as_deref(), Some("朝阳区"));
        assert_eq!(d("西城区社区医院态度差").as_deref(), Some("西城区"));
    }

    #[test]
    fn fields_are_read_from_the_words_with_their_provenance() {
        let f = FormFiller::new();
        let text = "你好，我叫王芳，电话13812345678。我住在东城区和平街道幸福路12号3单元，楼道里闻到煤气味，请尽快派人来看看。";
        let d = f.fill(text, Channel::Phone, None, None, None);
        let t = &d.ticket;
        assert_eq!(t.contact.name.as_deref(), Some("王芳"));
        assert_eq!(t.contact.phone.as_deref(), Some("13812345678"));
        assert_eq!(t.address.district.as_deref(), Some("东城区"));
        assert_eq!(t.address.street.as_deref(), Some("和平街道"));
        assert!(t.address.text.starts_with("幸福路12号"), "{}", t.address.text);
        assert_eq!(t.urgency, Urgency::Critical);
        assert_eq!(d.provenance["urgency"].evidence.as_deref(), Some("煤气味"));
        assert_eq!(d.provenance["contact.phone"].source, "rule");
        assert!(t.summary.starts_with("你好，我叫王芳"), "{}", t.summary);
        assert!(t.validate(None).is_ok(), "{:?}", t.validate(None));
    }

    #[test]
    fn models_fill_type_and_category_when_given() {
        let f = FormFiller::new();
        let ty = vec![Ranked { label: "咨询".into(), confidence: 0.8 }];
        let cat = vec![Ranked { label: "教育文体".into(), confidence: 0.6 }];
        let d = f.fill("请问孩子入学需要准备哪些材料", Channel::App, Some(("classify-msgabench-type", ty.as_slice())), Some(("classify-teddy", cat.as_slice())), None);
        assert_eq!(d.ticket.request_type, RequestType::Consult);
        assert_eq!(d.ticket.category, vec!["教育".to_string()]);
        assert_eq!(d.provenance["category"].confidence, Some(0.6));
        assert_eq!(d.provenance["request_type"].source, "model");
        let r = f.fill("我要举报一家饭店偷排污水", Channel::App, Some(("m", ty.as_slice())), None, None);
        assert_eq!(r.ticket.request_type, RequestType::Report);
        let s = f.fill("你好，我是A市A3区的居民，我们小区旁边的工地晚上还在施工", Channel::Phone, None, None, None);
        assert_eq!(s.ticket.address.district.as_deref(), Some("A市A3区"));
        assert!(s.ticket.address.text.is_empty(), "a bare 小区 is not an address: {:?}", s.ticket.address.text);
    }
}
