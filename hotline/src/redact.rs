//! PII detection and masking: resident ID numbers (GB 11643 check digit), mobile and landline
//! numbers, bank cards (Luhn), e-mail addresses and vehicle plates.
//!
//! Used wherever ticket text leaves the authorised agent's screen: logs ([`Redacted`]), CSV
//! exports, prompts sent to models ([`mask`]) and API views for callers without the agent key.
//!
//! Digits are found as runs (ASCII or full-width, single spaces/hyphens allowed between groups)
//! and classified by their checks, so `电话13812345678` (no word boundary in Chinese text) is
//! found, while an 18-digit number with a wrong check digit is not called an ID number.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

/// What kind of personal data a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    IdNumber,
    Mobile,
    Landline,
    BankCard,
    Email,
    Plate,
}

/// One detected item: `start..end` are byte offsets into the scanned text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PiiMatch {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

/// GB 11643-1999 check: 17 digits + check character (digit or X), plausible birth date.
pub fn is_resident_id(s: &str) -> bool {
    let b: Vec<char> = s.chars().map(fold_digit).collect();
    if b.len() != 18 || !b[..17].iter().all(|c| c.is_ascii_digit()) {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    let sum: u32 = b[..17].iter().zip(W).map(|(c, w)| c.to_digit(10).unwrap_or(0) * w).sum();
    let expected = CHECK[(sum % 11) as usize];
    if b[17].to_ascii_uppercase() != expected {
        return false;
    }
    // Birth date YYYYMMDD at positions 6..14.
    let digits: String = b[6..14].iter().collect();
    let year: u32 = digits[0..4].parse().unwrap_or(0);
    let month: u32 = digits[4..6].parse().unwrap_or(0);
    let day: u32 = digits[6..8].parse().unwrap_or(0);
    (1900..=2100).contains(&year) && chrono::NaiveDate::from_ymd_opt(year as i32, month, day).is_some()
}

/// Luhn (mod 10) check used by bank cards.
pub fn luhn_valid(digits: &str) -> bool {
    let ds: Vec<u32> = digits.chars().filter_map(|c| fold_digit(c).to_digit(10)).collect();
    if ds.len() < 2 || ds.len() != digits.chars().count() {
        return false;
    }
    let sum: u32 = ds
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| if i % 2 == 1 { let x = d * 2; if x > 9 { x - 9 } else { x } } else { d })
        .sum();
    sum % 10 == 0
}

/// Mainland mobile number: 11 digits, `1[3-9]…`, optionally with a `+86`/`86` prefix.
pub fn is_mobile(s: &str) -> bool {
    let d: String = s.chars().map(fold_digit).filter(|c| c.is_ascii_digit()).collect();
    let d = if d.len() == 13 && d.starts_with("86") { &d[2..] } else { &d[..] };
    d.len() == 11 && d.starts_with('1') && matches!(d.as_bytes()[1], b'3'..=b'9')
}

/// Landline with area code: `010`/`02X` + 8 digits, or `0XXX` + 7–8 digits; the local part does
/// not start with 0 or 1.
pub fn is_landline(s: &str) -> bool {
    let d: String = s.chars().map(fold_digit).filter(|c| c.is_ascii_digit()).collect();
    if !d.starts_with('0') || d.len() < 10 || d.len() > 12 {
        return false;
    }
    let area_len = if d.starts_with("010") || d.starts_with("02") { 3 } else { 4 };
    let local = &d[area_len..];
    (7..=8).contains(&local.len()) && !local.starts_with('0') && !local.starts_with('1') && !d[1..area_len].starts_with('0')
}

/// A contact phone as a form accepts it: mobile or landline (digits, spaces, hyphens, `+86`).
pub fn is_phone(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty()
        && t.chars().all(|c| fold_digit(c).is_ascii_digit() || matches!(c, ' ' | '-' | '+'))
        && (is_mobile(t) || is_landline(t))
}

fn fold_digit(c: char) -> char {
    match c {
        '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
        'Ｘ' => 'X',
        'ｘ' => 'x',
        _ => c,
    }
}

fn is_digit_like(c: char) -> bool {
    fold_digit(c).is_ascii_digit()
}

fn email_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").expect("email regex")
    })
}

fn plate_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Za-z][·•\- ]?[A-Za-z0-9]{4}[A-Za-z0-9挂学警港澳领]{1,2}",
        )
        .expect("plate regex")
    })
}

/// A digit group inside a run: byte span in the text and its folded characters.
struct Group {
    start: usize,
    end: usize,
    chars: String,
}

fn classify(s: &str) -> Option<PiiKind> {
    let n = s.len();
    if n == 18 && is_resident_id(s) {
        return Some(PiiKind::IdNumber);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if (n == 11 || n == 13) && is_mobile(s) {
        return Some(PiiKind::Mobile);
    }
    if is_landline(s) {
        return Some(PiiKind::Landline);
    }
    if (16..=19).contains(&n) && luhn_valid(s) {
        return Some(PiiKind::BankCard);
    }
    None
}

/// Digit runs: groups of digits (a trailing X belongs to the group) separated by one space or
/// hyphen. Each run is classified whole, else split into the longest classifiable group spans.
fn find_numbers(text: &str, taken: &[(usize, usize)], out: &mut Vec<PiiMatch>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        if !is_digit_like(chars[i].1) || (i > 0 && chars[i - 1].1.is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        // Collect groups.
        let mut groups: Vec<Group> = Vec::new();
        let mut j = i;
        loop {
            let gs = j;
            let mut g = String::new();
            while j < chars.len() && is_digit_like(chars[j].1) {
                g.push(fold_digit(chars[j].1));
                j += 1;
            }
            if j < chars.len() && matches!(fold_digit(chars[j].1), 'X' | 'x') {
                g.push('X');
                j += 1;
            }
            let end = if j < chars.len() { chars[j].0 } else { text.len() };
            groups.push(Group { start: chars[gs].0, end, chars: g });
            let sep = j < chars.len() && matches!(chars[j].1, ' ' | '-');
            if sep && j + 1 < chars.len() && is_digit_like(chars[j + 1].1) && !groups.last().is_some_and(|g| g.chars.ends_with('X')) {
                j += 1;
            } else {
                break;
            }
        }
        // A run glued to letters after it (order codes, serials) is not personal data.
        let glued = j < chars.len() && chars[j].1.is_ascii_alphanumeric();
        if !glued {
            let mut a = 0;
            while a < groups.len() {
                let mut found = None;
                for b in (a + 1..=groups.len()).rev() {
                    let joined: String = groups[a..b].iter().map(|g| g.chars.as_str()).collect();
                    if let Some(kind) = classify(&joined) {
                        found = Some((b, kind));
                        break;
                    }
                }
                match found {
                    Some((b, kind)) => {
                        let (start, end) = (groups[a].start, groups[b - 1].end);
                        if !overlaps(taken, start, end) {
                            out.push(PiiMatch { kind, start, end });
                        }
                        a = b;
                    }
                    None => a += 1,
                }
            }
        }
        i = j.max(i + 1);
    }
}

fn overlaps(taken: &[(usize, usize)], start: usize, end: usize) -> bool {
    taken.iter().any(|&(s, e)| start < e && s < end)
}

/// Every PII item in `text`, ordered by position, without overlaps.
pub fn find_pii(text: &str) -> Vec<PiiMatch> {
    let mut out = Vec::new();
    for m in email_re().find_iter(text) {
        out.push(PiiMatch { kind: PiiKind::Email, start: m.start(), end: m.end() });
    }
    for m in plate_re().find_iter(text) {
        let next = text[m.end()..].chars().next();
        if next.is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        out.push(PiiMatch { kind: PiiKind::Plate, start: m.start(), end: m.end() });
    }
    let taken: Vec<(usize, usize)> = out.iter().map(|m| (m.start, m.end)).collect();
    find_numbers(text, &taken, &mut out);
    out.sort_by_key(|m| m.start);
    out
}

/// The masked form of one item (`s` is the matched text).
pub fn mask_item(kind: PiiKind, s: &str) -> String {
    let digits: String = s.chars().map(fold_digit).filter(|c| c.is_ascii_alphanumeric()).collect();
    let keep = |head: usize, tail: usize| -> String {
        let cs: Vec<char> = digits.chars().collect();
        if cs.len() <= head + tail {
            return "*".repeat(cs.len());
        }
        let mut out: String = cs[..head].iter().collect();
        out.push_str(&"*".repeat(cs.len() - head - tail));
        out.extend(&cs[cs.len() - tail..]);
        out
    };
    match kind {
        PiiKind::IdNumber => keep(1, 1),
        PiiKind::Mobile => {
            if digits.len() == 13 {
                keep(5, 4)
            } else {
                keep(3, 4)
            }
        }
        PiiKind::Landline => {
            let area = if digits.starts_with("010") || digits.starts_with("02") { 3 } else { 4 };
            keep(area, 2)
        }
        PiiKind::BankCard => keep(0, 4),
        PiiKind::Email => match s.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => "***".into(),
        },
        PiiKind::Plate => {
            let cs: Vec<char> = s.chars().filter(|c| c.is_alphanumeric()).collect();
            let head: String = cs.iter().take(2).collect();
            format!("{head}{}", "*".repeat(cs.len().saturating_sub(2)))
        }
    }
}

/// `text` with every PII item masked.
pub fn mask(text: &str) -> String {
    let found = find_pii(text);
    if found.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in found {
        out.push_str(&text[last..m.start]);
        out.push_str(&mask_item(m.kind, &text[m.start..m.end]));
        last = m.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Text to be shown to a chat model: PII masked (models never need the digits to classify or
/// summarise, and prompts may be logged or sent elsewhere).
pub fn for_prompt(text: &str) -> String {
    mask(text)
}

/// Display wrapper for logs: `tracing::info!(summary = %Redacted(&t.summary))`.
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.0))
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", mask(self.0))
    }
}

/// Mask a personal name for unauthorised views: first character kept (`张*`, `欧**`).
pub fn mask_name(name: &str) -> String {
    let cs: Vec<char> = name.trim().chars().collect();
    match cs.len() {
        0 => String::new(),
        1 => "*".into(),
        n => format!("{}{}", cs[0], "*".repeat(n - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a valid ID from 17 digits by computing its check character.
    fn with_check(first17: &str) -> String {
        const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
        let sum: u32 = first17.chars().zip(W).map(|(c, w)| c.to_digit(10).unwrap() * w).sum();
        format!("{first17}{}", CHECK[(sum % 11) as usize])
    }

    fn kinds(text: &str) -> Vec<PiiKind> {
        find_pii(text).into_iter().map(|m| m.kind).collect()
    }

    #[test]
    fn resident_id_check_digit() {
        // The standard's worked example.
        assert!(is_resident_id("11010519491231002X"));
        assert!(is_resident_id("11010519491231002x"));
        assert!(!is_resident_id("110105194912310021"), "wrong check digit");
        assert!(!is_resident_id("11010519491331002X"), "month 13");
        let id = with_check("44030619900230123"); // 30 February
        assert!(!is_resident_id(&id), "impossible date");
        let id = with_check("32010219851107321");
        assert!(is_resident_id(&id));
        assert!(!is_resident_id("3201021985110732"), "17 characters");
    }

    #[test]
    fn luhn_cards() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("7992739871x"));
    }

    #[test]
    fn phones() {
        assert!(is_mobile("13812345678"));
        assert!(is_mobile("+86 138 1234 5678"));
        assert!(!is_mobile("12812345678"), "second digit 2 is not a mobile prefix");
        assert!(!is_mobile("1381234567"), "10 digits");
        assert!(is_landline("010-62345678"));
        assert!(is_landline("0571-8765432"));
        assert!(is_landline("075526345678"));
        assert!(!is_landline("075512345678"), "local numbers do not start with 1");
        assert!(!is_landline("010-02345678"), "local part starts with 0");
        assert!(!is_landline("12345"));
        assert!(is_phone("0571-87654321"));
        assert!(!is_phone("call me"));
        assert!(!is_phone("1381234567a"));
    }

    #[test]
    fn finds_and_masks_in_chinese_text() {
        let id = "11010519491231002X";
        let text = format!(
            "市民张先生来电，电话13812345678，身份证{id}，银行卡4111 1111 1111 1111被扣款，邮箱zhang.san@example.com，\
             车牌京A12345占道，座机010-62345678。"
        );
        assert_eq!(
            kinds(&text),
            vec![PiiKind::Mobile, PiiKind::IdNumber, PiiKind::BankCard, PiiKind::Email, PiiKind::Plate, PiiKind::Landline]
        );
        let masked = mask(&text);
        for secret in ["13812345678", id, "4111 1111 1111 1111", "1111111111111111", "zhang.san@", "A12345", "62345678"] {
            assert!(!masked.contains(secret), "{secret} leaked in {masked}");
        }
        assert!(masked.contains("138****5678"), "{masked}");
        assert!(masked.contains("1****************X"), "{masked}");
        assert!(masked.contains("************1111"), "{masked}");
        assert!(masked.contains("z***@example.com"), "{masked}");
        assert!(masked.contains("京A*****"), "{masked}");
        assert!(masked.contains("市民张先生来电"), "ordinary text kept: {masked}");
    }

    #[test]
    fn invalid_numbers_are_left_alone() {
        // Wrong ID check digit, Luhn-invalid card, 10-digit "phone", amounts and dates.
        for text in [
            "证件号110105194912310021",
            "卡号4111111111111112",
            "号码1381234567",
            "金额123456元，2024年10月1日，工单20241001",
            "编号AB13812345678",
        ] {
            assert_eq!(kinds(text), vec![], "{text}");
            assert_eq!(mask(text), text);
        }
    }

    #[test]
    fn adjacent_numbers_and_full_width() {
        assert_eq!(kinds("13812345678 18698765432"), vec![PiiKind::Mobile, PiiKind::Mobile]);
        assert_eq!(kinds("手机：１３８１２３４５６７８"), vec![PiiKind::Mobile]);
        assert_eq!(kinds("+8613812345678"), vec![PiiKind::Mobile]);
        assert!(!mask("手机：１３８１２３４５６７８").contains("１２３４"));
    }

    #[test]
    fn redacted_display_and_names() {
        assert_eq!(format!("{}", Redacted("打13812345678")), "打138****5678");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(for_prompt("我的邮箱a@b.cn"), "我的邮箱a***@b.cn");
    }
}
