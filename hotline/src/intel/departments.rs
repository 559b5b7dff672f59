//! The department catalogue (`knowledge-base/departments.toml`): who handles what, the names a
//! department goes by in history data, and the words citizens use for its duties.

use std::collections::HashMap;
use std::path::Path;

use aho_corasick::{AhoCorasick, MatchKind};
use serde::{Deserialize, Serialize};

use crate::intel::duty::{read_examples, DutyExample, DutyModel};
use crate::intel::IntelError;

/// The folder of written requests per department, beside `departments.toml`.
pub const EXAMPLES_DIR: &str = "dispatch_examples";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub duties: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    department: Vec<Department>,
}

/// Keyword evidence for one department.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeywordHit {
    pub dept: String,
    /// Distinct keywords found, in order of first occurrence.
    pub matched: Vec<String>,
    /// Sum of matched keyword lengths (characters): longer keywords are more specific.
    pub score: f32,
}

pub struct Catalogue {
    departments: Vec<Department>,
    by_id: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
    keywords: AhoCorasick,
    /// Pattern index → (department index, keyword).
    keyword_owner: Vec<(usize, String)>,
    /// Trained on the keywords, duties and written examples (`dispatch_examples/` beside the
    /// catalogue file), when there are examples.
    duty: Option<DutyModel>,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogue").field("departments", &self.departments.len()).finish()
    }
}

impl Catalogue {
    /// Load `departments.toml`, and the written requests of `dispatch_examples/` beside it when
    /// that folder exists (see [`crate::intel::duty`]).
    pub fn load(path: &Path) -> Result<Catalogue, IntelError> {
        let text = fs_err::read_to_string(path).map_err(|e| IntelError::Config(e.to_string()))?;
        let catalogue = Catalogue::parse(&text).map_err(|e| IntelError::Config(format!("{}: {e}", path.display())))?;
        let examples_dir = path.parent().unwrap_or(Path::new(".")).join(EXAMPLES_DIR);
        if !examples_dir.is_dir() {
            return Ok(catalogue);
        }
        let examples = read_examples(&examples_dir)?;
        catalogue.with_examples(&examples).map_err(|e| IntelError::Config(format!("{}: {e}", examples_dir.display())))
    }

    /// Train the duty model on the catalogue and `examples` (replacing any earlier one).
    pub fn with_examples(mut self, examples: &[DutyExample]) -> Result<Catalogue, String> {
        let depts: Vec<(String, Vec<String>, String)> = self.departments.iter().map(|d| (d.id.clone(), d.keywords.clone(), d.duties.clone())).collect();
        self.duty = Some(DutyModel::train(&depts, examples)?);
        Ok(self)
    }

    /// The model of the departments' duties, when the catalogue came with written examples.
    pub fn duty_model(&self) -> Option<&DutyModel> {
        self.duty.as_ref()
    }

    pub fn parse(text: &str) -> Result<Catalogue, String> {
        let file: CatalogueFile = toml::from_str(text).map_err(|e| e.to_string())?;
        Catalogue::new(file.department)
    }

    pub fn new(departments: Vec<Department>) -> Result<Catalogue, String> {
        if departments.is_empty() {
            return Err("no [[department]] entries".into());
        }
        let mut by_id = HashMap::new();
        let mut by_name = HashMap::new();
        let mut patterns = Vec::new();
        let mut keyword_owner = Vec::new();
        for (i, d) in departments.iter().enumerate() {
            if d.id.trim().is_empty() || d.name.trim().is_empty() {
                return Err(format!("department #{}: id and name must not be empty", i + 1));
            }
            if by_id.insert(d.id.clone(), i).is_some() {
                return Err(format!("department id {} is used twice", d.id));
            }
            for n in std::iter::once(&d.name).chain(&d.aliases) {
                if let Some(j) = by_name.insert(n.trim().to_string(), i) {
                    if j != i {
                        return Err(format!("name {n:?} belongs to both {} and {}", departments[j].id, d.id));
                    }
                }
            }
            for k in &d.keywords {
                let k = k.trim();
                if !k.is_empty() {
                    patterns.push(k.to_string());
                    keyword_owner.push((i, k.to_string()));
                }
            }
        }
        let keywords = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| format!("keywords: {e}"))?;
        Ok(Catalogue { departments, by_id, by_name, keywords, keyword_owner, duty: None })
    }

    pub fn departments(&self) -> &[Department] {
        &self.departments
    }

    pub fn get(&self, id: &str) -> Option<&Department> {
        self.by_id.get(id).map(|&i| &self.departments[i])
    }

    /// The department a history label names: its id, its name or an alias; a label listing
    /// several departments (`甲、乙`) resolves to the first one the catalogue knows.
    pub fn resolve_label(&self, label: &str) -> Option<&Department> {
        let label = label.trim();
        if let Some(&i) = self.by_id.get(label).or_else(|| self.by_name.get(label)) {
            return Some(&self.departments[i]);
        }
        label.split(['、', ',', '，', ';', '；']).find_map(|p| self.by_name.get(p.trim()).map(|&i| &self.departments[i]))
    }

    /// Departments whose keywords occur in `text`, best first.
    pub fn keyword_hits(&self, text: &str) -> Vec<KeywordHit> {
        let mut hits: HashMap<usize, KeywordHit> = HashMap::new();
        for m in self.keywords.find_overlapping_iter(text) {
            let (d, kw) = &self.keyword_owner[m.pattern().as_usize()];
            let h = hits.entry(*d).or_insert_with(|| KeywordHit { dept: self.departments[*d].id.clone(), matched: Vec::new(), score: 0.0 });
            if !h.matched.contains(kw) {
                h.matched.push(kw.clone());
                h.score += kw.chars().count() as f32;
            }
        }
        let mut v: Vec<KeywordHit> = hits.into_values().collect();
        v.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.dept.cmp(&b.dept)));
        v
    }
}

#[cfg(test)]
pub(crate) fn test_catalogue() -> Catalogue {
    Catalogue::parse(
        r#"
[[department]]
id = "hrss"
name = "市人力资源和社会保障局"
aliases = ["人社局", "人力资源社会保障局"]
duties = "社会保险、就业与劳动关系"
keywords = ["社保", "养老保险", "拖欠工资", "劳动合同"]

[[department]]
id = "housing-fund"
name = "住房公积金管理中心"
aliases = ["公积金中心"]
keywords = ["公积金"]

[[department]]
id = "traffic-police"
name = "市公安局交通管理局"
aliases = ["交管局"]
keywords = ["驾驶证", "违章", "罚单"]

[[department]]
id = "gas"
name = "燃气集团"
keywords = ["燃气", "煤气"]

[[department]]
id = "emergency"
name = "市应急管理局"
aliases = ["应急局"]
keywords = ["地震", "防汛"]
"#,
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_by_name_alias_and_list() {
        let c = test_catalogue();
        assert_eq!(c.resolve_label("人社局").unwrap().id, "hrss");
        assert_eq!(c.resolve_label(" 住房公积金管理中心 ").unwrap().id, "housing-fund");
        assert_eq!(c.resolve_label("某某局、交管局").unwrap().id, "traffic-police");
        assert!(c.resolve_label("不存在的单位").is_none());
    }

    #[test]
    fn keyword_hits_rank_by_specificity() {
        let c = test_catalogue();
        let h = c.keyword_hits("公司拖欠工资，社保也没交，还想问公积金");
        assert_eq!(h[0].dept, "hrss");
        assert_eq!(h[0].matched, vec!["拖欠工资", "社保"]);
        assert_eq!(h[1].dept, "housing-fund");
        assert!(c.keyword_hits("今天天气不错").is_empty());
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let e = Catalogue::parse("[[department]]\nid='a'\nname='甲'\n[[department]]\nid='b'\nname='乙'\naliases=['甲']\n").unwrap_err();
        assert!(e.contains("甲"), "{e}");
    }
}
