//! A linear model over feature vectors, trained with candle (AdamW, mini-batches, weight decay):
//! softmax classification (cross-entropy) or multi-output regression (mean squared error).

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::intel::IntelError;

/// Training settings; stored in the artifact for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Weight each class by `(n / (k · n_c))^balance` (0 = plain, 1 = fully balanced).
    pub class_balance: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { epochs: 30, batch_size: 64, learning_rate: 0.02, weight_decay: 1e-4, seed: 7, class_balance: 0.5 }
    }
}

/// `y = x·W + b`.
#[derive(Debug, Clone)]
pub struct LinearModel {
    /// `dim × outputs`
    pub w: Tensor,
    /// `outputs`
    pub b: Tensor,
}

/// Training targets.
pub enum Targets<'a> {
    /// Class index per row.
    Classes { labels: &'a [u32], classes: usize },
    /// `rows × outputs` values, row-major.
    Values { values: &'a [f32], outputs: usize },
}

/// A small deterministic generator for shuffling (splitmix64).
pub struct SplitMix(pub u64);
impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

fn ce(e: candle_core::Error) -> IntelError {
    IntelError::Model(format!("tensor: {e}"))
}

impl LinearModel {
    pub fn outputs(&self) -> usize {
        self.w.dims()[1]
    }
    pub fn dim(&self) -> usize {
        self.w.dims()[0]
    }

    /// Train on `x` (`rows × dim`, row-major). Returns the model and the final epoch's mean loss.
    pub fn train(x: &[f32], dim: usize, targets: Targets<'_>, cfg: &TrainConfig) -> Result<(LinearModel, f32), IntelError> {
        let rows = if dim == 0 { 0 } else { x.len() / dim };
        if rows == 0 || rows * dim != x.len() {
            return Err(IntelError::Data(format!("training needs rows of {dim} features, got {} values", x.len())));
        }
        let dev = Device::Cpu;
        let outputs = match &targets {
            Targets::Classes { labels, classes } => {
                if labels.len() != rows {
                    return Err(IntelError::Data(format!("{} labels for {rows} rows", labels.len())));
                }
                if *classes < 2 {
                    return Err(IntelError::Data("a classifier needs at least 2 classes in its training data".into()));
                }
                *classes
            }
            Targets::Values { values, outputs } => {
                if values.len() != rows * outputs {
                    return Err(IntelError::Data(format!("{} target values for {rows} rows × {outputs}", values.len())));
                }
                *outputs
            }
        };
        // Class weights for imbalanced data.
        let class_w: Vec<f32> = match &targets {
            Targets::Classes { labels, classes } => {
                let mut counts = vec![0usize; *classes];
                for &l in labels.iter() {
                    counts[l as usize] += 1;
                }
                counts
                    .iter()
                    .map(|&c| if c == 0 { 0.0 } else { ((rows as f64 / (*classes as f64 * c as f64)).powf(cfg.class_balance)) as f32 })
                    .collect()
            }
            Targets::Values { .. } => Vec::new(),
        };
        let w = Var::zeros((dim, outputs), DType::F32, &dev).map_err(ce)?;
        let b = Var::zeros(outputs, DType::F32, &dev).map_err(ce)?;
        let mut opt = AdamW::new(
            vec![w.clone(), b.clone()],
            ParamsAdamW { lr: cfg.learning_rate, weight_decay: cfg.weight_decay, ..Default::default() },
        )
        .map_err(ce)?;
        let mut order: Vec<usize> = (0..rows).collect();
        let mut rng = SplitMix(cfg.seed);
        let bs = cfg.batch_size.max(1);
        let mut last = 0f32;
        for _epoch in 0..cfg.epochs.max(1) {
            rng.shuffle(&mut order);
            let mut total = 0f64;
            let mut seen = 0usize;
            for batch in order.chunks(bs) {
                let mut xb = Vec::with_capacity(batch.len() * dim);
                for &r in batch {
                    xb.extend_from_slice(&x[r * dim..(r + 1) * dim]);
                }
                let xt = Tensor::from_vec(xb, (batch.len(), dim), &dev).map_err(ce)?;
                let y = xt.matmul(w.as_tensor()).and_then(|y| y.broadcast_add(b.as_tensor())).map_err(ce)?;
                let loss = match &targets {
                    Targets::Classes { labels, .. } => {
                        let lb: Vec<u32> = batch.iter().map(|&r| labels[r]).collect();
                        let wb: Vec<f32> = lb.iter().map(|&l| class_w[l as usize]).collect();
                        let lt = Tensor::from_vec(lb, batch.len(), &dev).map_err(ce)?;
                        let wt = Tensor::from_vec(wb, batch.len(), &dev).map_err(ce)?;
                        let logp = candle_nn::ops::log_softmax(&y, D::Minus1).map_err(ce)?;
                        let picked = logp.gather(&lt.unsqueeze(1).map_err(ce)?, 1).and_then(|t| t.squeeze(1)).map_err(ce)?;
                        picked.mul(&wt).and_then(|t| t.sum_all()).and_then(|t| t.neg()).and_then(|t| t / batch.len() as f64).map_err(ce)?
                    }
                    Targets::Values { values, outputs } => {
                        let mut vb = Vec::with_capacity(batch.len() * outputs);
                        for &r in batch {
                            vb.extend_from_slice(&values[r * outputs..(r + 1) * outputs]);
                        }
                        let vt = Tensor::from_vec(vb, (batch.len(), *outputs), &dev).map_err(ce)?;
                        candle_nn::loss::mse(&y, &vt).map_err(ce)?
                    }
                };
                opt.backward_step(&loss).map_err(ce)?;
                total += f64::from(loss.to_scalar::<f32>().map_err(ce)?) * batch.len() as f64;
                seen += batch.len();
            }
            last = (total / seen.max(1) as f64) as f32;
        }
        Ok((LinearModel { w: w.as_tensor().detach(), b: b.as_tensor().detach() }, last))
    }

    /// Raw outputs (`rows × outputs`, row-major) for `x` (`rows × dim`).
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>, IntelError> {
        let dim = self.dim();
        let rows = x.len() / dim.max(1);
        if rows * dim != x.len() {
            return Err(IntelError::Data(format!("features of {} values do not split into rows of {dim}", x.len())));
        }
        if rows == 0 {
            return Ok(Vec::new());
        }
        let xt = Tensor::from_slice(x, (rows, dim), &Device::Cpu).map_err(ce)?;
        let y = xt.matmul(&self.w).and_then(|y| y.broadcast_add(&self.b)).map_err(ce)?;
        y.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(ce)
    }
}

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
    fn learns_a_separable_problem_and_calibrates() {
        // Two classes along the first coordinate, noise on the second.
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut rng = SplitMix(1);
        for i in 0..200 {
            let c = (i % 2) as u32;
            let noise = (rng.next_u64() % 1000) as f32 / 1000.0 - 0.5;
            x.extend_from_slice(&[if c == 1 { 1.0 } else { -1.0 }, noise]);
            y.push(c);
        }
        let cfg = TrainConfig { epochs: 20, ..Default::default() };
        let (m, loss) = LinearModel::train(&x, 2, Targets::Classes { labels: &y, classes: 2 }, &cfg).unwrap();
        assert!(loss < 0.2, "loss {loss}");
        let out = m.forward(&[1.0, 0.0, -1.0, 0.0]).unwrap();
        assert!(out[1] > out[0] && out[2] > out[3]);
        let t = fit_temperature(&m.forward(&x).unwrap(), 2, &y);
        assert!(t > 0.0 && t.is_finite());
        // Same seed, same model.
        let (m2, _) = LinearModel::train(&x, 2, Targets::Classes { labels: &y, classes: 2 }, &cfg).unwrap();
        assert_eq!(m.forward(&x).unwrap(), m2.forward(&x).unwrap());
    }

    #[test]
    fn regression_fits_a_line() {
        let x: Vec<f32> = (0..100).flat_map(|i| [i as f32 / 100.0, 1.0]).collect();
        let v: Vec<f32> = (0..100).map(|i| 2.0 * i as f32 / 100.0 - 0.5).collect();
        let cfg = TrainConfig { epochs: 200, learning_rate: 0.05, weight_decay: 0.0, ..Default::default() };
        let (m, loss) = LinearModel::train(&x, 2, Targets::Values { values: &v, outputs: 1 }, &cfg).unwrap();
        assert!(loss < 0.01, "loss {loss}");
        let p = m.forward(&[0.5, 1.0]).unwrap();
        assert!((p[0] - 0.5).abs() < 0.1, "{p:?}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(LinearModel::train(&[1.0, 2.0, 3.0], 2, Targets::Classes { labels: &[0], classes: 2 }, &TrainConfig::default()).is_err());
        assert!(LinearModel::train(&[1.0, 2.0], 2, Targets::Classes { labels: &[0], classes: 1 }, &TrainConfig::default()).is_err());
    }
}
