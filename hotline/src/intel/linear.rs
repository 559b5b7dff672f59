//! Linear models over feature vectors: the model and its training settings are
//! `zhengwu-core`'s ([`LinearModel`], [`TrainConfig`]); training goes through a
//! [`LinearTrainer`] the caller hands in (AdamW on candle in `zhengwu-inference`), so this crate
//! never compiles a tensor library. Here: what turns raw outputs into calibrated probabilities.

pub use zhengwu_core::linear::{LinearModel, LinearTrainer, SplitMix, Targets, TrainConfig};

/// Softmax of `logits / temperature`, in place.
pub fn softmax_in_place(logits: &mut [f32], temperature: f32) {
    let t = temperature.max(1e-3);
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0f32;
    for x in logits.iter_mut() {
        *x = ((*x - m) / t).exp();
        s += *x;
    }
    if s > 0.0 {
        logits.iter_mut().for_each(|x| *x /= s);
    }
}

/// Temperature minimising the negative log-likelihood of `labels` under `logits` (rows × k):
/// golden-section search over log T in [0.05, 20].
pub fn fit_temperature(logits: &[f32], k: usize, labels: &[u32]) -> f32 {
    if labels.is_empty() || k == 0 {
        return 1.0;
    }
    let nll = |t: f32| -> f64 {
        let mut total = 0f64;
        let mut row = vec![0f32; k];
        for (i, &l) in labels.iter().enumerate() {
            row.copy_from_slice(&logits[i * k..(i + 1) * k]);
            softmax_in_place(&mut row, t);
            total -= f64::from(row[l as usize].max(1e-12)).ln();
        }
        total
    };
    let (mut a, mut b) = (0.05f32.ln(), 20f32.ln());
    let g = 0.618_034f32;
    for _ in 0..40 {
        let c = b - g * (b - a);
        let d = a + g * (b - a);
        if nll(c.exp()) < nll(d.exp()) {
            b = d;
        } else {
            a = c;
        }
    }
    ((a + b) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_scaling_softens_overconfident_logits() {
        // Logits that say 0.99 for rows that are right only 3 times in 4.
        let logits: Vec<f32> = (0..40).flat_map(|_| [5.0f32, 0.4]).collect();
        let labels: Vec<u32> = (0..40).map(|i| u32::from(i % 4 == 0)).collect();
        let t = fit_temperature(&logits, 2, &labels);
        assert!(t > 1.5, "temperature {t}");
        let mut row = [5.0f32, 0.4];
        softmax_in_place(&mut row, t);
        assert!((row[0] - 0.75).abs() < 0.05, "{row:?}");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
