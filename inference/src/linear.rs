//! The trainer of the hotline's linear models ([`zhengwu_core::LinearTrainer`]) on candle:
//! AdamW, shuffled mini-batches, weight decay; softmax cross-entropy with class weights, or mean
//! squared error for value targets. The trained weights leave as plain vectors.

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use zhengwu_core::linear::SplitMix;
use zhengwu_core::{LinearModel, LinearTrainer, Targets, TrainConfig};

/// AdamW on the CPU.
pub struct CandleTrainer;

fn ce(e: candle_core::Error) -> zhengwu_core::Error {
    zhengwu_core::Error::internal(format!("tensor: {e}"))
}

impl LinearTrainer for CandleTrainer {
    fn train(&self, x: &[f32], dim: usize, targets: Targets<'_>, cfg: &TrainConfig) -> zhengwu_core::Result<(LinearModel, f32)> {
        let (rows, outputs) = targets.check(x, dim)?;
        let class_w = targets.class_weights(cfg.class_balance);
        let dev = Device::Cpu;
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
        let w = w.as_tensor().flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(ce)?;
        let b = b.as_tensor().to_vec1::<f32>().map_err(ce)?;
        Ok((LinearModel::new(dim, outputs, w, b)?, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_problem_deterministically() {
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
        let (m, loss) = CandleTrainer.train(&x, 2, Targets::Classes { labels: &y, classes: 2 }, &cfg).unwrap();
        assert!(loss < 0.2, "loss {loss}");
        let out = m.forward(&[1.0, 0.0, -1.0, 0.0]).unwrap();
        assert!(out[1] > out[0] && out[2] > out[3]);
        // Same seed, same model.
        let (m2, _) = CandleTrainer.train(&x, 2, Targets::Classes { labels: &y, classes: 2 }, &cfg).unwrap();
        assert_eq!(m.forward(&x).unwrap(), m2.forward(&x).unwrap());
    }

    #[test]
    fn regression_fits_a_line() {
        let x: Vec<f32> = (0..100).flat_map(|i| [i as f32 / 100.0, 1.0]).collect();
        let v: Vec<f32> = (0..100).map(|i| 2.0 * i as f32 / 100.0 - 0.5).collect();
        let cfg = TrainConfig { epochs: 200, learning_rate: 0.05, weight_decay: 0.0, ..Default::default() };
        let (m, loss) = CandleTrainer.train(&x, 2, Targets::Values { values: &v, outputs: 1 }, &cfg).unwrap();
        assert!(loss < 0.01, "loss {loss}");
        let p = m.forward(&[0.5, 1.0]).unwrap();
        assert!((p[0] - 0.5).abs() < 0.1, "{p:?}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let cfg = TrainConfig::default();
        assert!(CandleTrainer.train(&[1.0, 2.0, 3.0], 2, Targets::Classes { labels: &[0], classes: 2 }, &cfg).is_err());
        assert!(CandleTrainer.train(&[1.0, 2.0], 2, Targets::Classes { labels: &[0], classes: 1 }, &cfg).is_err());
    }
}
