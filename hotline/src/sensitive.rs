//! Sensitive-word screening with normalisation.
//!
//! Text and list words pass through the same normaliser: full-width → half-width, upper → lower
//! case, traditional → simplified (`fast2s`, MIT, one character out per character in), and
//! "noise" characters (spaces, punctuation, symbols, zero-width characters) dropped, so
//! `Ｆ.U.C.K`, `去 死` and `不想活了` written in traditional characters all match. Every
//! normalised character remembers its byte span in the original, so hits map back for masking.
//!
//! Each category has an action: `flag` (keep the text, raise a flag on the ticket, e.g. a threat
//! or a risk of self-harm that a supervisor must see) or `mask` (replace the word with `*` in
//! views, exports and prompts, e.g. insults or spam).

use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum WordListError {
    #[error("reading word list: {0}")]
    Io(#[from] std::io::Error),
    #[error("parsing word list: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("word list: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Flag,
    Mask,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// Machine name, e.g. `self_harm`.
    pub name: String,
    /// Label shown to agents, e.g. 自伤风险.
    #[serde(default)]
    pub label: String,
    pub action: Action,
    pub words: Vec<String>,
    /// A hit raises a new ticket to this urgency (safety hazards: a missing manhole cover, a
    /// gas smell), whoever files it: a citizen may not set urgency, the word list may.
    #[serde(default)]
    pub urgency: Option<crate::tickets::model::Urgency>,
    /// What to tell the caller to do right now (keep away, call 119 …), shown before anything else.
    #[serde(default)]
    pub advice: Option<String>,
}

/// A safety hazard found in a text: the highest urgency among the hit categories that set one,
/// and their advice (in list order, without repeats).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hazard {
    pub urgency: crate::tickets::model::Urgency,
    pub categories: Vec<String>,
    pub advice: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    #[serde(rename = "category")]
    categories: Vec<Category>,
}

/// One hit: byte span in the original text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub category: String,
    pub action: Action,
    pub word: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Screening {
    pub hits: Vec<Hit>,
}

impl Screening {
    /// Categories with action `flag` that were hit (sorted, unique).
    pub fn flags(&self) -> Vec<String> {
        let mut f: Vec<String> = self.hits.iter().filter(|h| h.action == Action::Flag).map(|h| h.category.clone()).collect();
        f.sort();
        f.dedup();
        f
    }

    /// `text` (the one screened) with every `mask` hit replaced by `*` per character.
    pub fn apply_masks(&self, text: &str) -> String {
        let mut spans: Vec<(usize, usize)> =
            self.hits.iter().filter(|h| h.action == Action::Mask).map(|h| (h.start, h.end)).collect();
        spans.sort();
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (s, e) in spans {
            if s < last {
                continue;
            }
            out.push_str(&text[last..s]);
            out.push_str(&"*".repeat(text[s..e].chars().count()));
            last = e;
        }
        out.push_str(&text[last..]);
        out
    }
}

/// Normalise one character: `None` for noise, else the canonical character.
fn normalise_char(c: char) -> Option<char> {
    let c = match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    if is_noise(c) {
        return None;
    }
    let c = c.to_lowercase().next().unwrap_or(c);
    if (c as u32) >= 0x3400 {
        let mut buf = [0u8; 4];
        let s = fast2s::convert(c.encode_utf8(&mut buf));
        return s.chars().next().or(Some(c));
    }
    Some(c)
}

fn is_noise(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(c as u32,
            0x200B..=0x200F | 0xFEFF | 0x00B7 | 0x2010..=0x206F | 0x2190..=0x2BFF | 0x3001..=0x303F
            | 0xFE30..=0xFE4F | 0x1F000..=0x1FAFF)
        || "，。、；：？！…—·「」『』（）《》〈〉【】〔〕".contains(c)
}

/// Normalised text plus, per normalised char, the original byte span.
pub fn normalise(text: &str) -> (String, Vec<(usize, usize)>) {
    let mut out = String::with_capacity(text.len());
    let mut spans = Vec::new();
    for (i, c) in text.char_indices() {
        if let Some(n) = normalise_char(c) {
            out.push(n);
            spans.push((i, i + c.len_utf8()));
        }
    }
    (out, spans)
}

/// A compiled word list.
#[derive(Clone)]
pub struct Screener {
    ac: AhoCorasick,
    /// Per pattern: (category index, original word).
    patterns: Vec<(usize, String)>,
    categories: Vec<Category>,
}

impl std::fmt::Debug for Screener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screener").field("words", &self.patterns.len()).finish()
    }
}

impl Screener {
    pub fn from_toml(text: &str) -> Result<Self, WordListError> {
        let file: ListFile = toml::from_str(text)?;
        Self::new(file.categories)
    }

    pub fn load(path: &Path) -> Result<Self, WordListError> {
        let text = fs_err::read_to_string(path)?;
        Self::from_toml(&text)
    }

    pub fn new(categories: Vec<Category>) -> Result<Self, WordListError> {
        let mut needles = Vec::new();
        let mut patterns = Vec::new();
        for (ci, cat) in categories.iter().enumerate() {
            if cat.name.trim().is_empty() {
                return Err(WordListError::Invalid("a category has an empty name".into()));
            }
            for w in &cat.words {
                let (n, _) = normalise(w);
                if n.is_empty() {
                    return Err(WordListError::Invalid(format!("category {}: word {w:?} is empty after normalisation", cat.name)));
                }
                needles.push(n);
                patterns.push((ci, w.clone()));
            }
        }
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&needles)
            .map_err(|e| WordListError::Invalid(e.to_string()))?;
        Ok(Self { ac, patterns, categories })
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// The hazard `text` reports, if any category with an `urgency` is hit.
    pub fn hazard(&self, text: &str) -> Option<Hazard> {
        let screening = self.screen(text);
        let mut hazard: Option<Hazard> = None;
        for cat in &self.categories {
            let Some(urgency) = cat.urgency else { continue };
            if !screening.hits.iter().any(|h| h.category == cat.name) {
                continue;
            }
            let h = hazard.get_or_insert(Hazard { urgency, categories: Vec::new(), advice: Vec::new() });
            h.urgency = h.urgency.max(urgency);
            h.categories.push(cat.name.clone());
            if let Some(a) = cat.advice.as_ref().filter(|a| !h.advice.contains(a)) {
                h.advice.push(a.clone());
            }
        }
        hazard
    }

    pub fn screen(&self, text: &str) -> Screening {
        let (norm, spans) = normalise(text);
        // Byte offset in `norm` → index of the normalised char.
        let mut char_at = vec![usize::MAX; norm.len() + 1];
        for (ci, (bi, _)) in norm.char_indices().enumerate() {
            char_at[bi] = ci;
        }
        let mut hits = Vec::new();
        for m in self.ac.find_iter(&norm) {
            // ASCII words match whole words only (`sb` is not in `usb`).
            let first = char_at[m.start()];
            let last = norm[..m.end()].chars().count() - 1;
            // Judged on the original text, where spaces still separate words.
            let ascii = norm[m.start()..m.end()].bytes().all(|b| b.is_ascii_alphanumeric());
            let before = text[..spans[first].0].chars().next_back().and_then(normalise_char);
            let after = text[spans[last].1..].chars().next().and_then(normalise_char);
            if ascii && (before.is_some_and(|c| c.is_ascii_alphanumeric()) || after.is_some_and(|c| c.is_ascii_alphanumeric())) {
                continue;
            }
            let (ci, word) = &self.patterns[m.pattern().as_usize()];
            let cat = &self.categories[*ci];
            hits.push(Hit {
                category: cat.name.clone(),
                action: cat.action,
                word: word.clone(),
                start: spans[first].0,
                end: spans[last].1,
            });
        }
        Screening { hits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"
[[category]]
name = "insult"
label = "辱骂"
action = "mask"
words = ["混蛋", "fuck"]

[[category]]
name = "self_harm"
label = "自伤风险"
action = "flag"
words = ["不想活了", "跳楼"]
"#;

    #[test]
    fn normalisation_catches_variants() {
        let s = Screener::from_toml(LIST).unwrap();
        for (text, cat) in [
            ("你们这帮混蛋", "insult"),
            ("你们这帮混 蛋", "insult"),
            ("ＦＵＣＫ you", "insult"),
            ("F.u-c*k", "insult"),
            ("我真的不想活了", "self_harm"),
            ("我真的不想\u{200B}活了", "self_harm"),
            ("他說要跳樓", "self_harm"), // traditional 樓 → 楼
        ] {
            let hits = s.screen(text).hits;
            assert_eq!(hits.len(), 1, "{text}: {hits:?}");
            assert_eq!(hits[0].category, cat, "{text}");
        }
        assert!(s.screen("天气不错，办事顺利，我想好好活下去").hits.is_empty());
        assert!(s.screen("the fuckit usb").hits.is_empty(), "ASCII words match whole words only");
    }

    #[test]
    fn mask_and_flag_actions() {
        let s = Screener::from_toml(LIST).unwrap();
        let text = "混 蛋！我不想活了";
        let r = s.screen(text);
        assert_eq!(r.flags(), vec!["self_harm".to_string()]);
        assert_eq!(r.apply_masks(text), "***！我不想活了", "mask covers the noise inside the word");
    }

    #[test]
    fn bad_lists_are_errors() {
        assert!(Screener::from_toml("[[category]]\nname='x'\naction='delete'\nwords=['a']").is_err());
        assert!(Screener::from_toml("[[category]]\nname='x'\naction='flag'\nwords=['...']").is_err());
    }

    #[test]
    fn starter_list_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../knowledge-base/sensitive_words.toml");
        let s = Screener::load(&path).unwrap();
        assert!(s.categories().len() >= 4);
        assert!(!s.screen("我不想活了").flags().is_empty());
        // Hazards carry urgency and advice; ordinary requests do not.
        let h = s.hazard("小区门口的井盖没了，晚上黑乎乎的").expect("a missing manhole cover is a hazard");
        assert_eq!(h.urgency, crate::tickets::model::Urgency::Urgent);
        assert!(h.advice[0].contains("远离"), "{h:?}");
        assert!(s.hazard("楼下路灯坏了好几天").is_none());
        assert!(s.hazard("我不想活了").is_none(), "a flag without urgency is not a hazard");
        // Everyday wordings of the same dangers.
        for text in ["路口的雨水篦子没了，自行车轮子都卡进去了", "台风过后小区里那根电线杆歪了，电线拖在地上", "楼上外墙砖掉下来了，差点砸到人", "路边那棵大树歪了，看着随时要倒"] {
            assert!(s.hazard(text).is_some(), "{text}");
        }
        for text in ["楼下垃圾好几天没人清了", "电费怎么比上个月多了一倍", "井盖上的字看不清了"] {
            assert!(s.hazard(text).is_none(), "{text}");
        }
    }

    #[test]
    fn a_hazard_takes_the_highest_urgency_and_every_advice_once() {
        let s = Screener::from_toml(
            r#"
[[category]]
name = "gas"
action = "flag"
urgency = "urgent"
advice = "开窗通风。"
words = ["煤气味"]
[[category]]
name = "trapped"
action = "flag"
urgency = "critical"
advice = "拨打119。"
words = ["被困"]
[[category]]
name = "threat"
action = "flag"
words = ["炸掉"]
"#,
        )
        .unwrap();
        let h = s.hazard("楼里有煤气味，还有人被困，煤气味很大").unwrap();
        assert_eq!(h.urgency, crate::tickets::model::Urgency::Critical);
        assert_eq!(h.categories, ["gas", "trapped"]);
        assert_eq!(h.advice, ["开窗通风。", "拨打119。"]);
        assert!(s.hazard("要把这里炸掉").is_none());
        assert!(Screener::from_toml("[[category]]\nname='x'\naction='flag'\nurgency='soon'\nwords=['a']").is_err(), "unknown urgency");
    }
}
