//! Chinese-aware chunking of policy text.
//!
//! The text is read line by line and its structure recognised:
//! - Markdown headings (`#` .. `######`);
//! - 编 / 章 / 节 headings (`第三章 居住证的申领`);
//! - 条 (`第十二条 ...`, articles: a unit of text, shown as `第十二条` or `第十二条第二款`);
//! - numbered headings `一、总体要求` and `（一）适用范围` (short lines without closing
//!   punctuation; inside an article the same markers are items of a list, not headings);
//! - list items (`- `, `* `, `1. `, `1、`, `（1）`) and plain paragraphs.
//!
//! Headings form the section path of the paragraphs under them. Paragraphs of one section are
//! packed into chunks of at most `max_chars` characters, cut preferably where a paragraph ends,
//! else after sentence punctuation (。！？；), else (a very long sentence) at the budget. A tail
//! shorter than `min_chars` is merged into the chunk before it, which can then run up to
//! `max_chars + min_chars` characters (see [`ChunkerConfig`] for the effective values). Two
//! neighbouring chunks of one section share up to `overlap_chars` characters of whole sentences.
//! Chunks never cross a heading. Every chunk is a contiguous, non-empty span of the input: its
//! `start..end` character offsets index `text.chars()`, so a citation can point at the exact
//! source text. Every non-blank character that is not part of a heading lies in some chunk.
//!
//! Any input is accepted (no panics); time and memory are linear in its length. Heading labels
//! are bounded ([`MAX_HEADING_CHARS`], [`MAX_ORDINAL_DIGITS`]) because every chunk under a
//! heading carries a copy of it: a `#` line longer than that is a paragraph, not a heading.
//!
//! Running text with no line breaks (common in scraped notices) is handled too: numbered
//! markers that follow sentence punctuation (`。二、加强...`) are recognised inline as headings.

use serde::{Deserialize, Serialize};

/// Size budget and overlap, in characters. [`chunk`] takes `max_chars` as at least 20, and
/// `overlap_chars` and `min_chars` as at most half of that budget, so a chunk has at most
/// `max(max_chars, 20) + min(min_chars, max(max_chars, 20) / 2)` characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerConfig {
    pub max_chars: usize,
    pub overlap_chars: usize,
    /// A chunk shorter than this is merged into the chunk before it (same section, no overlap
    /// between them) when the two together have at most `max_chars + min_chars` characters.
    pub min_chars: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self { max_chars: 360, overlap_chars: 60, min_chars: 40 }
    }
}

/// One chunk and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position among the document's chunks (0-based).
    pub index: usize,
    /// Headings above the chunk, outermost first, plus the article range (e.g. `第五条至第七条`).
    pub section: Vec<String>,
    /// Character offsets into the document text (`start..end`).
    pub start: usize,
    pub end: usize,
    pub text: String,
}

impl Chunk {
    /// `第二章 申领 > 第五条` style label.
    pub fn section_label(&self) -> String {
        self.section.join(" > ")
    }
}

/// The longest Markdown heading (in characters) taken as a heading; a longer `#` line is a
/// paragraph. Its label is copied into every chunk under it, so it must be bounded.
pub const MAX_HEADING_CHARS: usize = 120;

/// The most numerals in `第…条` / `第…章` (`第一千二百三十四条` has 7); longer runs are not
/// ordinals (and would make unbounded labels).
pub const MAX_ORDINAL_DIGITS: usize = 10;

const CN_DIGITS: &str = "零〇一二三四五六七八九十百千两0123456789０１２３４５６７８９";

fn is_cn_num(c: char) -> bool {
    CN_DIGITS.contains(c)
}

/// Sentence-ending punctuation after which a chunk may be cut.
fn is_sentence_end(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '；' | '!' | '?' | ';' | '…')
}

/// Closing marks that belong to the sentence before them.
fn is_closer(c: char) -> bool {
    matches!(c, '”' | '’' | '」' | '』' | '）' | ')' | '】' | '"' | '\'')
}

#[derive(Debug, Clone, PartialEq)]
enum LineKind {
    /// A heading of the given rank (smaller = outer) and its label.
    Heading { rank: u8, label: String },
    /// Start of an article (条): label like `第五条`; the text of the line is body text.
    Article { label: String },
    Body,
}

/// `第X章` etc. at `chars[i..]`: returns (unit char, end index after the unit char).
fn ordinal_unit(chars: &[char], i: usize) -> Option<(char, usize)> {
    if chars.get(i) != Some(&'第') {
        return None;
    }
    let mut j = i + 1;
    while j < chars.len() && is_cn_num(chars[j]) {
        j += 1;
        if j - (i + 1) > MAX_ORDINAL_DIGITS {
            return None;
        }
    }
    if j == i + 1 || j >= chars.len() {
        return None;
    }
    let unit = chars[j];
    if matches!(unit, '编' | '章' | '节' | '条') {
        Some((unit, j + 1))
    } else {
        None
    }
}

/// `一、` at `chars[i..]`: end index after `、`.
fn cn_enum(chars: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    while j < chars.len() && is_cn_num(chars[j]) && !chars[j].is_ascii_digit() {
        j += 1;
    }
    if j > i && j - i <= 3 && chars.get(j) == Some(&'、') {
        Some(j + 1)
    } else {
        None
    }
}

/// `（一）` / `(一)` at `chars[i..]`: end index after the closing paren.
fn paren_enum(chars: &[char], i: usize) -> Option<usize> {
    if !matches!(chars.get(i), Some('（') | Some('(')) {
        return None;
    }
    let mut j = i + 1;
    while j < chars.len() && is_cn_num(chars[j]) && !chars[j].is_ascii_digit() {
        j += 1;
    }
    if j > i + 1 && j - i <= 4 && matches!(chars.get(j), Some('）') | Some(')')) {
        Some(j + 1)
    } else {
        None
    }
}

fn trim_span(chars: &[char], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && chars[s].is_whitespace() {
        s += 1;
    }
    while e > s && chars[e - 1].is_whitespace() {
        e -= 1;
    }
    (s, e)
}

fn collect(chars: &[char], s: usize, e: usize) -> String {
    chars[s..e].iter().collect()
}

/// Is the line `chars[s..e]` a short heading-like line (no closing punctuation)?
fn headingish(chars: &[char], s: usize, e: usize) -> bool {
    e - s <= 40 && !chars[s..e].iter().any(|c| is_sentence_end(*c) || *c == '，' || *c == ',')
}

fn classify(chars: &[char], s: usize, e: usize, in_article: bool) -> LineKind {
    let line = &chars[s..e];
    // Markdown heading.
    let hashes = line.iter().take_while(|c| **c == '#').count();
    if (1..=6).contains(&hashes)
        && line.get(hashes).is_some_and(|c| c.is_whitespace())
        && line.len() <= MAX_HEADING_CHARS
    {
        let (ls, le) = trim_span(chars, s + hashes, e);
        return LineKind::Heading { rank: hashes as u8, label: collect(chars, ls, le) };
    }
    if let Some((unit, after)) = ordinal_unit(chars, s) {
        let rank = match unit {
            '编' => 1,
            '章' => 2,
            '节' => 3,
            _ => {
                return LineKind::Article { label: collect(chars, s, after) };
            }
        };
        // `第二章 申领` is a heading only when short; `第二节课...` is not a heading at all.
        let next = chars.get(after).copied();
        if next.is_none_or(|c| c.is_whitespace() || c == '\u{3000}') && headingish(chars, s, e) {
            let (ls, le) = trim_span(chars, s, e);
            return LineKind::Heading { rank, label: collect(chars, ls, le) };
        }
        return LineKind::Body;
    }
    if !in_article {
        if cn_enum(chars, s).is_some() && headingish(chars, s, e) {
            return LineKind::Heading { rank: 4, label: collect(chars, s, e) };
        }
        if paren_enum(chars, s).is_some() && headingish(chars, s, e) {
            return LineKind::Heading { rank: 5, label: collect(chars, s, e) };
        }
    }
    LineKind::Body
}

/// A paragraph (or list item) with its section.
#[derive(Debug, Clone)]
struct Unit {
    start: usize,
    end: usize,
    path: Vec<String>,
    /// `第五条` / `第五条第二款` when inside an article.
    article: Option<String>,
    /// How many headings came before it: units of one section between the same two headings
    /// share it, so a chunk (packed from one such run) never crosses a heading, even when two
    /// headings have the same label.
    heading_seq: usize,
}

/// Split running text into logical lines: real line breaks, plus inline numbered headings
/// (`。二、` / `。（三）`) and articles (`。第五条`) that follow sentence punctuation.
fn logical_lines(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            out.push((start, i));
            start = i + 1;
        } else if i > start && breaks_before_marker(chars[i - 1]) {
            // An inline marker starts a new logical line only after a sentence end, a colon or
            // the space scraped text leaves there, so `第五条` quoted mid-sentence stays put.
            let marker = cn_enum(chars, i).is_some()
                || paren_enum(chars, i).is_some()
                || ordinal_unit(chars, i).is_some_and(|(u, _)| u == '条' || u == '章' || u == '节');
            if marker {
                out.push((start, i));
                start = i;
            }
        }
        i += 1;
    }
    out.push((start, chars.len()));
    out
}

fn breaks_before_marker(c: char) -> bool {
    is_sentence_end(c) || matches!(c, '：' | ':' | ' ' | '\u{3000}')
}

/// `二、落实防控措施 企业应当...` (a numbered heading run into its body text): the heading's end.
fn inline_heading_end(chars: &[char], s: usize, e: usize) -> Option<usize> {
    if cn_enum(chars, s).is_none() && paren_enum(chars, s).is_none() {
        return None;
    }
    let w = (s + 1..e.min(s + 41)).find(|&k| chars[k].is_whitespace())?;
    (w > s + 2 && headingish(chars, s, w)).then_some(w)
}

fn units(chars: &[char]) -> Vec<Unit> {
    let mut path: Vec<(u8, String)> = Vec::new();
    let mut article: Option<(String, usize)> = None; // label, 款 count
    let mut heading_seq = 0;
    let mut out = Vec::new();
    for (ls, le) in logical_lines(chars) {
        let (s, e) = trim_span(chars, ls, le);
        if s == e {
            continue;
        }
        // An inline heading like `二、加强监测。具体如下...` is a heading followed by body text:
        // only the part up to the first sentence end is treated as the heading candidate.
        let mut kind = classify(chars, s, e, article.is_some());
        let mut s = s;
        if kind == LineKind::Body && article.is_none() {
            if let Some(w) = inline_heading_end(chars, s, e) {
                let rank = if cn_enum(chars, s).is_some() { 4 } else { 5 };
                while path.last().is_some_and(|(r, _)| *r >= rank) {
                    path.pop();
                }
                path.push((rank, collect(chars, s, w)));
                heading_seq += 1;
                s = trim_span(chars, w, e).0;
                kind = LineKind::Body;
            }
        }
        match kind {
            LineKind::Heading { rank, label } => {
                while path.last().is_some_and(|(r, _)| *r >= rank) {
                    path.pop();
                }
                path.push((rank, label));
                heading_seq += 1;
                article = None;
            }
            LineKind::Article { label } => {
                article = Some((label.clone(), 1));
                out.push(Unit {
                    start: s,
                    end: e,
                    path: path.iter().map(|(_, l)| l.clone()).collect(),
                    article: Some(label),
                    heading_seq,
                });
            }
            LineKind::Body => {
                let is_item = paren_enum(chars, s).is_some() || cn_enum(chars, s).is_some() || list_marker(chars, s);
                let label = match &mut article {
                    Some((label, kuan)) => {
                        if !is_item {
                            *kuan += 1;
                        }
                        Some(if *kuan <= 1 { label.clone() } else { format!("{label}第{}款", cn_number(*kuan)) })
                    }
                    None => None,
                };
                out.push(Unit {
                    start: s,
                    end: e,
                    path: path.iter().map(|(_, l)| l.clone()).collect(),
                    article: label,
                    heading_seq,
                });
            }
        }
    }
    out
}

fn list_marker(chars: &[char], s: usize) -> bool {
    match chars.get(s) {
        Some('-') | Some('*') | Some('•') | Some('·') => chars.get(s + 1).is_some_and(|c| c.is_whitespace()),
        Some(c) if c.is_ascii_digit() => {
            let mut j = s;
            while j < chars.len() && chars[j].is_ascii_digit() {
                j += 1;
            }
            matches!(chars.get(j), Some('.') | Some('、') | Some('．'))
        }
        _ => false,
    }
}

/// 1..99 as Chinese numerals (款 numbering).
fn cn_number(n: usize) -> String {
    const D: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    match n {
        0..=9 => D[n].to_string(),
        10..=19 => format!("十{}", if n == 10 { "" } else { D[n - 10] }),
        20..=99 => format!("{}十{}", D[n / 10], if n % 10 == 0 { "" } else { D[n % 10] }),
        _ => n.to_string(),
    }
}

/// A piece that chunks are built from: a sentence (or a slice of an overlong one).
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    /// Index of the unit (paragraph) it belongs to.
    unit: usize,
    /// Last piece of its unit (a good place to cut).
    unit_end: bool,
}

fn sentences(chars: &[char], s: usize, e: usize, max: usize, unit: usize, out: &mut Vec<Piece>) {
    let first = out.len();
    let mut start = s;
    let mut i = s;
    while i < e {
        if is_sentence_end(chars[i]) {
            let mut j = i + 1;
            while j < e && (is_sentence_end(chars[j]) || is_closer(chars[j])) {
                j += 1;
            }
            push_bounded(chars, start, j, max, unit, out);
            // Skip spaces between sentences so pieces start on text.
            while j < e && chars[j].is_whitespace() {
                j += 1;
            }
            start = j;
            i = j;
        } else {
            i += 1;
        }
    }
    if start < e {
        push_bounded(chars, start, e, max, unit, out);
    }
    if out.len() > first {
        out.last_mut().expect("piece").unit_end = true;
    }
}

/// Pieces of at most `max` characters covering `s..e`; a hard cut leaves no piece starting or
/// ending with whitespace (nor one of whitespace only, which would make a blank chunk).
fn push_bounded(chars: &[char], s: usize, e: usize, max: usize, unit: usize, out: &mut Vec<Piece>) {
    let mut a = s;
    loop {
        while a < e && chars[a].is_whitespace() {
            a += 1;
        }
        if a >= e {
            break;
        }
        let cut = if e - a > max { a + max } else { e };
        let (start, end) = trim_span(chars, a, cut);
        out.push(Piece { start, end, unit, unit_end: false });
        a = cut;
    }
}

/// Chunk `text` (the document body). Offsets are in characters of `text`.
pub fn chunk(text: &str, cfg: &ChunkerConfig) -> Vec<Chunk> {
    let max = cfg.max_chars.max(20);
    let overlap = cfg.overlap_chars.min(max / 2);
    let min = cfg.min_chars.min(max / 2);
    let chars: Vec<char> = text.chars().collect();
    let units = units(&chars);
    let mut chunks = Vec::new();
    // Group consecutive units of one section (no heading between them).
    let mut g = 0;
    while g < units.len() {
        let mut h = g + 1;
        while h < units.len() && units[h].heading_seq == units[g].heading_seq {
            h += 1;
        }
        let group = &units[g..h];
        let mut pieces = Vec::new();
        for (k, u) in group.iter().enumerate() {
            sentences(&chars, u.start, u.end, max, k, &mut pieces);
        }
        pack(&chars, group, &pieces, max, overlap, min, &mut chunks);
        g = h;
    }
    for (i, c) in chunks.iter_mut().enumerate() {
        c.index = i;
    }
    chunks
}

fn pack(
    chars: &[char],
    group: &[Unit],
    pieces: &[Piece],
    max: usize,
    overlap: usize,
    min: usize,
    out: &mut Vec<Chunk>,
) {
    // Only chunks of this group may take a tiny tail (another group is another section).
    let first_chunk = out.len();
    let mut a = 0; // first piece of the current chunk
    let mut fresh = 0; // first piece not in the chunk before: the current one must take it
    while a < pieces.len() {
        // Extend greedily while the span fits.
        let mut b = a; // last piece included
        while b + 1 < pieces.len() && pieces[b + 1].end - pieces[a].start <= max {
            b += 1;
        }
        // Prefer to end where a paragraph ends, if that keeps at least half the budget.
        if b + 1 < pieces.len() && !pieces[b].unit_end {
            if let Some(k) = (a.max(fresh)..b).rev().find(|&k| pieces[k].unit_end) {
                if pieces[k].end - pieces[a].start >= max / 2 {
                    b = k;
                }
            }
        }
        // A tiny tail merges into the previous chunk when the span still fits.
        let start = pieces[a].start;
        let end = pieces[b].end;
        let first_unit = &group[pieces[a].unit];
        let last_unit = &group[pieces[b].unit];
        let mut section = first_unit.path.clone();
        match (&first_unit.article, &last_unit.article) {
            (Some(x), Some(y)) if x == y => section.push(x.clone()),
            (Some(x), Some(y)) => section.push(format!("{x}至{y}")),
            (Some(x), None) | (None, Some(x)) => section.push(x.clone()),
            (None, None) => {}
        }
        let merged = if end - start < min && out.len() > first_chunk {
            out.last_mut().filter(|prev: &&mut Chunk| {
                prev.section == section && end - prev.start <= max + min && prev.end <= start
            })
        } else {
            None
        };
        if let Some(prev) = merged {
            prev.end = end;
            prev.text = collect(chars, prev.start, end);
        } else {
            out.push(Chunk { index: 0, section, start, end, text: collect(chars, start, end) });
        }
        if b + 1 >= pieces.len() {
            break;
        }
        // Next chunk starts with the trailing sentences of this one that fit in `overlap`,
        // but always makes progress: it starts after this one and takes at least the next piece
        // (an overlap that left no room for it made a chunk inside this one, again and again).
        fresh = b + 1;
        let mut next = b + 1;
        while next - 1 > a
            && pieces[b].end - pieces[next - 1].start <= overlap
            && pieces[b + 1].end - pieces[next - 1].start <= max
        {
            next -= 1;
        }
        a = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGULATION: &str = "\
第一章 总则

第一条 为了促进新型城镇化，保障公民合法权益，制定本条例。

第二条 公民离开常住户口所在地，到其他城市居住半年以上，符合有合法稳定就业、合法稳定住所、连续就读条件之一的，可以依照本条例的规定申领居住证。

第二章 居住证的申领

第三条 申领居住证，应当向居住地公安派出所或者受公安机关委托的社区服务机构提交下列材料：
（一）本人居民身份证；
（二）本人相片；
（三）居住地住址、就业、就读等证明材料。
居住地住址证明包括房屋租赁合同、房屋产权证明文件、购房合同等。

第四条 居住证由县级人民政府公安机关签发，每年签注一次。
";

    fn chars_of(s: &str, c: &Chunk) -> String {
        s.chars().skip(c.start).take(c.end - c.start).collect()
    }

    #[test]
    fn chapters_and_articles_become_the_section_path() {
        let chunks = chunk(REGULATION, &ChunkerConfig::default());
        assert!(chunks.len() >= 2, "{chunks:#?}");
        // No chunk crosses a chapter.
        for c in &chunks {
            assert_eq!(c.text, chars_of(REGULATION, c), "offsets must index the text");
            assert!(!(c.text.contains("第一条") && c.text.contains("第三条")), "crosses a chapter: {c:#?}");
        }
        let first = &chunks[0];
        assert_eq!(first.section[0], "第一章 总则");
        assert!(first.text.starts_with("第一条"));
        assert_eq!(first.section.last().unwrap(), "第一条至第二条");
        let ch2: Vec<_> = chunks.iter().filter(|c| c.section[0] == "第二章 居住证的申领").collect();
        assert!(!ch2.is_empty());
        // The items （一）（二）（三） of 第三条 stay with their article and are not headings.
        let materials = ch2.iter().find(|c| c.text.contains("本人居民身份证")).expect("items chunk");
        assert!(materials.text.contains("第三条"), "{materials:#?}");
        assert!(materials.section.iter().all(|s| !s.starts_with("（一）")));
        // The paragraph after the items is the article's second 款.
        let all: String = ch2.iter().map(|c| c.section_label()).collect::<Vec<_>>().join("|");
        assert!(all.contains("第三条") , "{all}");
    }

    #[test]
    fn second_paragraph_of_an_article_is_its_second_kuan() {
        let text = "第一章 总则\n第五条 居住证持有人享有下列权利。\n持证人可以在居住地申请换领、补领居民身份证。\n第六条 其他事项。\n";
        let cfg = ChunkerConfig { max_chars: 25, overlap_chars: 0, min_chars: 0 };
        let chunks = chunk(text, &cfg);
        let labels: Vec<String> = chunks.iter().map(|c| c.section_label()).collect();
        assert!(labels.contains(&"第一章 总则 > 第五条第二款".to_string()), "{labels:?}");
    }

    #[test]
    fn markdown_headings_nest_and_reset() {
        let md = "# 居住证办理指南\n\n## 办理条件\n\n在本市居住半年以上。\n\n## 所需材料\n\n- 身份证\n- 租房合同\n\n### 特殊情况\n\n未成年人由监护人代办。\n\n## 办理时限\n\n十五个工作日。\n";
        let chunks = chunk(md, &ChunkerConfig::default());
        let labels: Vec<String> = chunks.iter().map(|c| c.section_label()).collect();
        assert_eq!(
            labels,
            vec![
                "居住证办理指南 > 办理条件",
                "居住证办理指南 > 所需材料",
                "居住证办理指南 > 所需材料 > 特殊情况",
                "居住证办理指南 > 办理时限",
            ]
        );
        assert_eq!(chunks[1].text, "- 身份证\n- 租房合同", "list stays together");
    }

    #[test]
    fn long_sections_split_at_sentences_within_budget_with_overlap() {
        let mut body = String::from("一、总体要求\n");
        for i in 0..40 {
            body.push_str(&format!("这是关于社会保险缴费基数调整的第{i}句说明，请参保单位按时申报。"));
        }
        let cfg = ChunkerConfig { max_chars: 120, overlap_chars: 40, min_chars: 10 };
        let chunks = chunk(&body, &cfg);
        assert!(chunks.len() > 5);
        for w in chunks.windows(2) {
            assert!(w[0].end - w[0].start <= 120, "over budget: {}", w[0].text.chars().count());
            // Sentence boundary: every chunk ends with closing punctuation.
            assert!(w[0].text.ends_with('。'), "{:?}", w[0].text);
            // Overlap: the next chunk starts inside the previous one, but moves forward.
            assert!(w[1].start < w[0].end && w[1].start > w[0].start, "{w:?}");
            assert!(w[0].end - w[1].start <= 40);
        }
        // Everything is covered.
        assert_eq!(chunks[0].start, body.chars().position(|c| c == '这').unwrap());
        assert_eq!(chunks.last().unwrap().end, body.chars().count());
    }

    #[test]
    fn a_sentence_longer_than_the_budget_is_cut_hard() {
        let long: String = std::iter::repeat_n('长', 500).collect();
        let chunks = chunk(&long, &ChunkerConfig { max_chars: 100, overlap_chars: 0, min_chars: 0 });
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.text.chars().count() == 100));
    }

    #[test]
    fn running_text_with_inline_numbered_headings() {
        // Scraped notices often have no line breaks at all.
        let text = "关于做好复工复产工作的通知 各区人民政府： 为做好工作，现通知如下：一、加强组织领导 各单位要高度重视。二、落实防控措施 企业应当建立健康监测制度。（一）做好体温检测 每日两次。";
        let chunks = chunk(text, &ChunkerConfig::default());
        let labels: Vec<String> = chunks.iter().map(|c| c.section_label()).collect();
        assert_eq!(labels, vec!["", "一、加强组织领导", "二、落实防控措施", "二、落实防控措施 > （一）做好体温检测"]);
        for c in &chunks {
            assert_eq!(c.text, chars_of(text, c));
        }
        let all: String = chunks.iter().map(|c| c.text.as_str()).collect();
        for needle in ["各单位要高度重视", "企业应当建立健康监测制度", "每日两次"] {
            assert!(all.contains(needle), "{needle} lost: {chunks:#?}");
        }
    }

    #[test]
    fn quoted_article_reference_is_not_a_heading() {
        let text = "申请人应当依照本办法第五条规定提交材料，并按照第二章的要求办理。";
        let chunks = chunk(text, &ChunkerConfig::default());
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].section.is_empty(), "{chunks:?}");
    }

    #[test]
    fn empty_and_blank_text_give_no_chunks() {
        assert!(chunk("", &ChunkerConfig::default()).is_empty());
        assert!(chunk("  \n\n\u{3000}\n", &ChunkerConfig::default()).is_empty());
    }

    #[test]
    fn chinese_numerals_for_kuan() {
        assert_eq!(cn_number(2), "二");
        assert_eq!(cn_number(10), "十");
        assert_eq!(cn_number(12), "十二");
        assert_eq!(cn_number(21), "二十一");
    }
}
