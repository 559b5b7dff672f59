//! Post-generation grounding check: every sentence of a generated answer is checked against the
//! passages it rests on, and a sentence that states a fact the passages do not hold, or states a
//! yes/no conclusion the passages state the other way, is dropped.
//!
//! Why: a small model paraphrasing policy passages invents the very details a citizen acts on
//! ("税率为3%" where the sources state no rate, "还需要上线检验" where the source says 免予上线检验).
//! Dropping the sentence is safer than repairing it: the verbatim excerpt shown after the answer
//! still carries the policy's own words.
//!
//! Design: strict on numbers, lenient on wording. Numbers (amounts, rates, durations, ages,
//! counts, dates, phone numbers) must appear in the sources with the same value and unit after
//! both sides are normalised ([`normalise_numbers`], plus unit aliases such as 天 = 日). Office
//! names are matched on their last three characters because the model shortens them. Yes/no
//! conclusions are compared only for three fixed word pairs (需要/不需要, 可以/不能, 收费/免费), and
//! only when the sources say the opposite and never say the same.
//!
//! Everything is hand-written scanning over `char` slices: linear in the text (word lists are
//! looked up by first character), no regex, so a 2,000-character answer against 10,000
//! characters of sources costs about a millisecond in release.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// What the check did to one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grounding {
    /// The answer with failing sentences removed (citation markers like [1] kept as they were).
    pub text: String,
    /// Sentences removed, each with why.
    pub dropped: Vec<Dropped>,
    /// How many facts were checked in all (for reporting how often the check has work to do).
    pub facts_checked: usize,
}

/// One removed sentence (trimmed) and the reason it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub sentence: String,
    pub reason: DropReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DropReason {
    /// A fact (number with unit, amount, rate, date, duration, phone number, named office) not found in the sources.
    UnsupportedFact { fact: String },
    /// A yes/no conclusion the sources state the other way (需要 vs 不需要 …).
    Contradiction { claim: String, source: String },
}

/// Check `answer` sentence by sentence against `sources` (the passages the answer rests on) and
/// drop the sentences that fail. Contradictions are checked before facts so that a sentence
/// failing both reports the more telling reason.
pub fn check(answer: &str, sources: &[&str]) -> Grounding {
    let sources: Vec<Source> = sources.iter().map(|s| Source::new(s)).collect();
    let number_facts = source_number_facts(&sources);

    let mut text = String::with_capacity(answer.len());
    let mut dropped = Vec::new();
    let mut facts_checked = 0;
    for sentence in split_sentences(answer) {
        let c = canon(sentence);
        let facts = sentence_facts(&c);
        facts_checked += facts.len();
        let reason = contradiction(&c, &sources).or_else(|| {
            facts
                .iter()
                .find(|f| !f.supported(&number_facts, &sources))
                .map(|f| DropReason::UnsupportedFact { fact: f.text().to_string() })
        });
        match reason {
            None => text.push_str(sentence),
            Some(reason) => {
                // A dropped sentence that ended its line takes the line break with it only when
                // the kept text already ends a line: a dropped list item vanishes whole, and a
                // dropped last sentence of a paragraph does not glue the next paragraph on.
                if sentence.ends_with('\n') && !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                dropped.push(Dropped { sentence: sentence.trim().to_string(), reason });
            }
        }
    }
    Grounding { text, dropped, facts_checked }
}

/// The checkable facts of one sentence (after normalisation), as the strings looked up in the
/// sources: number facts in canonical form ("15日", "15工作日", "3%", "2024年1月1日", "20元"), bare
/// numbers of three or more digits ("12333"), and office keys (the last three characters of a
/// named office, "税务局"). Facts that are always allowed (110, 119, 120, 12345, hand-off offices)
/// are not listed, since nothing is checked for them.
pub fn facts(sentence: &str) -> Vec<String> {
    sentence_facts(&canon(sentence)).into_iter().map(|f| f.text().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Number normalisation
// ---------------------------------------------------------------------------------------------

/// Words containing numeral characters that are not quantities, even where a unit character
/// follows (一次性, 十分) or the word could be mistaken for one (统一, 万一). Matched before any
/// numeral run so they survive verbatim. 十分 is special-cased below: 十分钟 is ten minutes.
const NOT_NUMBERS: &[&str] = &[
    "一次性", "一站式", "一律", "一般", "一些", "一切", "一旦", "一致", "一起", "一样", "一定", "一直", "一并", "一经",
    "一同", "一下", "一体化", "一揽子", "一门式", "一网通办", "一件事", "一分为二", "一刀切", "一口价", "万一", "统一",
    "之一", "唯一", "逐一", "十分",
];

/// What may follow a numeral run for it to be a quantity (一 + 个, 十五 + 日). Order does not
/// matter: any match is enough.
const NUMERAL_UNITS: &[&str] = &[
    "元", "角", "分", "块", "毛", "日", "天", "号", "个", "年", "月", "周", "星期", "岁", "小时", "钟头", "秒", "工作日",
    "%", "次", "张", "份", "倍", "级", "万", "亿", "项", "件", "名", "人", "户", "套", "本", "页", "辆", "类", "种", "批",
    "条", "款", "章", "节", "届", "季度", "学期", "平方", "平米", "米", "公里", "千米", "公斤", "千克", "克", "吨", "亩",
    "层", "孩", "胎", "寸", "位", "所", "家",
];

fn cn_digit(c: char) -> Option<u64> {
    Some(match c {
        '零' | '〇' => 0,
        '一' | '壹' => 1,
        '二' | '贰' | '貳' | '两' | '兩' => 2,
        '三' | '叁' => 3,
        '四' | '肆' => 4,
        '五' | '伍' => 5,
        '六' | '陆' => 6,
        '七' | '柒' => 7,
        '八' | '捌' => 8,
        '九' | '玖' => 9,
        _ => return None,
    })
}

fn cn_mult(c: char) -> Option<u64> {
    Some(match c {
        '十' | '拾' => 10,
        '百' | '佰' => 100,
        '千' | '仟' => 1_000,
        '万' | '萬' => 10_000,
        '亿' | '億' => 100_000_000,
        _ => return None,
    })
}

fn is_cn_numeral(c: char) -> bool {
    cn_digit(c).is_some() || cn_mult(c).is_some()
}

/// Whether `w` occurs in `c` at `i`.
fn starts(c: &[char], i: usize, w: &str) -> bool {
    (i..).zip(w.chars()).all(|(k, wc)| c.get(k) == Some(&wc))
}

/// Whether `c[..end]` ends with `w`.
fn ends_with(c: &[char], end: usize, w: &str) -> bool {
    let n = w.chars().count();
    end >= n && starts(c, end - n, w)
}

/// A word list matched at text positions. Words are kept as `char` slices, grouped by first
/// character behind a bitmap of first characters, because the scans visit every position of up
/// to 10,000 characters of sources: one bit test rejects almost every position, and a hit tries
/// only the few words starting with that character (trying each of a hundred `&str` words at
/// every position made a check cost milliseconds). Within a group the longest word wins, then
/// list order: 不可抗力 over 不可, 不要求 over 不要, 不需要 over 不需.
struct Words<T: 'static> {
    first: Vec<u64>,
    groups: HashMap<char, Vec<(Vec<char>, T)>>,
}

impl<T: Copy> Words<T> {
    fn new(list: impl IntoIterator<Item = (&'static str, T)>) -> Self {
        let mut first = vec![0u64; 1024];
        let mut groups: HashMap<char, Vec<(Vec<char>, T)>> = HashMap::new();
        for (w, t) in list {
            let w: Vec<char> = w.chars().collect();
            let f = w[0] as usize;
            // All listed words start inside the Basic Multilingual Plane.
            if f < 65_536 {
                first[f / 64] |= 1 << (f % 64);
            }
            groups.entry(w[0]).or_default().push((w, t));
        }
        for group in groups.values_mut() {
            group.sort_by_key(|(w, _)| std::cmp::Reverse(w.len()));
        }
        Words { first, groups }
    }

    /// The longest word of the list found at `i`, with its length and tag.
    fn at(&self, c: &[char], i: usize) -> Option<(usize, T)> {
        let f = *c.get(i)?;
        let b = f as usize;
        if b >= 65_536 || self.first[b / 64] & (1 << (b % 64)) == 0 {
            return None;
        }
        let rest = &c[i..];
        self.groups.get(&f)?.iter().find(|(w, _)| rest.starts_with(w)).map(|(w, t)| (w.len(), *t))
    }
}

fn not_numbers() -> &'static Words<()> {
    static W: OnceLock<Words<()>> = OnceLock::new();
    W.get_or_init(|| Words::new(NOT_NUMBERS.iter().map(|w| (*w, ()))))
}

fn unit_follows(c: &[char], i: usize) -> bool {
    NUMERAL_UNITS.iter().any(|u| starts(c, i, u))
}

/// Chinese numerals to ASCII digits inside text, so 十五日 = 15日, 二十元 = 20元, 一千二百元 = 1200元,
/// 百分之三 = 3%, 两个月 = 2个月, 〇/零 handled, full-width digits ０-９ → 0-9, and 3.0% = 3%.
///
/// The same function normalises the answer and the sources, so what matters is consistency, and
/// that words which merely contain numeral characters survive (一次性, 统一, 万一, 一般, 一律, 一站式,
/// 十分, 一些, 之一; 第一 becomes 第1 on both sides). A numeral run is converted when a unit or
/// measure word follows it, when 第 precedes it, after 百分之/千分之, or when it has two or more
/// characters and parses as a number with a 十/百/千/万/亿 in it (二十, 十五, 三百). Runs of bare
/// digits (三五天, 七八个 = "three to five", "seven or eight") stay as they are unless they read
/// as a year (二〇二四年) or are five or more digits long: guessing a range as 35 would invent a
/// number. Also: 3万 = 30000, 1.5万元 = 15000元, 1,200 = 1200, trailing zeros of decimals dropped,
/// leading zeros of month/day numbers dropped (01月 = 1月).
pub fn normalise_numbers(text: &str) -> String {
    let c = fullwidth_to_ascii(text);
    let n = c.len();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < n {
        let ch = c[i];
        if let Some((len, ())) = not_numbers().at(&c, i) {
            // 十分钟 is a duration; every other 十分 is "very".
            if !(ch == '十' && len == 2 && c.get(i + 2) == Some(&'钟')) {
                out.extend(&c[i..i + len]);
                i += len;
                continue;
            }
        }
        if matches!(ch, '百' | '千') && (starts(&c, i, "百分之") || starts(&c, i, "千分之")) {
            if let Some((value, end)) = number_at(&c, i + 3) {
                let shift = if ch == '千' { -1 } else { 0 };
                out.push_str(&shift_decimal(&value, shift));
                out.push('%');
                i = end;
                continue;
            }
        }
        if ch.is_ascii_digit() {
            i = ascii_number(&c, i, &mut out);
            continue;
        }
        if is_cn_numeral(ch) {
            i = cn_run(&c, i, &mut out);
            continue;
        }
        out.push(ch);
        i += 1;
    }
    out
}

/// Full-width digits and percent sign to ASCII; a full-width point only between digits, since
/// elsewhere it is punctuation.
fn fullwidth_to_ascii(text: &str) -> Vec<char> {
    let mut c: Vec<char> = text
        .chars()
        .map(|ch| match ch {
            '０'..='９' => char::from(b'0' + (ch as u32 - '０' as u32) as u8),
            '％' => '%',
            _ => ch,
        })
        .collect();
    for i in 1..c.len().saturating_sub(1) {
        if c[i] == '．' && c[i - 1].is_ascii_digit() && c[i + 1].is_ascii_digit() {
            c[i] = '.';
        }
    }
    c
}

/// The number starting at `i` (ASCII, or a Chinese numeral run with an optional 点 fraction), as
/// a decimal string, and where it ends. Used after 百分之, where any numeral is a rate.
fn number_at(c: &[char], i: usize) -> Option<(String, usize)> {
    if c.get(i).is_some_and(|ch| ch.is_ascii_digit()) {
        let (value, end) = read_ascii(c, i);
        return Some((value, end));
    }
    let mut j = i;
    while j < c.len() && is_cn_numeral(c[j]) && j - i < 24 {
        j += 1;
    }
    if j == i {
        return None;
    }
    let run = &c[i..j];
    // A lone digit (百分之三, 百分之零点五) has no multiplier for cn_int to parse.
    let int = match run {
        [d] if cn_digit(*d).is_some() => cn_digit(*d)?,
        _ => cn_int(run)?,
    };
    match cn_fraction(c, j) {
        Some((frac, end)) => Some((trim_decimal(&format!("{int}.{frac}")), end)),
        None => Some((int.to_string(), j)),
    }
}

/// ASCII digits with an optional single decimal part, trailing zeros of the decimal dropped.
fn read_ascii(c: &[char], i: usize) -> (String, usize) {
    let mut s = String::new();
    let mut j = i;
    while j < c.len() && c[j].is_ascii_digit() {
        s.push(c[j]);
        j += 1;
    }
    if j + 1 < c.len() && c[j] == '.' && c[j + 1].is_ascii_digit() {
        s.push('.');
        j += 1;
        while j < c.len() && c[j].is_ascii_digit() {
            s.push(c[j]);
            j += 1;
        }
    }
    (trim_decimal(&s), j)
}

/// 3.0 → 3, 3.50 → 3.5 (so 3.0% and 3% are the same rate).
fn trim_decimal(s: &str) -> String {
    if !s.contains('.') {
        return s.to_string();
    }
    let t = s.trim_end_matches('0').trim_end_matches('.');
    if t.is_empty() {
        "0".to_string()
    } else {
        t.to_string()
    }
}

/// Multiply a decimal string by 10^exp exactly (no floats: 1.5万 must be 15000, not 14999.99).
fn shift_decimal(value: &str, exp: i32) -> String {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let digits: String = format!("{int}{frac}");
    let point = int.len() as i32 + exp;
    let (int, frac) = if point <= 0 {
        (String::from("0"), format!("{}{}", "0".repeat((-point) as usize), digits))
    } else if point as usize >= digits.len() {
        (format!("{}{}", digits, "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_string(), digits[point as usize..].to_string())
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        trim_decimal(&format!("{int}.{frac}"))
    }
}

/// Copy an ASCII number at `i` in canonical form and return where it ends.
fn ascii_number(c: &[char], i: usize, out: &mut String) -> usize {
    let n = c.len();
    let mut j = i;
    let mut int = String::new();
    while j < n && c[j].is_ascii_digit() {
        int.push(c[j]);
        j += 1;
    }
    // Thousands separators (1,200元): only groups of exactly three digits, so a list "1,2,3"
    // stays a list.
    while int.len() <= 12
        && j + 3 < n + 1
        && c.get(j) == Some(&',')
        && (1..=3).all(|k| c.get(j + k).is_some_and(|d| d.is_ascii_digit()))
        && !c.get(j + 4).is_some_and(|d| d.is_ascii_digit())
    {
        int.extend(&c[j + 1..j + 4]);
        j += 4;
    }
    // A dotted sequence (2024.10.01, a version) is copied as it is: trimming zeros there would
    // change it.
    if j + 1 < n && c[j] == '.' && c[j + 1].is_ascii_digit() {
        let mut k = j + 1;
        while k < n && c[k].is_ascii_digit() {
            k += 1;
        }
        if k + 1 < n && c[k] == '.' && c[k + 1].is_ascii_digit() {
            let mut e = k;
            while e < n && (c[e].is_ascii_digit() || c[e] == '.') {
                e += 1;
            }
            out.push_str(&int);
            out.extend(&c[j..e]);
            return e;
        }
    }
    let mut value = int;
    if j + 1 < n && c[j] == '.' && c[j + 1].is_ascii_digit() {
        value.push('.');
        j += 1;
        while j < n && c[j].is_ascii_digit() {
            value.push(c[j]);
            j += 1;
        }
        value = trim_decimal(&value);
    }
    // 3万 / 1.5万 / 2亿 / 3千: written out so "3万元" and "三万元" and "30000元" agree.
    let exp = match c.get(j) {
        Some('万') | Some('萬') => 4,
        Some('亿') | Some('億') => 8,
        Some('千') => 3,
        _ => 0,
    };
    if exp > 0 {
        value = shift_decimal(&value, exp);
        j += 1;
    } else if matches!(c.get(j), Some('月') | Some('日') | Some('号')) && !value.contains('.') && value.len() > 1 {
        // 01月01日 = 1月1日.
        let t = value.trim_start_matches('0');
        value = if t.is_empty() { "0".to_string() } else { t.to_string() };
    }
    out.push_str(&value);
    j
}

/// Digits after 点 (三点五 → "5"), where the 点 is a decimal point: only bare digits follow, and no
/// multiplier after them (三点五十分 is a time, 3点50分).
fn cn_fraction(c: &[char], j: usize) -> Option<(String, usize)> {
    if c.get(j) != Some(&'点') {
        return None;
    }
    let mut k = j + 1;
    let mut frac = String::new();
    while let Some(d) = c.get(k).and_then(|&ch| cn_digit(ch)) {
        frac.push(char::from(b'0' + d as u8));
        k += 1;
    }
    if frac.is_empty() || c.get(k).is_some_and(|&ch| cn_mult(ch).is_some()) {
        return None;
    }
    Some((frac, k))
}

/// Convert (or copy) the Chinese numeral run at `i`; returns where it ends.
fn cn_run(c: &[char], i: usize, out: &mut String) -> usize {
    let n = c.len();
    let mut j = i;
    while j < n && is_cn_numeral(c[j]) && j - i < 24 {
        j += 1;
    }
    let run = &c[i..j];
    // 三分之一 = 1/3: a fraction, not 3分 (three points or cents) followed by something.
    if starts(c, j, "分之") {
        if let (Some(den), Some((num, end))) = (number_at(c, i).filter(|&(_, e)| e == j), number_at(c, j + 2)) {
            out.push_str(&format!("{num}/{}", den.0));
            return end;
        }
    }
    let fraction = cn_fraction(c, j);
    let end = fraction.as_ref().map_or(j, |f| f.1);
    let quantity = unit_follows(c, end) || (i > 0 && c[i - 1] == '第') || fraction.is_some();
    let structured = run.iter().any(|&ch| cn_mult(ch).is_some());
    let int: Option<String> = if structured {
        cn_int(run).filter(|_| run.len() >= 2 || quantity).map(|v| v.to_string())
    } else if run.len() == 1 {
        cn_digit(run[0]).filter(|_| quantity).map(|v| v.to_string())
    } else {
        let spelled = run.iter().all(|&ch| !matches!(ch, '两' | '兩'));
        let year = run.len() >= 3 && c.get(j) == Some(&'年');
        let with_zero = run.len() >= 3 && run.iter().any(|&ch| matches!(ch, '零' | '〇'));
        if spelled && (year || with_zero || run.len() >= 5) {
            Some(run.iter().filter_map(|&ch| cn_digit(ch)).map(|d| char::from(b'0' + d as u8)).collect())
        } else {
            None
        }
    };
    match int {
        Some(int) => {
            match fraction {
                Some((frac, _)) => out.push_str(&trim_decimal(&format!("{int}.{frac}"))),
                None => out.push_str(&int),
            }
            end
        }
        None => {
            out.extend(run);
            j
        }
    }
}

/// Value of a Chinese integer with multipliers (二十五, 一千零五十, 三万五千, 一千二 = 1200), or None
/// when the run is not a well-formed number (千万 "by all means", 十一五, a leading 百).
fn cn_int(run: &[char]) -> Option<u64> {
    let mut groups: u64 = 0; // completed 亿 groups
    let mut wan: u64 = 0; // completed 万 group below 亿
    let mut section: u64 = 0; // below 万
    let mut digit: Option<u64> = None;
    let mut last_small = 10_000; // multipliers inside a section must decrease
    let mut last_big = u64::MAX; // 亿 before 万
    let mut zero = false; // a 零 since the last multiplier: 一千零二 is 1002, not 1200
    let mut prev_mult = 0; // multiplier just before the pending digit, for 一千二 = 1200
    let mut any_digit = false;
    for (k, &ch) in run.iter().enumerate() {
        if let Some(d) = cn_digit(ch) {
            if d == 0 {
                if k == 0 || digit.is_some() {
                    return None;
                }
                zero = true;
                continue;
            }
            if digit.is_some() {
                return None;
            }
            digit = Some(d);
            any_digit = true;
            if zero {
                prev_mult = 0;
            }
        } else if let Some(m) = cn_mult(ch) {
            if m < 10_000 {
                let d = match digit.take() {
                    Some(d) => d,
                    // 十五 = 15: a bare 十 opens a section; a bare 百/千 does not.
                    None if m == 10 && last_small == 10_000 && !zero => 1,
                    None => return None,
                };
                if m >= last_small {
                    return None;
                }
                section = section.checked_add(d.checked_mul(m)?)?;
                last_small = m;
            } else {
                section = section.checked_add(digit.take().unwrap_or(0))?;
                if m == 10_000 {
                    if section == 0 || last_big <= 10_000 {
                        return None;
                    }
                    wan = section.checked_mul(m)?;
                    last_big = 10_000;
                } else {
                    let group = wan.checked_add(section)?;
                    if group == 0 || last_big <= 100_000_000 {
                        return None;
                    }
                    groups = groups.checked_add(group.checked_mul(m)?)?;
                    wan = 0;
                    last_big = 100_000_000;
                }
                section = 0;
                last_small = 10_000;
            }
            prev_mult = m;
            zero = false;
        } else {
            return None;
        }
    }
    if !any_digit && run.len() > 1 && !run.starts_with(&['十']) {
        return None;
    }
    let tail = match digit {
        // 一千二 / 三百五 / 一万二: a final digit straight after a big multiplier is its next place.
        Some(d) if !zero && prev_mult >= 100 => d * (prev_mult / 10),
        Some(d) => d,
        None => 0,
    };
    groups.checked_add(wan)?.checked_add(section)?.checked_add(tail)
}

// ---------------------------------------------------------------------------------------------
// Canonical text for matching
// ---------------------------------------------------------------------------------------------

/// Unit spellings that mean the same thing, rewritten right after a number so that "15天" and
/// "十五日", "16岁" and "十六周岁", "3个工作日" and "3工作日" compare equal. 号 → 日 only in a date
/// (after 月), since 3号楼 is no day.
const UNIT_ALIASES: &[(&str, &str)] = &[
    ("个工作日", "工作日"),
    ("个自然日", "日"),
    ("自然日", "日"),
    ("个小时", "小时"),
    ("个钟头", "小时"),
    ("钟头", "小时"),
    ("个星期", "周"),
    ("星期", "周"),
    ("个周", "周"),
    ("周岁", "岁"),
    ("天", "日"),
    ("块钱", "元"),
    ("块", "元"),
    ("元钱", "元"),
];

/// Separators of a number range (3至5个工作日 = 3-5工作日).
const RANGE_SEPARATORS: &[char] = &['至', '到', '~', '～', '－', '—', '–', '-'];

/// Citation markers [1], [1,2], 【3】 removed: their digits are no facts.
fn strip_citations(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        if let Some(end) = citation_at(&c, i) {
            i = end;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// End of a citation marker starting at `i`, if one does.
fn citation_at(c: &[char], i: usize) -> Option<usize> {
    let close = match c.get(i)? {
        '[' => ']',
        '【' => '】',
        _ => return None,
    };
    let mut k = i + 1;
    let mut digits = false;
    while k < c.len() && k - i <= 16 {
        match c[k] {
            ch if ch == close => return digits.then_some(k + 1),
            '0'..='9' | '０'..='９' => digits = true,
            ',' | '，' | '、' | '-' | '–' | ' ' => {}
            _ => return None,
        }
        k += 1;
    }
    None
}

/// The text facts are read from and looked up in: citations and Markdown emphasis stripped (a
/// model writes **15**个工作日, which must still read as 15工作日), numbers normalised, unit aliases
/// and range separators unified, spaces between a number and its unit removed.
fn canon(text: &str) -> Vec<char> {
    let plain: String = strip_citations(text).chars().filter(|&ch| ch != '*').collect();
    let c: Vec<char> = normalise_numbers(&plain).chars().collect();
    let n = c.len();
    let mut out: Vec<char> = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if out.last().is_some_and(|d| d.is_ascii_digit()) {
            if c[i] == ' ' {
                let mut k = i;
                while k < n && c[k] == ' ' {
                    k += 1;
                }
                if k < n && !c[k].is_ascii_alphanumeric() && c[k] != ' ' {
                    i = k;
                    continue;
                }
            }
            if let Some((from, to)) = UNIT_ALIASES.iter().find(|(from, _)| starts(&c, i, from)) {
                out.extend(to.chars());
                i += from.chars().count();
                continue;
            }
            if c[i] == '号' {
                let mut k = out.len();
                while k > 0 && out[k - 1].is_ascii_digit() {
                    k -= 1;
                }
                if k > 0 && out[k - 1] == '月' {
                    out.push('日');
                    i += 1;
                    continue;
                }
            }
            if RANGE_SEPARATORS.contains(&c[i]) && c.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                out.push('-');
                i += 1;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}')
}

// ---------------------------------------------------------------------------------------------
// Facts
// ---------------------------------------------------------------------------------------------

/// Units a number fact is read with, longest first where one is a prefix of another.
const FACT_UNITS: &[&str] = &[
    "个百分点", "工作日", "平方米", "个季度", "季度", "个月", "小时", "分钟", "公里", "千米", "公斤", "千克", "平米", "%",
    "‰", "元", "角", "分", "日", "年", "周", "岁", "秒", "个", "张", "份", "次", "倍", "级", "项", "件", "名", "人", "户",
    "套", "本", "页", "辆", "类", "种", "批", "寸", "米", "克", "吨", "亩",
];

/// Counts where "1" is an article more than a claim (一份身份证明, 一个窗口): not checked.
const ARTICLE_ONE: &[&str] = &["个", "张", "份", "次", "项", "件", "名", "人", "户", "套", "本", "页", "辆", "类", "种", "批"];

/// Numbers the assistant's own hand-off lines mention: always allowed.
const ALWAYS_ALLOWED_NUMBERS: &[&str] = &["110", "119", "120", "12345"];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Fact {
    /// A number with its unit, or a date, in canonical form ("15日", "3-5工作日", "2024年1月").
    Number(String),
    /// A number of three or more digits with no unit (a phone number, "2000多元").
    Bare(String),
    /// The key of a named office: its last three characters.
    Office(String),
}

impl Fact {
    fn text(&self) -> &str {
        match self {
            Fact::Number(s) | Fact::Bare(s) | Fact::Office(s) => s,
        }
    }

    fn supported(&self, numbers: &HashSet<String>, sources: &[Source]) -> bool {
        match self {
            Fact::Number(s) => numbers.contains(s),
            // A phone number written with another area-code style (0571-8765xxxx vs 87654321)
            // is supported by its longest digit group.
            Fact::Bare(s) => {
                numbers.contains(s)
                    || s.split('-').max_by_key(|p| p.len()).is_some_and(|p| p.len() >= 5 && numbers.contains(p))
            }
            Fact::Office(key) => sources.iter().any(|src| src.text.contains(key.as_str())),
        }
    }
}

/// One number token: where it is, its canonical fact string, and the looser forms a source
/// occurrence also supports (a date supports its year and month; 3-5日 supports 3日 and 5日).
struct NumberToken {
    start: usize,
    fact: String,
    unit: Option<&'static str>,
    numbers: Vec<String>,
    date: bool,
    variants: Vec<String>,
}

/// Read an unsigned integer at `i` (for dates).
fn read_int(c: &[char], i: usize) -> Option<(u32, usize)> {
    let mut j = i;
    let mut v: u32 = 0;
    while j < c.len() && c[j].is_ascii_digit() && j - i < 6 {
        v = v * 10 + c[j].to_digit(10)?;
        j += 1;
    }
    (j > i).then_some((v, j))
}

fn number_tokens(c: &[char]) -> Vec<NumberToken> {
    let n = c.len();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < n {
        if !c[i].is_ascii_digit() || (i > 0 && (c[i - 1].is_ascii_digit() || c[i - 1] == '.')) {
            i += 1;
            continue;
        }
        let start = i;
        let (first, mut j) = read_ascii(c, i);
        let mut numbers = vec![first.clone()];
        while j + 1 < n && c[j] == '-' && c[j + 1].is_ascii_digit() {
            let (next, k) = read_ascii(c, j + 1);
            numbers.push(next);
            j = k;
        }
        let single_int = numbers.len() == 1 && !first.contains('.');
        let mut variants = Vec::new();
        let mut token = |fact: String, unit, date, end: usize, variants: Vec<String>| {
            tokens.push(NumberToken { start, fact, unit, numbers: numbers.clone(), date, variants });
            end
        };
        let value = if single_int { first.parse::<u32>().unwrap_or(0) } else { 0 };
        let year = first.len() == 4 && c.get(j) == Some(&'年') && (1900..=2100).contains(&value);
        let month = c.get(j) == Some(&'月') && (1..=12).contains(&value);
        if year || month {
            // Dates: 2024年, 2024年1月, 2024年1月1日, 1月, 1月1日.
            let mut fact = String::new();
            let mut k = j + 1;
            if year {
                fact = format!("{first}年");
                variants.push(fact.clone());
            }
            let month_at = if year {
                read_int(c, k).filter(|&(m, e)| (1..=12).contains(&m) && c.get(e) == Some(&'月'))
            } else {
                Some((value, j))
            };
            if let Some((m, e)) = month_at {
                let mut md = format!("{m}月");
                k = e + 1;
                fact.push_str(&md);
                variants.push(fact.clone());
                variants.push(md.clone());
                if let Some((d, e)) = read_int(c, k).filter(|&(d, e)| (1..=31).contains(&d) && c.get(e) == Some(&'日')) {
                    fact.push_str(&format!("{d}日"));
                    md.push_str(&format!("{d}日"));
                    variants.push(fact.clone());
                    variants.push(md.clone());
                    k = e + 1;
                }
            }
            i = token(fact, None, true, k, variants);
            continue;
        }
        let joined = numbers.join("-");
        match FACT_UNITS.iter().find(|u| starts(c, j, u)) {
            Some(u) => {
                let end = j + u.chars().count();
                for number in &numbers {
                    variants.push(format!("{number}{u}"));
                }
                i = token(format!("{joined}{u}"), Some(*u), false, end, variants);
            }
            None => i = token(joined, None, false, j, variants),
        }
    }
    tokens
}

/// Every number form the sources support.
fn source_number_facts(sources: &[Source]) -> HashSet<String> {
    let mut set = HashSet::new();
    for source in sources {
        for t in number_tokens(&source.chars) {
            set.extend(t.numbers.iter().cloned());
            set.extend(t.variants);
            set.insert(t.fact);
        }
    }
    set
}

fn sentence_facts(c: &[char]) -> Vec<Fact> {
    let mut facts = Vec::new();
    for t in number_tokens(c) {
        // Codes and references are not claims about the citizen's case: A4, PM2.5, URLs,
        // and article numbers (第12条), whose chunk may not carry the heading that states them.
        if t.start > 0 {
            let prev = c[t.start - 1];
            if prev.is_ascii_alphabetic() || matches!(prev, '/' | '_' | ':' | '#' | '@' | '-' | '.' | '第') {
                continue;
            }
        }
        if t.date {
            facts.push(Fact::Number(t.fact));
            continue;
        }
        match t.unit {
            Some(u) => {
                if !(t.numbers.len() == 1 && t.numbers[0] == "1" && ARTICLE_ONE.contains(&u)) {
                    facts.push(Fact::Number(t.fact));
                }
            }
            None => {
                let plain_short = t.numbers.len() == 1 && (t.numbers[0].contains('.') || t.numbers[0].len() < 3);
                if !plain_short && !ALWAYS_ALLOWED_NUMBERS.contains(&t.fact.as_str()) {
                    facts.push(Fact::Bare(t.fact));
                }
            }
        }
    }
    office_facts(c, &mut facts);
    // The same fact twice in a sentence (满5年…不足5年) is one check.
    let mut seen = HashSet::new();
    facts.retain(|f| seen.insert(f.clone()));
    facts
}

/// Endings of office names, longest first where one ends another.
const OFFICE_SUFFIXES: &[&str] = &["仲裁委员会", "委员会", "派出所", "中心", "大厅", "窗口", "平台", "热线", "银行", "法院", "局"];

fn office_suffixes() -> &'static Words<&'static str> {
    static W: OnceLock<Words<&'static str>> = OnceLock::new();
    W.get_or_init(|| Words::new(OFFICE_SUFFIXES.iter().map(|s| (*s, *s))))
}

/// Words that end in an office suffix but name no office (布局, 窗口期, 银行卡).
const NOT_OFFICES: &[&str] = &[
    "布局", "格局", "结局", "全局", "大局", "局面", "局限", "局部", "局势", "骗局", "开局", "出局", "当局", "饭局", "僵局",
    "定局", "终局", "窗口期", "银行卡", "银行账", "银行流水", "银行转账", "市中心", "中心城", "中心区", "平台期",
];

/// Where an office name cannot reach back past: verbs and particles in front of it (前往税务局,
/// 到窗口, 您的银行) are not part of the name, and a bare suffix left over (窗口) names no office.
const OFFICE_STOPS: &[&str] = &[
    "前往", "通过", "登录", "使用", "拨打", "致电", "联系", "咨询", "提供", "携带", "办理", "当地", "就近", "附近", "相关",
    "指定", "任意", "所在地", "户籍地", "居住地", "网上", "线上", "在线", "本人", "您", "请", "向", "到", "去", "往", "在",
    "至", "由", "经", "找", "或", "和", "及", "与", "跟", "从", "给", "对", "为", "把", "被", "持", "凭", "该", "本", "各",
    "其", "此", "即", "等", "并", "可", "须", "需", "要", "是", "于", "以", "入", "进", "的",
];

/// Whether an [`OFFICE_STOPS`] word ends at `end`. Keyed by last character, since the walk back
/// from every office suffix tries it at each step.
fn stop_before(c: &[char], end: usize) -> bool {
    static W: OnceLock<HashMap<char, Vec<Vec<char>>>> = OnceLock::new();
    let stops = W.get_or_init(|| {
        let mut m: HashMap<char, Vec<Vec<char>>> = HashMap::new();
        for w in OFFICE_STOPS {
            let w: Vec<char> = w.chars().collect();
            m.entry(w[w.len() - 1]).or_default().push(w);
        }
        m
    });
    end > 0 && stops.get(&c[end - 1]).is_some_and(|ws| ws.iter().any(|w| c[..end].ends_with(w)))
}

/// Generic service points every hand-off line may name (前往相关部门服务窗口, 政务服务中心): they name
/// no particular office, so inventing them misleads no one.
const GENERIC_OFFICES: &[&str] = &[
    "服务窗口", "办事窗口", "服务大厅", "办事大厅", "政务大厅", "政务服务中心", "政务中心", "便民服务中心", "便民热线", "服务热线",
];

fn office_facts(c: &[char], facts: &mut Vec<Fact>) {
    let n = c.len();
    let mut prev_end = 0;
    let mut i = 0;
    while i < n {
        let Some((len, suffix)) = office_suffixes().at(c, i) else {
            i += 1;
            continue;
        };
        let end = i + len;
        let not_office = NOT_OFFICES.iter().any(|w| match w.find(suffix) {
            // The word holds the suffix `o` characters in: it starts `o` before this suffix.
            Some(b) => {
                let o = w[..b].chars().count();
                i >= o && starts(c, i - o, w)
            }
            None => false,
        });
        if not_office {
            i = end;
            continue;
        }
        let mut run_start = i;
        while run_start > 0 && is_cjk(c[run_start - 1]) {
            run_start -= 1;
        }
        let lower = run_start.max(prev_end).max(i.saturating_sub(12));
        let mut s = i;
        while s > lower && !stop_before(c, s) {
            s -= 1;
        }
        prev_end = end;
        i = end;
        let name = &c[s..end];
        // 12345热线 / 12345政务服务便民热线: the hotline this assistant is.
        if s == run_start && ends_with(c, run_start, "12345") {
            continue;
        }
        if name.len() == len && len < 3 {
            continue;
        }
        let name_str: String = name.iter().collect();
        if GENERIC_OFFICES.iter().any(|g| name_str.ends_with(g)) {
            continue;
        }
        let key: String = name[name.len().saturating_sub(3)..].iter().collect();
        facts.push(Fact::Office(key));
    }
}

// ---------------------------------------------------------------------------------------------
// Contradictions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Need,
    Can,
    Fee,
}

/// Negative polarity words. 不要求 is listed because policies abolish paperwork in those words
/// (不再要求提供解除劳动合同证明), while 要求 alone is too common to be a claim (按要求).
const NEGATIVE: &[(&str, Group)] = &[
    ("不再要求", Group::Need),
    ("不要求", Group::Need),
    ("不可以", Group::Can),
    ("不需要", Group::Need),
    ("不收费", Group::Fee),
    ("不收取", Group::Fee),
    ("无需", Group::Need),
    ("无须", Group::Need),
    ("毋需", Group::Need),
    ("毋须", Group::Need),
    ("不需", Group::Need),
    ("不须", Group::Need),
    ("不用", Group::Need),
    ("不必", Group::Need),
    ("免予", Group::Need),
    ("免于", Group::Need),
    ("不能", Group::Can),
    ("不得", Group::Can),
    ("不予", Group::Can),
    ("不可", Group::Can),
    ("免费", Group::Fee),
    ("免收", Group::Fee),
    ("免缴", Group::Fee),
    ("免交", Group::Fee),
    ("不收", Group::Fee),
    ("不要钱", Group::Fee),
    ("不花钱", Group::Fee),
    ("不交钱", Group::Fee),
    ("不收钱", Group::Fee),
];

const POSITIVE: &[(&str, Group)] = &[
    ("需要", Group::Need),
    ("可以", Group::Can),
    ("收费", Group::Fee),
    ("收取", Group::Fee),
    ("缴纳", Group::Fee),
    ("交费", Group::Fee),
    ("缴费", Group::Fee),
    ("付费", Group::Fee),
    ("要交钱", Group::Fee),
    ("要花钱", Group::Fee),
    ("要收钱", Group::Fee),
    ("要付钱", Group::Fee),
    ("交钱", Group::Fee),
    ("收钱", Group::Fee),
    ("要钱", Group::Fee),
    ("花钱", Group::Fee),
    ("须", Group::Need),
    ("需", Group::Need),
    ("要", Group::Need),
    ("可", Group::Can),
    ("能", Group::Can),
];

/// Words containing a polarity character that state no yes/no conclusion (主要, 可能, 功能, 即可,
/// 不要 "don't"). Matched first, at their first character.
const NOT_POLAR: &[&str] = &[
    "不可抗力", "不可或缺", "要求", "主要", "重要", "只要", "要点", "要件", "要素", "摘要", "纪要", "必要", "要是", "不要",
    "要么", "概要", "提要", "要闻", "要领", "想要", "首要", "紧要", "简要", "扼要", "需求", "须知", "尽可能", "可能",
    "许可", "认可", "可是", "可靠", "可见", "可持续", "宁可", "可爱", "可惜", "可控", "可信", "可观", "可疑", "可否",
    "即可", "功能", "能力", "技能", "智能", "职能", "能源", "能否", "性能", "才能", "节能", "本能",
];

/// [`NOT_POLAR`], [`NEGATIVE`], [`POSITIVE`] as one list: the longest word at a position wins,
/// so a word stating no conclusion (tag `None`) hides the polarity word inside it, and a negative
/// hides its positive; at equal length the earlier list wins.
fn polarity_words() -> &'static Words<Option<(Group, bool)>> {
    static W: OnceLock<Words<Option<(Group, bool)>>> = OnceLock::new();
    W.get_or_init(|| {
        Words::new(
            NOT_POLAR
                .iter()
                .map(|w| (*w, None))
                .chain(NEGATIVE.iter().map(|&(w, g)| (w, Some((g, true)))))
                .chain(POSITIVE.iter().map(|&(w, g)| (w, Some((g, false))))),
        )
    })
}

/// Just before a polarity word, these make it a question or a condition (是否需要, 如需), no claim.
const CONDITIONAL: &[&str] = &["是否", "如果", "假如", "倘若", "若", "如"];

/// Adverbs skipped between a polarity word and its object (需要再提交, 还需要): they change nothing.
const SKIP_AFTER: &[&str] = &["另行", "额外", "再", "还", "也", "都", "均", "另"];
const SKIP_BEFORE: &[char] = &['还', '也', '都', '均', '再', '就', '则', '才', '亦'];

/// Characters after (before) a source's polarity word within which an object counts as its object.
const WINDOW_AFTER: usize = 6;
const WINDOW_BEFORE: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Mark {
    group: Group,
    negative: bool,
    start: usize,
    end: usize,
}

/// The polarity words of a text, each once: negatives win over the positives inside them
/// (不需要 is not also 需要), and a positive right after a negative, or after 不, takes its
/// polarity (无需缴纳, 不得收取, 不缴纳 say no fee).
fn polarity_marks(c: &[char]) -> Vec<Mark> {
    let mut marks: Vec<Mark> = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let (len, group, mut negative) = match polarity_words().at(c, i) {
            None => {
                i += 1;
                continue;
            }
            Some((len, None)) => {
                i += len;
                continue;
            }
            Some((len, Some((group, negative)))) => (len, group, negative),
        };
        let end = i + len;
        let mut start = i;
        if !negative {
            if i > 0 && c[i - 1] == '不' {
                negative = true;
                start = i - 1;
            } else if i > 1 && c[i - 2] == '不' && SKIP_BEFORE.contains(&c[i - 1]) {
                // 不再需要审批 is 不需要审批.
                negative = true;
                start = i - 2;
            } else if let Some(last) = marks.last() {
                let adjacent = last.end == i || (last.end + 1 == i && SKIP_BEFORE.contains(&c[i - 1]));
                if last.negative && adjacent {
                    negative = true;
                }
            }
        }
        if !CONDITIONAL.iter().any(|w| ends_with(c, start, w)) && !relative_clause(c, end) {
            marks.push(Mark { group, negative, start, end });
        }
        i = end;
    }
    marks
}

/// Whether the clause after a polarity word ends in 的 (需要上线检验的，到检验机构检验): it names who
/// the next clause is about, it states no conclusion.
fn relative_clause(c: &[char], end: usize) -> bool {
    let mut k = end;
    while k < c.len() && k - end < 12 && !ends_clause(c[k]) {
        k += 1;
    }
    k < c.len() && ends_clause(c[k]) && k > end && c[k - 1] == '的'
}

fn is_terminator(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '；' | '!' | '?' | ';' | '\n')
}

/// Where a source's polarity word stops governing: the end of its clause.
fn ends_clause(c: char) -> bool {
    is_terminator(c) || matches!(c, '，' | ',' | '：' | ':')
}

/// One source, canonicalised once, with its polarity words.
struct Source {
    chars: Vec<char>,
    text: String,
    marks: Vec<Mark>,
}

impl Source {
    fn new(text: &str) -> Self {
        let chars = canon(text);
        let marks = polarity_marks(&chars);
        Source { text: chars.iter().collect(), chars, marks }
    }

    /// The text within `WINDOW_AFTER` characters after a mark (or `WINDOW_BEFORE` before it),
    /// not crossing a clause end: a polarity word governs its own clause only.
    fn window(&self, m: &Mark, after: bool) -> &[char] {
        let c = &self.chars;
        if after {
            let mut e = m.end;
            while e < c.len() && e - m.end < WINDOW_AFTER && !ends_clause(c[e]) {
                e += 1;
            }
            &c[m.end..e]
        } else {
            let mut s = m.start;
            while s > 0 && m.start - s < WINDOW_BEFORE && !ends_clause(c[s - 1]) {
                s -= 1;
            }
            &c[s..m.start]
        }
    }
}

fn contains(hay: &[char], needle: &[char]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The first polarity claim of the sentence that some source states the other way and no source
/// states the same way, as a drop reason.
///
/// The object of a claim is the 2-4 CJK characters after the polarity word (需要上线检验 → 上线);
/// only its first two characters are looked for, because sources word the rest differently. When
/// nothing follows the word (首次申领收费), the object is the 2-4 characters before it, looked for by
/// its last two characters within `WINDOW_BEFORE` characters before a source's polarity word
/// (首次申领居住证不收取工本费).
fn contradiction(c: &[char], sources: &[Source]) -> Option<DropReason> {
    let marks = polarity_marks(c);
    for (k, m) in marks.iter().enumerate() {
        let mut p = m.end;
        while let Some(w) = SKIP_AFTER.iter().find(|w| starts(c, p, w)) {
            p += w.chars().count();
        }
        let mut e = p;
        while e < c.len() && e - p < 4 && is_cjk(c[e]) {
            e += 1;
        }
        let (key, after, claim): (Vec<char>, bool, String) = if e - p >= 2 {
            (c[p..p + 2].to_vec(), true, c[m.start..e].iter().collect())
        } else {
            // The object before the word ends at the previous polarity word: 不需要审批免费 has
            // 审批 as the object of 不需要, not of 免费.
            let floor = if k > 0 { marks[k - 1].end } else { 0 };
            let mut q = m.start;
            while q > floor && SKIP_BEFORE.contains(&c[q - 1]) {
                q -= 1;
            }
            let mut s = q;
            while s > floor && q - s < 4 && is_cjk(c[s - 1]) {
                s -= 1;
            }
            if q - s < 2 {
                continue;
            }
            (c[q - 2..q].to_vec(), false, c[s..m.end].iter().collect())
        };
        let mut opposite: Option<String> = None;
        let mut same = false;
        for src in sources {
            for sm in src.marks.iter().filter(|sm| sm.group == m.group) {
                if !contains(src.window(sm, after), &key) {
                    continue;
                }
                if sm.negative == m.negative {
                    same = true;
                } else if opposite.is_none() {
                    let w = src.window(sm, after);
                    let phrase: String = if after {
                        src.chars[sm.start..sm.end].iter().chain(w).collect()
                    } else {
                        w.iter().chain(&src.chars[sm.start..sm.end]).collect()
                    };
                    opposite = Some(phrase);
                }
            }
            if same {
                break;
            }
        }
        if let (Some(source), false) = (opposite, same) {
            return Some(DropReason::Contradiction { claim, source });
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Sentences
// ---------------------------------------------------------------------------------------------

/// Closing marks that belong to the sentence they follow (。” / 。）).
fn is_closer(c: char) -> bool {
    matches!(c, '”' | '’' | '」' | '』' | '）' | ')' | '》')
}

/// Split after 。！？；!?; and line breaks, keeping the punctuation, closing quotes and citation
/// markers that follow it ("…3%。[1]") with the sentence, and a line break right after it, so that
/// dropping a sentence drops its citation and its list line. The pieces concatenate to the input.
fn split_sentences(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let c: Vec<char> = chars.iter().map(|&(_, ch)| ch).collect();
    let byte = |k: usize| chars.get(k).map_or(text.len(), |&(b, _)| b);
    let mut out = Vec::new();
    let mut begin = 0;
    let mut i = 0;
    while i < c.len() {
        if !is_terminator(c[i]) {
            i += 1;
            continue;
        }
        let mut e = i + 1;
        if c[i] != '\n' {
            loop {
                if e < c.len() && ((is_terminator(c[e]) && c[e] != '\n') || is_closer(c[e])) {
                    e += 1;
                } else if let Some(end) = citation_at(&c, e) {
                    e = end;
                } else {
                    break;
                }
            }
            if c.get(e) == Some(&'\n') {
                e += 1;
            }
        }
        out.push(&text[byte(begin)..byte(e)]);
        begin = e;
        i = e;
    }
    if begin < c.len() {
        out.push(&text[byte(begin)..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsupported(g: &Grounding) -> Vec<&str> {
        g.dropped
            .iter()
            .filter_map(|d| match &d.reason {
                DropReason::UnsupportedFact { fact } => Some(fact.as_str()),
                _ => None,
            })
            .collect()
    }

    const TRANSFER: &[&str] = &[
        "办理存量房转移登记，申请人应当提交下列材料：不动产登记申请书、申请人身份证明、不动产权属证书、存量房买卖合同、完税凭证。",
        "不动产登记中心受理申请后，对符合条件的，应当自受理之日起五个工作日内办结。",
    ];

    #[test]
    fn invented_tax_rate_is_dropped_and_plain_sentence_kept() {
        let g = check("二手房过户买方需缴纳契税，税率为3%[1]。还要交个人所得税[1]。", TRANSFER);
        assert_eq!(g.text, "还要交个人所得税[1]。");
        assert_eq!(g.dropped.len(), 1);
        assert_eq!(g.dropped[0].sentence, "二手房过户买方需缴纳契税，税率为3%[1]。");
        assert_eq!(g.dropped[0].reason, DropReason::UnsupportedFact { fact: "3%".into() });
        assert_eq!(g.facts_checked, 1);
    }

    #[test]
    fn supported_numbers_pass_in_either_numeral_form() {
        let sources = &["居住证申领：公安机关应当自受理之日起十五日内制作发放居住证。工本费二十元。"];
        let g = check("受理后15日内发证[1]。需缴纳工本费20元。", sources);
        assert!(g.dropped.is_empty(), "{:?}", g.dropped);
        assert_eq!(g.facts_checked, 2);
        // 天 = 日, 个工作日 = 工作日, ranges read as ranges.
        let g = check("5个工作日内办结，最慢15天。", &["5个工作日内办结，最长不超过十五日。"]);
        assert!(g.dropped.is_empty(), "{:?}", g.dropped);
        let g = check("一般3到5个工作日。", &["3至5个工作日内办结。"]);
        assert!(g.dropped.is_empty(), "{:?}", g.dropped);
    }

    #[test]
    fn wrong_duration_is_dropped() {
        let sources = &["公安机关应当自受理之日起十五日内制作发放居住证。"];
        let g = check("居住证会在30日内发放[1]。请耐心等待。", sources);
        assert_eq!(unsupported(&g), vec!["30日"]);
        assert_eq!(g.text, "请耐心等待。");
        // 15日 and 15个工作日 are different claims.
        let g = check("15个工作日内发放。", sources);
        assert_eq!(unsupported(&g), vec!["15工作日"]);
        // 5日 is not hidden inside 15日; 3% not inside 13%.
        assert_eq!(unsupported(&check("5日内发放。", sources)), vec!["5日"]);
        assert_eq!(unsupported(&check("税率3%。", &["税率为13%。"])), vec!["3%"]);
    }

    #[test]
    fn offices_unknown_dropped_shortened_kept() {
        let sources = &["由户籍所在地公安派出所受理，或到市政务服务中心不动产登记窗口办理。"];
        let g = check("请携带材料到税务局办理[1]。", sources);
        assert_eq!(unsupported(&g), vec!["税务局"]);
        let g = check("可到派出所办理[1]。也可以去不动产登记窗口办理。", sources);
        assert!(g.dropped.is_empty(), "{:?}", g.dropped);
        assert_eq!(g.facts_checked, 2);
        // Generic service points and the hotline itself are not checked.
        assert!(facts("如有疑问，请拨打12345政务服务便民热线，或前往相关部门服务窗口咨询。").is_empty());
        assert!(facts("这一布局方便群众，请勿在窗口期外申请。").is_empty());
    }

    #[test]
    fn contradiction_exempt_inspection() {
        let g = check(
            "4年的私家车还需要上线检验[1]。",
            &["对6年以内的非营运小型、微型载客汽车，免予上线检验，可直接申领检验标志。"],
        );
        assert_eq!(g.text, "");
        assert_eq!(
            g.dropped[0].reason,
            DropReason::Contradiction { claim: "需要上线检验".into(), source: "免予上线检验".into() }
        );
    }

    #[test]
    fn contradiction_against_the_real_inspection_guide() {
        // "需要上线检验的，到…检验" names who goes to the station; it says no car needs inspection.
        let guide = "非营运的小型和微型载客汽车（面包车除外），注册登记后第六年和第十年各检验一次，其间的每两年（第二年、第四年）可以申领检验标志免予上线检验。需要上线检验的，到任意一家具备资质的机动车检验机构检验。";
        let g = check("4年的私家车还需要上线检验[1]。", &[guide]);
        assert!(matches!(g.dropped[0].reason, DropReason::Contradiction { .. }), "{:?}", g.dropped);
        let g = check("私家车注册登记后第6年和第10年各检验1次[1]。第4年可以申领检验标志，免予上线检验[1]。", &[guide]);
        assert!(g.dropped.is_empty(), "{:?}", g.dropped);
    }

    #[test]
    fn negation_across_an_adverb() {
        // 不再需要审批 is the negative: it supports 不需要审批 and contradicts 需要审批.
        let sources = &["夫妻生育子女的，都可以办理生育登记，不再需要审批。"];
        assert!(check("生三孩不需要审批[1]。", sources).dropped.is_empty());
        assert_eq!(check("生三孩还需要审批[1]。", sources).dropped.len(), 1);
    }

    #[test]
    fn abolished_paperwork_contradicts() {
        let sources = &["凭社保卡或身份证即可，不再要求提供解除劳动合同证明等纸质材料。"];
        assert_eq!(check("申领时需要提供解除劳动合同证明[1]。", sources).dropped.len(), 1);
        assert!(check("不需要提供解除劳动合同证明[1]。", sources).dropped.is_empty());
    }

    #[test]
    fn agreeing_negative_is_kept() {
        let g = check("生三孩不需要审批[1]。", &["生育登记实行告知承诺制，不需要审批，夫妻双方凭身份证即可办理。"]);
        assert!(g.dropped.is_empty(), "{:?}", g.dropped);
        assert_eq!(g.text, "生三孩不需要审批[1]。");
    }

    #[test]
    fn contradiction_fee_before_the_word() {
        let g = check("首次申领收费[1]。", &["首次申领居住证不收取工本费；换领、补领的，收取工本费20元。"]);
        assert_eq!(g.dropped.len(), 1);
        assert!(matches!(&g.dropped[0].reason, DropReason::Contradiction { claim, .. } if claim == "首次申领收费"));
    }

    #[test]
    fn negated_positive_takes_the_negative_side() {
        // 无需缴纳 says no fee: an answer saying 免收 agrees; one saying 收取 does not.
        let sources = &["办理居住证无需缴纳工本费。"];
        assert!(check("免收工本费。", sources).dropped.is_empty());
        // Spoken fee words count too.
        let arb = &["劳动争议仲裁不收费。仲裁委员会应当自受理之日起四十五日内结束审理。"];
        assert_eq!(check("根据资料[1]，申请劳动仲裁要交钱。", arb).dropped.len(), 1);
        assert!(check("申请劳动仲裁不要钱[1]。", arb).dropped.is_empty());
        assert_eq!(check("要收取工本费。", sources).dropped.len(), 1);
    }

    #[test]
    fn plain_and_courtesy_sentences_kept() {
        let answer = "您好，感谢您的来电。[1]\n如有疑问，请拨打12345热线。祝您生活愉快！";
        let g = check(answer, &["无关资料。"]);
        assert_eq!(g.text, answer);
        assert_eq!(g.facts_checked, 0);
    }

    #[test]
    fn dropped_list_line_takes_its_line_break() {
        let sources = &["办理需提交身份证、户口本。"];
        let g = check("所需材料：\n- 身份证；\n- 3张照片；\n- 户口本。", sources);
        assert_eq!(g.text, "所需材料：\n- 身份证；\n- 户口本。");
        assert_eq!(unsupported(&g), vec!["3张"]);
    }

    #[test]
    fn dates_phones_and_ages() {
        let sources = &["本办法自二〇二四年一月一日起施行。咨询电话：0571-12333。年满十六周岁的公民应当申领身份证。"];
        let g = check("自2024年1月1日起施行，2024年起全面推行。可拨打12333咨询。满16岁需申领。", sources);
        assert!(g.dropped.is_empty(), "{:?}", g.dropped);
        assert_eq!(unsupported(&check("自2023年1月1日起施行。", sources)), vec!["2023年1月1日"]);
        assert_eq!(unsupported(&check("可拨打12315投诉。", sources)), vec!["12315"]);
        assert!(check("紧急情况请拨打110或120。", sources).dropped.is_empty());
    }

    #[test]
    fn normalise_numbers_converts_quantities() {
        assert_eq!(normalise_numbers("百分之三"), "3%");
        assert_eq!(normalise_numbers("百分之零点五"), "0.5%");
        assert_eq!(normalise_numbers("一千二百元"), "1200元");
        assert_eq!(normalise_numbers("两个月"), "2个月");
        assert_eq!(normalise_numbers("０.５%"), "0.5%");
        assert_eq!(normalise_numbers("３．０％"), "3%");
        assert_eq!(normalise_numbers("十五日"), "15日");
        assert_eq!(normalise_numbers("二十元"), "20元");
        assert_eq!(normalise_numbers("3.0%"), "3%");
        assert_eq!(normalise_numbers("二〇二四年"), "2024年");
        assert_eq!(normalise_numbers("一千零五十元"), "1050元");
        assert_eq!(normalise_numbers("零元"), "0元");
        assert_eq!(normalise_numbers("十分钟"), "10分钟");
        assert_eq!(normalise_numbers("三万元和1.5万元"), "30000元和15000元");
        assert_eq!(normalise_numbers("一万二千"), "12000");
        assert_eq!(normalise_numbers("1,200元"), "1200元");
        assert_eq!(normalise_numbers("第一条第十二款"), "第1条第12款");
        assert_eq!(normalise_numbers("三点五小时"), "3.5小时");
        assert_eq!(normalise_numbers("三分之一"), "1/3");
    }

    #[test]
    fn normalise_numbers_keeps_words() {
        for word in ["一次性", "统一", "万一", "一般", "一律", "一站式", "十分", "一些", "之一", "千万", "三五天", "一一对应"] {
            assert_eq!(normalise_numbers(word), word);
        }
        assert_eq!(
            normalise_numbers("一次性告知，统一受理，万一材料不全，一般一律一站式办理，十分方便，一些之一"),
            "一次性告知，统一受理，万一材料不全，一般一律一站式办理，十分方便，一些之一"
        );
        assert_eq!(normalise_numbers("第一"), "第1");
        // Idempotent: the sources and the answer may be normalised more than once.
        let once = normalise_numbers("十五个工作日，百分之三，二〇二四年");
        assert_eq!(normalise_numbers(&once), once);
    }

    #[test]
    fn facts_of_a_sentence() {
        assert_eq!(facts("自受理之日起十五个工作日内办结，收费二十元[2]。"), vec!["15工作日", "20元"]);
        assert_eq!(facts("提供一份身份证明[1]。"), Vec::<String>::new());
        assert_eq!(facts("办理时限：**十五**个工作日。"), vec!["15工作日"]);
        assert_eq!(facts("到市公安局出入境窗口办理。"), vec!["公安局", "境窗口"]);
    }

    #[test]
    fn long_answer_with_many_numbers() {
        let sources = &[
            "居住证自受理之日起十五日内发放，工本费二十元。",
            "补领需要三个工作日，费用百分之零点五。",
        ];
        let good = "居住证15日内发放，工本费20元[1]。补领需3个工作日，费率0.5%[2]。";
        let bad = "加急5日内发放，费用30元[1]。";
        let mut answer = String::new();
        let mut goods = 0;
        let mut bads = 0;
        while answer.chars().count() < 2000 {
            answer.push_str(good);
            goods += 1;
            answer.push_str(bad);
            bads += 1;
        }
        let g = check(&answer, sources);
        assert_eq!(g.dropped.len(), bads);
        assert_eq!(g.text, good.repeat(goods));
        assert_eq!(g.facts_checked, goods * 4 + bads * 2);
    }

    #[test]
    fn sentences_concatenate_to_input() {
        let text = "第一句。[1]第二句！“引语。”\n第三句；没有结尾";
        let parts = split_sentences(text);
        assert_eq!(parts.concat(), text);
        assert_eq!(parts, vec!["第一句。[1]", "第二句！", "“引语。”\n", "第三句；", "没有结尾"]);
    }
}
