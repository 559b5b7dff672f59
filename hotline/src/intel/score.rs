//! Evaluation measures: accuracy, macro-F1, top-k, Spearman's rank correlation.

/// Fraction of rows whose gold label is the prediction.
pub fn accuracy(gold: &[usize], pred: &[usize]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    gold.iter().zip(pred).filter(|(g, p)| g == p).count() as f64 / gold.len() as f64
}

/// Unweighted mean of per-class F1 over the classes that occur in `gold` (a class never in gold
/// but predicted still costs precision elsewhere).
pub fn macro_f1(gold: &[usize], pred: &[usize], classes: usize) -> f64 {
    let mut tp = vec![0usize; classes];
    let mut fp = vec![0usize; classes];
    let mut fneg = vec![0usize; classes];
    for (&g, &p) in gold.iter().zip(pred) {
        if g == p {
            tp[g] += 1;
        } else {
            if p < classes {
                fp[p] += 1;
            }
            fneg[g] += 1;
        }
    }
    let mut sum = 0.0;
    let mut n = 0usize;
    for c in 0..classes {
        if tp[c] + fneg[c] == 0 {
            continue;
        }
        n += 1;
        let prec = if tp[c] + fp[c] == 0 { 0.0 } else { tp[c] as f64 / (tp[c] + fp[c]) as f64 };
        let rec = tp[c] as f64 / (tp[c] + fneg[c]) as f64;
        if prec + rec > 0.0 {
            sum += 2.0 * prec * rec / (prec + rec);
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// Ranks (1-based) with ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].partial_cmp(&v[b]).unwrap_or(std::cmp::Ordering::Equal));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = mean;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 2 {
        return 0.0;
    }
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Spearman's rho (Pearson correlation of tie-averaged ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Fraction of rows where `pred` and `gold` have the same sign (negative / zero / positive, with
/// `|x| < eps` counting as zero).
pub fn sign_accuracy(gold: &[f64], pred: &[f64], eps: f64) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let sign = |x: f64| if x > eps { 1 } else if x < -eps { -1 } else { 0 };
    gold.iter().zip(pred).filter(|(g, p)| sign(**g) == sign(**p)).count() as f64 / gold.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_match_hand_computed_values() {
        assert_eq!(accuracy(&[0, 1, 1, 2], &[0, 1, 2, 2]), 0.75);
        // class 0: p=1 r=1 f=1; class 1: p=1 r=.5 f=.667; class 2: p=.5 r=1 f=.667
        let f = macro_f1(&[0, 1, 1, 2], &[0, 1, 2, 2], 3);
        assert!((f - (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-9, "{f}");
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // ties: ranks of [1,1,2] are [1.5,1.5,3]
        assert!((spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - 0.866_025_403_784_438_6).abs() < 1e-9);
        assert_eq!(sign_accuracy(&[1.0, -0.5, 0.01], &[0.3, 0.2, 0.0], 0.05), 2.0 / 3.0);
    }
}
