//! Linear models over feature vectors (`y = x·W + b`): the hotline's classifiers and scorers.
//! Using one needs nothing but this file; training one goes through [`LinearTrainer`], whose
//! real implementation (AdamW on candle) lives in `zhengwu-inference`, so the crates that only
//! use models never compile a tensor library.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

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

/// Training targets.
pub enum Targets<'a> {
    /// Class index per row.
    Classes { labels: &'a [u32], classes: usize },
    /// `rows × outputs` values, row-major.
    Values { values: &'a [f32], outputs: usize },
}

impl Targets<'_> {
    /// Check the data against `x` (`rows × dim`): the number of rows and the number of
    /// outputs the model will have.
    pub fn check(&self, x: &[f32], dim: usize) -> Result<(usize, usize)> {
        let rows = if dim == 0 { 0 } else { x.len() / dim };
        if rows == 0 || rows * dim != x.len() {
            return Err(Error::Invalid(format!("training needs rows of {dim} features, got {} values", x.len())));
        }
        let outputs = match self {
            Targets::Classes { labels, classes } => {
                if labels.len() != rows {
                    return Err(Error::Invalid(format!("{} labels for {rows} rows", labels.len())));
                }
                if *classes < 2 {
                    return Err(Error::Invalid("a classifier needs at least 2 classes in its training data".into()));
                }
                if let Some(l) = labels.iter().find(|&&l| l as usize >= *classes) {
                    return Err(Error::Invalid(format!("label {l} is not one of the {classes} classes")));
                }
                *classes
            }
            Targets::Values { values, outputs } => {
                if values.len() != rows * outputs {
                    return Err(Error::Invalid(format!("{} target values for {rows} rows × {outputs}", values.len())));
                }
                *outputs
            }
        };
        Ok((rows, outputs))
    }

    /// Per-class loss weights `(n / (k · n_c))^balance` (empty for value targets).
    pub fn class_weights(&self, balance: f64) -> Vec<f32> {
        match self {
            Targets::Classes { labels, classes } => {
                let mut counts = vec![0usize; *classes];
                for &l in labels.iter() {
                    counts[l as usize] += 1;
                }
                let rows = labels.len() as f64;
                counts
                    .iter()
                    .map(|&c| if c == 0 { 0.0 } else { (rows / (*classes as f64 * c as f64)).powf(balance) as f32 })
                    .collect()
            }
            Targets::Values { .. } => Vec::new(),
        }
    }
}

/// `y = x·W + b`, weights in plain vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    pub dim: usize,
    pub outputs: usize,
    /// `dim × outputs`, row-major.
    pub w: Vec<f32>,
    /// `outputs`
    pub b: Vec<f32>,
}

impl LinearModel {
    pub fn new(dim: usize, outputs: usize, w: Vec<f32>, b: Vec<f32>) -> Result<Self> {
        if w.len() != dim * outputs || b.len() != outputs || dim == 0 || outputs == 0 {
            return Err(Error::Invalid(format!(
                "a linear model of {dim} features × {outputs} outputs needs {} weights and {outputs} biases, got {} and {}",
                dim * outputs,
                w.len(),
                b.len()
            )));
        }
        Ok(Self { dim, outputs, w, b })
    }

    pub fn outputs(&self) -> usize {
        self.outputs
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Raw outputs (`rows × outputs`, row-major) for `x` (`rows × dim`).
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        let (dim, k) = (self.dim, self.outputs);
        let rows = x.len() / dim.max(1);
        if rows * dim != x.len() {
            return Err(Error::Invalid(format!("features of {} values do not split into rows of {dim}", x.len())));
        }
        let mut y = Vec::with_capacity(rows * k);
        for row in x.chunks_exact(dim) {
            let mut out = self.b.clone();
            // Row of x times W, skipping zero features (hashed n-gram features are sparse).
            for (xi, wrow) in row.iter().zip(self.w.chunks_exact(k)) {
                if *xi != 0.0 {
                    out.iter_mut().zip(wrow).for_each(|(o, w)| *o += xi * w);
                }
            }
            y.extend_from_slice(&out);
        }
        Ok(y)
    }
}

/// Trains linear models. Returns the model and the final epoch's mean loss.
pub trait LinearTrainer: Send + Sync {
    fn train(&self, x: &[f32], dim: usize, targets: Targets<'_>, cfg: &TrainConfig) -> Result<(LinearModel, f32)>;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_is_x_times_w_plus_b_and_shapes_are_checked() {
        // 2 features × 3 outputs.
        let m = LinearModel::new(2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![0.5, 0.0, -0.5]).unwrap();
        assert_eq!(m.forward(&[1.0, 1.0, 0.0, 2.0]).unwrap(), vec![5.5, 7.0, 8.5, 8.5, 10.0, 11.5]);
        assert!(m.forward(&[1.0, 2.0, 3.0]).is_err());
        assert!(LinearModel::new(2, 3, vec![0.0; 5], vec![0.0; 3]).is_err());
    }

    #[test]
    fn training_data_is_checked_and_classes_weighted() {
        let t = Targets::Classes { labels: &[0, 0, 0, 1], classes: 2 };
        assert_eq!(t.check(&[0.0; 8], 2).unwrap(), (4, 2));
        assert!(t.check(&[0.0; 7], 2).is_err());
        assert!(Targets::Classes { labels: &[0, 2], classes: 2 }.check(&[0.0; 4], 2).is_err());
        assert!(Targets::Classes { labels: &[0], classes: 1 }.check(&[0.0; 2], 2).is_err());
        let w = t.class_weights(1.0);
        assert!((w[0] * 3.0 - w[1]).abs() < 1e-6, "{w:?}");
        assert_eq!(t.class_weights(0.0), vec![1.0, 1.0]);
    }
}
