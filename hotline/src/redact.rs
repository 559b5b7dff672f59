//! PII detection and masking: resident ID numbers (GB 11643 check digit), mobile and landline
//! numbers, bank cards (Luhn), e-mail addresses and vehicle plates.
//!
//! Used wherever ticket text leaves the authorised agent's screen: logs ([`Redacted`]), CSV
//! exports, prompts sent to models ([`mask`]) and API views for callers without the agent key.
//!
//! Digits are found as runs (ASCII or full-width) of groups separated by one or two spaces, a
//! hyphen, or a dot between groups of at least three digits, optionally opened by a parenthesised
//! area code (`(010)`, `（0755）`), and classified by their checks, so `电话13812345678` (no word
//! boundary in Chinese text) and `138.1234.5678` are found, while an 18-digit number with a wrong
//! check digit, an amount like `1234.56` or a date like `2024.10.01` is not.
//!
//! Within a run, from each group the longest span of groups that classifies is taken. Only spans
//! of at most 19 characters are tried: no item is longer (bank cards 16–19, ID numbers 18,
//! mobiles 13 with `86`, landlines 12) and every group adds a character, so the spans tried from
//! a group are a bounded window. Masking runs on request threads over text callers supply, and
//! trying every span of a run was cubic: 4 KB of `1 1 1 …` took about 10 seconds.

use std::fmt;
use std::ops::Range;
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

/// Longest text [`classify`] accepts: a 19-digit bank card (ID numbers are 18 characters, mobiles
/// 13 with the `86` prefix, landlines 12).
const MAX_ITEM_LEN: usize = 19;

/// Area code (`area_len` digits, 0 then not 0) and a 7-8 digit local number not starting with 0.
fn is_written_landline(s: &str, area_len: usize) -> bool {
    let (area, local) = s.split_at(area_len.min(s.len()));
    s.bytes().all(|b| b.is_ascii_digit())
        && (3..=4).contains(&area.len())
        && area.starts_with('0')
        && !area[1..].starts_with('0')
        && (7..=8).contains(&local.len())
        && !local.starts_with('0')
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
    if (10..=12).contains(&n) && is_landline(s) {
        return Some(PiiKind::Landline);
    }
    if (16..=19).contains(&n) && luhn_valid(s) {
        return Some(PiiKind::BankCard);
    }
    None
}

/// A digit group inside a run: its byte span in the text and where its folded characters are in
/// [`DigitRun::folded`].
struct Group {
    start: usize,
    end: usize,
    folded: Range<usize>,
}

/// Digit groups written as one number. Their folded characters (ASCII digits, a final `X`) are
/// stored end to end, so the characters of any span of groups are one slice.
#[derive(Default)]
struct DigitRun {
    folded: String,
    groups: Vec<Group>,
    /// The first group is a parenthesised area code: `(010)12345678`.
    area_code: bool,
}

impl DigitRun {
    fn push_group(&mut self, start: usize, end: usize, chars: impl Iterator<Item = char>) {
        let first = self.folded.len();
        self.folded.extend(chars);
        self.groups.push(Group { start, end, folded: first..self.folded.len() });
    }

    /// Folded characters of groups `a..b`.
    fn chars_of(&self, a: usize, b: usize) -> &str {
        &self.folded[self.groups[a].folded.start..self.groups[b - 1].folded.end]
    }

    /// What groups `a..b` are. A span opened by a parenthesised area code is a landline
    /// whatever digit its local number starts with: the parentheses say "phone" more surely
    /// than the numbering plan does, and a masked non-number costs nothing.
    fn classify_span(&self, a: usize, b: usize) -> Option<PiiKind> {
        let s = self.chars_of(a, b);
        match classify(s) {
            None if a == 0 && b > 1 && self.area_code && is_written_landline(s, self.groups[0].folded.len()) => Some(PiiKind::Landline),
            found => found,
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\u{3000}')
}

fn is_open_paren(c: char) -> bool {
    matches!(c, '(' | '（')
}

fn is_close_paren(c: char) -> bool {
    matches!(c, ')' | '）')
}

/// A parenthesised area code that opens a run: `(010)`, `（0755）`.
struct AreaCode {
    /// Index of the first digit inside the parentheses.
    digits: usize,
    /// Index of the closing parenthesis.
    close: usize,
    /// Index of the first digit of the local number.
    local: usize,
}

/// The text as characters with their byte offsets, for finding digit runs.
struct CharScan<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
}

impl<'a> CharScan<'a> {
    fn new(text: &'a str) -> Self {
        CharScan { text, chars: text.char_indices().collect() }
    }

    fn char_at(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|&(_, c)| c)
    }

    /// Byte offset of character `i`; the text's length past its end.
    fn offset(&self, i: usize) -> usize {
        self.chars.get(i).map_or(self.text.len(), |&(offset, _)| offset)
    }

    fn is_digit_at(&self, i: usize) -> bool {
        self.char_at(i).is_some_and(is_digit_like)
    }

    fn is_word_char_at(&self, i: usize) -> bool {
        self.char_at(i).is_some_and(|c| c.is_ascii_alphanumeric())
    }

    /// Whether `count` digits start at `i` (looks at no more than `count` characters).
    fn has_digits(&self, i: usize, count: usize) -> bool {
        (i..i + count).all(|k| self.is_digit_at(k))
    }

    fn folded(&self, range: Range<usize>) -> impl Iterator<Item = char> + '_ {
        self.chars[range].iter().map(|&(_, c)| fold_digit(c).to_ascii_uppercase())
    }

    /// Where the next group starts when a group separator is at `i`: one or two spaces, a hyphen,
    /// or (with `dot_allowed`) a dot followed by at least three digits.
    fn next_group_after(&self, i: usize, dot_allowed: bool) -> Option<usize> {
        let next = match self.char_at(i)? {
            c if is_space(c) && self.char_at(i + 1).is_some_and(is_space) => i + 2,
            c if is_space(c) => i + 1,
            '-' => i + 1,
            '.' if dot_allowed && self.has_digits(i + 1, 3) => i + 1,
            _ => return None,
        };
        self.is_digit_at(next).then_some(next)
    }

    /// A parenthesised area code at `i` (3 or 4 digits starting with 0) followed by the local
    /// number, directly or after spaces or a hyphen. Requiring the leading 0 keeps years and
    /// list numbers such as `(2024)` out.
    fn area_code_at(&self, i: usize) -> Option<AreaCode> {
        if !self.char_at(i).is_some_and(is_open_paren) {
            return None;
        }
        let digits = i + 1;
        let len = (0..5).take_while(|&k| self.is_digit_at(digits + k)).count();
        let close = digits + len;
        let is_area_code = (3..=4).contains(&len)
            && self.char_at(digits).map(fold_digit) == Some('0')
            && self.char_at(close).is_some_and(is_close_paren);
        if !is_area_code {
            return None;
        }
        let after = close + 1;
        let local = if self.is_digit_at(after) { after } else { self.next_group_after(after, false)? };
        Some(AreaCode { digits, close, local })
    }

    /// Whether a run starts at character `i`.
    fn starts_run(&self, i: usize) -> bool {
        // Digits right after a letter or digit are part of a code (`AB13812345678`).
        let after_word = i.checked_sub(1).is_some_and(|prev| self.is_word_char_at(prev));
        (self.is_digit_at(i) && !after_word) || self.area_code_at(i).is_some()
    }

    /// The run starting at character `i`, and the index just after it.
    fn read_run(&self, i: usize) -> (DigitRun, usize) {
        let mut run = DigitRun::default();
        let mut j = i;
        if let Some(area) = self.area_code_at(i) {
            // The group spans the parentheses, so a masked landline leaves none of them behind.
            run.push_group(self.offset(i), self.offset(area.close + 1), self.folded(area.digits..area.close));
            run.area_code = true;
            j = area.local;
        }
        loop {
            let group_start = j;
            while self.is_digit_at(j) {
                j += 1;
            }
            let digit_count = j - group_start;
            let has_check_char = self.char_at(j).is_some_and(|c| matches!(fold_digit(c), 'X' | 'x'));
            if has_check_char {
                j += 1;
            }
            run.push_group(self.offset(group_start), self.offset(j), self.folded(group_start..j));
            // An ID number's check character ends the number.
            if has_check_char {
                break;
            }
            // A dot next to a shorter group is a decimal point, a date or a version (`1234.56`,
            // `2024.10.01`, `1.2.3`), not a separator inside a phone number.
            match self.next_group_after(j, digit_count >= 3) {
                Some(next) => j = next,
                None => break,
            }
        }
        (run, j)
    }
}

/// The digit runs of `text` that can hold personal data: groups of digits (a trailing X belongs
/// to the group) separated by one or two spaces, a hyphen, or a dot between groups of at least
/// three digits, optionally opened by a parenthesised area code.
fn digit_runs(text: &str) -> Vec<DigitRun> {
    let scan = CharScan::new(text);
    let mut runs = Vec::new();
    let mut i = 0;
    while i < scan.chars.len() {
        if !scan.starts_run(i) {
            i += 1;
            continue;
        }
        let (run, end) = scan.read_run(i);
        // A run glued to letters after it (order codes, serials) is not personal data.
        if !scan.is_word_char_at(end) {
            runs.push(run);
        }
        i = end.max(i + 1);
    }
    runs
}

/// From group `a`, the end `b` of the longest span of groups `a..b` that classifies, and its kind.
type LongestItemFrom = fn(&DigitRun, usize) -> Option<(usize, PiiKind)>;

/// [`LongestItemFrom`] over the spans no longer than [`MAX_ITEM_LEN`]: longer ones never
/// classify, and every group adds at least one character, so this is a bounded window of groups.
fn longest_item_from(run: &DigitRun, a: usize) -> Option<(usize, PiiKind)> {
    let first = run.groups[a].folded.start;
    let fitting = run.groups[a..].iter().take_while(|g| g.folded.end - first <= MAX_ITEM_LEN).count();
    (a + 1..=a + fitting).rev().find_map(|b| run.classify_span(a, b).map(|kind| (b, kind)))
}

/// The items of a run, left to right: from each group the longest span that classifies; after a
/// match the search goes on from the group after it, else from the next group.
fn run_items(run: &DigitRun, longest_from: LongestItemFrom, mut emit: impl FnMut(PiiMatch)) {
    let mut a = 0;
    while a < run.groups.len() {
        match longest_from(run, a) {
            Some((b, kind)) => {
                emit(PiiMatch { kind, start: run.groups[a].start, end: run.groups[b - 1].end });
                a = b;
            }
            None => a += 1,
        }
    }
}

fn find_numbers(text: &str, claimed: &ClaimedSpans, out: &mut Vec<PiiMatch>) {
    for run in digit_runs(text) {
        run_items(&run, longest_item_from, |m| {
            if !claimed.overlaps(m.start, m.end) {
                out.push(m);
            }
        });
    }
}

/// Byte spans already matched as e-mail addresses or plates, merged into sorted disjoint spans
/// so that an overlap test is a binary search rather than a scan of every match.
struct ClaimedSpans(Vec<(usize, usize)>);

impl ClaimedSpans {
    fn new(matches: &[PiiMatch]) -> Self {
        let mut spans: Vec<(usize, usize)> = matches.iter().map(|m| (m.start, m.end)).collect();
        spans.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        ClaimedSpans(merged)
    }

    /// Whether the non-empty span `start..end` overlaps a claimed span.
    fn overlaps(&self, start: usize, end: usize) -> bool {
        let first_ending_after = self.0.partition_point(|&(_, e)| e <= start);
        self.0.get(first_ending_after).is_some_and(|&(s, _)| s < end)
    }
}

/// E-mail addresses and vehicle plates, not overlapping; digit runs must not overlap them.
fn find_emails_and_plates(text: &str) -> Vec<PiiMatch> {
    let mut out: Vec<PiiMatch> = email_re()
        .find_iter(text)
        .map(|m| PiiMatch { kind: PiiKind::Email, start: m.start(), end: m.end() })
        .collect();
    let emails = ClaimedSpans::new(&out);
    for m in plate_re().find_iter(text) {
        let next = text[m.end()..].chars().next();
        if next.is_some_and(|c| c.is_ascii_alphanumeric()) {
            continue;
        }
        // A plate running into an address (`京A12345a.b@x.cn`) is left to the address: masking
        // needs items that do not overlap.
        if emails.overlaps(m.start(), m.end()) {
            continue;
        }
        out.push(PiiMatch { kind: PiiKind::Plate, start: m.start(), end: m.end() });
    }
    out
}

/// Every PII item in `text`, ordered by position, without overlaps.
pub fn find_pii(text: &str) -> Vec<PiiMatch> {
    let mut out = find_emails_and_plates(text);
    let claimed = ClaimedSpans::new(&out);
    find_numbers(text, &claimed, &mut out);
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
    mask_found(text, &find_pii(text))
}

/// `text` with the items `found` (ordered, not overlapping) masked.
fn mask_found(text: &str, found: &[PiiMatch]) -> String {
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
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

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
    fn plate_running_into_an_email_address_is_masked_once() {
        // The plate and the address overlapped, and masking both panicked on the overlap.
        assert_eq!(kinds("京A12345a.b@x.cn"), vec![PiiKind::Email]);
        assert_eq!(mask("京A12345a.b@x.cn"), "京A***@x.cn");
        assert_eq!(kinds("京A12345 a.b@x.cn"), vec![PiiKind::Plate, PiiKind::Email]);
    }

    #[test]
    fn redacted_display_and_names() {
        assert_eq!(format!("{}", Redacted("打13812345678")), "打138****5678");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(for_prompt("我的邮箱a@b.cn"), "我的邮箱a***@b.cn");
    }

    #[test]
    fn double_spaces_dots_and_parenthesised_area_codes() {
        let id = "11010519491231002X";
        let double_spaced_id = format!("{}  {}  {}", &id[..6], &id[6..14], &id[14..]);
        for (text, kind, masked) in [
            ("138  1234  5678", PiiKind::Mobile, "138****5678"),
            ("138.1234.5678", PiiKind::Mobile, "138****5678"),
            ("138\u{3000}1234\u{3000}\u{3000}5678", PiiKind::Mobile, "138****5678"),
            ("0755.2634.5678", PiiKind::Landline, "0755******78"),
            ("(010)62345678", PiiKind::Landline, "010******78"),
            ("（010）62345678", PiiKind::Landline, "010******78"),
            ("(010) 6234 5678", PiiKind::Landline, "010******78"),
            ("(0755)-2634-5678", PiiKind::Landline, "0755******78"),
            ("（０７５５）２６３４　５６７８", PiiKind::Landline, "0755******78"),
            // The issue's examples: local numbers starting with 1 are masked when the area code
            // is written in parentheses (without them they stay codes, see `phones`).
            ("(010)12345678", PiiKind::Landline, "010******78"),
            ("(010) 1234 5678", PiiKind::Landline, "010******78"),
            (double_spaced_id.as_str(), PiiKind::IdNumber, "1****************X"),
        ] {
            assert_eq!(kinds(text), vec![kind], "{text}");
            assert_eq!(mask(text), masked, "{text}");
        }
    }

    #[test]
    fn parenthesised_landline_leaves_no_orphan_parenthesis() {
        // The match spans the parentheses and the mask drops them, as it drops the hyphen of
        // `010-62345678`.
        assert_eq!(mask("电话(010)62345678，请回电"), "电话010******78，请回电");
        assert_eq!(mask("座机（0755） 2634 5678。"), "座机0755******78。");
        // When only the number after the parentheses is an item, the area code stays whole.
        assert_eq!(mask("(010)13812345678"), "(010)138****5678");
    }

    #[test]
    fn dots_and_parentheses_in_ordinary_text_are_left_alone() {
        for text in [
            "金额1234.56元",
            "价格13.80元，合计12345678.90元",
            "2024.10.01",
            "2024-10-01",
            "日期2024.10.01 10:30",
            "版本1.2.3，内核v10.0.19045.3693",
            "编号0.12.3456.7890",
            "IP 192.168.1.100",
            "京政发(2024)62345678号",
            "共(12)项",
            "(010)",
            "138   1234   5678",
            "138 - 1234 - 5678",
        ] {
            assert_eq!(kinds(text), vec![], "{text}");
            assert_eq!(mask(text), text);
        }
    }

    #[test]
    fn long_adversarial_inputs_mask_in_linear_time() {
        let inputs = [
            "1 ".repeat(10_000),
            "1-".repeat(10_000),
            "1".repeat(20_000),
            "13812345678 ".repeat(20_000 / 12),
            "123.".repeat(5_000),
            "1\u{3000} ".repeat(5_000),
            format!("(010) {}", "1 ".repeat(10_000)),
        ];
        for text in &inputs {
            let started = Instant::now();
            let masked = mask(text);
            let elapsed = started.elapsed();
            // A denial-of-service guard with a wide margin, not a benchmark: these take
            // milliseconds, while the cubic all-spans search took about 20 minutes on 20,000
            // characters of `1 1 1 …`.
            let head: String = text.chars().take(16).collect();
            assert!(elapsed < Duration::from_secs(1), "{head}… took {elapsed:?}");
            assert!(!masked.contains("1381234"), "{head}…");
        }
    }

    /// The straightforward search the window replaces: from each group, every span to the end of
    /// the run, longest first. Cubic in the length of a run.
    fn longest_item_from_reference(run: &DigitRun, a: usize) -> Option<(usize, PiiKind)> {
        (a + 1..=run.groups.len()).rev().find_map(|b| run.classify_span(a, b).map(|kind| (b, kind)))
    }

    /// [`find_pii`] with the all-spans search and a scan of every claimed span per item.
    fn find_pii_reference(text: &str) -> Vec<PiiMatch> {
        let mut out = find_emails_and_plates(text);
        let claimed: Vec<(usize, usize)> = out.iter().map(|m| (m.start, m.end)).collect();
        for run in digit_runs(text) {
            run_items(&run, longest_item_from_reference, |m| {
                if !claimed.iter().any(|&(s, e)| m.start < e && s < m.end) {
                    out.push(m);
                }
            });
        }
        out.sort_by_key(|m| m.start);
        out
    }

    /// Single characters for random text: digits, separators, parentheses, check characters,
    /// letters (which glue runs into codes), CJK, e-mail and plate characters.
    const ALPHABET: &[char] = &[
        '0', '1', '2', '3', '5', '8', '9', '０', '１', '８', ' ', ' ', '\u{3000}', '-', '.', '(', ')', '（', '）',
        'X', 'x', 'Ｘ', 'a', 'Z', '电', '话', '元', '@', '+', '京', 'A',
    ];

    /// Gaps between the digits of a written item: mostly none, else a separator or a near miss.
    const GAPS: &[&str] = &[
        "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", " ", " ", "  ", "   ", "\u{3000}", "-", "-",
        ".", ".", " -",
    ];

    fn digit_string(len: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = String> {
        prop::collection::vec(0..10u32, len)
            .prop_map(|ds| ds.into_iter().filter_map(|d| char::from_digit(d, 10)).collect())
    }

    fn luhn_check_digit(body: &str) -> char {
        let sum: u32 = body
            .chars()
            .rev()
            .filter_map(|c| c.to_digit(10))
            .enumerate()
            .map(|(i, d)| if i % 2 == 0 { (d * 2) % 10 + d * 2 / 10 } else { d })
            .sum();
        char::from_digit((10 - sum % 10) % 10, 10).unwrap_or('0')
    }

    fn mobile() -> impl Strategy<Value = String> {
        (prop::sample::select(&["", "", "86", "+86"][..]), 3..10u32, digit_string(9))
            .prop_map(|(prefix, second, rest)| format!("{prefix}1{second}{rest}"))
    }

    fn resident_id() -> impl Strategy<Value = String> {
        (digit_string(6), 1900..2100u32, 1..13u32, 1..29u32, digit_string(3), any::<bool>()).prop_map(
            |(area, year, month, day, serial, lower_x)| {
                let id = with_check(&format!("{area}{year}{month:02}{day:02}{serial}"));
                if lower_x { id.replace('X', "x") } else { id }
            },
        )
    }

    fn bank_card() -> impl Strategy<Value = String> {
        digit_string(15..19).prop_map(|body| format!("{body}{}", luhn_check_digit(&body)))
    }

    fn landline() -> impl Strategy<Value = String> {
        let area = prop::sample::select(&["010", "021", "020", "0755", "0571"][..]);
        (area, 2..10u32, digit_string(6..8), 0..3u8).prop_map(|(area, first, rest, parens)| match parens {
            0 => format!("{area}{first}{rest}"),
            1 => format!("({area}){first}{rest}"),
            _ => format!("（{area}）{first}{rest}"),
        })
    }

    /// `item` as a person might write it: gaps between some characters, maybe full-width digits.
    fn as_written(item: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        (item, any::<bool>(), prop::collection::vec(prop::sample::select(GAPS), 24), any::<bool>()).prop_map(
            |(item, with_gaps, gaps, full_width)| {
                let mut out = String::new();
                for (k, c) in item.chars().enumerate() {
                    if with_gaps && k > 0 {
                        out.push_str(gaps[k % gaps.len()]);
                    }
                    let wide = c.to_digit(10).and_then(|d| char::from_u32('０' as u32 + d));
                    out.push(if full_width { wide.unwrap_or(c) } else { c });
                }
                out
            },
        )
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => prop::sample::select(ALPHABET).prop_map(String::from),
            2 => digit_string(1..24),
            1 => prop::sample::select(&["1 ", "1-", "12 ", "123.", "a.b@x.cn", "京A12345", "京A1234@b.cn"][..])
                .prop_map(String::from),
            1 => as_written(mobile()),
            1 => as_written(resident_id()),
            1 => as_written(bank_card()),
            1 => as_written(landline()),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(piece(), 0..32).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn window_search_equals_all_spans_reference(text in text()) {
            let expected = find_pii_reference(&text);
            prop_assert_eq!(find_pii(&text), expected.clone(), "{:?}", text);
            prop_assert_eq!(mask(&text), mask_found(&text, &expected), "{:?}", text);
        }
    }
}
