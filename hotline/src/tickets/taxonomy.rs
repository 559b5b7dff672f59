//! The three-level category taxonomy (`knowledge-base/taxonomy.toml`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level2 {
    /// Department that usually leads tickets of this category.
    #[serde(default)]
    pub dept: Option<String>,
    #[serde(default)]
    pub items: Vec<String>,
}

/// Level 1 → level 2 → level-3 items.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Taxonomy {
    pub tree: BTreeMap<String, BTreeMap<String, Level2>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("{0}")]
    Invalid(String),
}

impl Taxonomy {
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn load(path: &Path) -> Result<Self, TaxonomyError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TaxonomyError::Io { path: p.clone(), source })?;
        let t = Self::from_toml(&text).map_err(|source| TaxonomyError::Parse { path: p.clone(), source })?;
        if t.tree.is_empty() {
            return Err(TaxonomyError::Invalid(format!("{p}: no categories")));
        }
        Ok(t)
    }

    /// `Ok` when `path` (1–3 names) is a path in the tree; else a message naming the bad level.
    pub fn check(&self, path: &[String]) -> Result<(), String> {
        let Some(l1) = path.first() else { return Ok(()) };
        let Some(l2s) = self.tree.get(l1) else {
            return Err(format!("unknown level-1 category {l1:?}; known: {}", self.tree.keys().cloned().collect::<Vec<_>>().join("、")));
        };
        let Some(l2) = path.get(1) else { return Ok(()) };
        let Some(node) = l2s.get(l2) else {
            return Err(format!("unknown level-2 category {l2:?} under {l1}; known: {}", l2s.keys().cloned().collect::<Vec<_>>().join("、")));
        };
        if let Some(l3) = path.get(2) {
            if !node.items.contains(l3) {
                return Err(format!("unknown level-3 category {l3:?} under {l1}/{l2}; known: {}", node.items.join("、")));
            }
        }
        Ok(())
    }

    pub fn lead_dept_hint(&self, path: &[String]) -> Option<&str> {
        self.tree.get(path.first()?)?.get(path.get(1)?)?.dept.as_deref()
    }

    pub fn count(&self) -> (usize, usize, usize) {
        let l2: usize = self.tree.values().map(|m| m.len()).sum();
        let l3: usize = self.tree.values().flat_map(|m| m.values()).map(|n| n.items.len()).sum();
        (self.tree.len(), l2, l3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn starter_taxonomy_loads_and_checks_paths() {
        let t = Taxonomy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../knowledge-base/taxonomy.toml")).unwrap();
        let (l1, l2, l3) = t.count();
        assert!(l1 >= 10 && l2 >= 15 && l3 >= 60, "{l1} {l2} {l3}");
        assert!(t.check(&v(&["城乡建设", "物业管理", "电梯故障停运"])).is_ok());
        assert!(t.check(&v(&["城乡建设"])).is_ok());
        let e = t.check(&v(&["城乡建设", "物业管理", "不存在"])).unwrap_err();
        assert!(e.contains("level-3") && e.contains("电梯故障停运"), "{e}");
        assert!(t.check(&v(&["火星事务"])).unwrap_err().contains("level-1"));
        assert_eq!(t.lead_dept_hint(&v(&["生态环境", "污染防治"])), Some("生态环境局"));
    }
}
