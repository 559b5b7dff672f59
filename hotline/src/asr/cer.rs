//! Character error rate for Chinese transcripts.

/// Text reduced to what CER compares: simplified characters, full-width letters and digits as
/// ASCII, lower case, without whitespace or punctuation.
pub fn normalize(text: &str) -> Vec<char> {
    fast2s::convert(text)
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Arabic numerals spelled out in Chinese the way they are read: runs of up to four digits
/// without a leading zero as a number (`29` -> `二十九`, `105` -> `一百零五`), other runs digit by
/// digit (`0571` -> `零五七一`). Whisper writes numbers as digits; AISHELL references spell them.
pub fn spell_numbers(text: &str) -> String {
    const D: [char; 10] = ['零', '一', '二', '三', '四', '五', '六', '七', '八', '九'];
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let run: Vec<usize> = chars[start..i]
            .iter()
            .map(|c| *c as usize - '0' as usize)
            .collect();
        if run.len() > 4 || (run.len() > 1 && run[0] == 0) {
            out.extend(run.iter().map(|&d| D[d]));
            continue;
        }
        let units = ['千', '百', '十'];
        let n = run.len();
        let mut pending_zero = false;
        for (k, &d) in run.iter().enumerate() {
            let place = n - 1 - k; // 3 = thousands ... 0 = ones
            if d == 0 {
                pending_zero = !out.is_empty() && k > 0;
                if n == 1 {
                    out.push('零');
                }
                continue;
            }
            if pending_zero {
                out.push('零');
                pending_zero = false;
            }
            // "十五" rather than "一十五" for 10-19
            if !(place == 1 && d == 1 && n == 2) {
                out.push(D[d]);
            }
            if place > 0 {
                out.push(units[3 - place]);
            }
        }
    }
    out
}

/// Levenshtein distance between two character sequences.
pub fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// (edits, reference length) after [`normalize`]; sum both over a corpus for its CER.
pub fn cer_counts(reference: &str, hypothesis: &str) -> (usize, usize) {
    let (r, h) = (normalize(reference), normalize(hypothesis));
    (edit_distance(&r, &h), r.len())
}

/// Character error rate of one hypothesis (edits / reference characters).
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    let (e, n) = cer_counts(reference, hypothesis);
    e as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cer_ignores_punctuation_width_and_script() {
        assert_eq!(cer("设定二十九度", "设定二十九度。"), 0.0);
        assert_eq!(
            cer("星巴克咖啡(虹桥西航二店)", "星巴克咖啡，虹橋西航二店"),
            0.0
        );
        assert_eq!(cer("打开Let", "打开 ｌｅｔ"), 0.0);
        assert!((cer("设定三十度", "设定三十一度") - 0.2).abs() < 1e-9);
        assert_eq!(cer("调高温度", ""), 1.0);
        assert_eq!(edit_distance(&['a', 'b'], &['b', 'a']), 2);
        assert_eq!(spell_numbers("设定29度"), "设定二十九度");
        assert_eq!(
            spell_numbers("10 15 105 2000 30 0 1号门"),
            "十 十五 一百零五 二千 三十 零 一号门"
        );
        assert_eq!(spell_numbers("拨打0571"), "拨打零五七一");
    }
}
