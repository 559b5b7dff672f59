//! AdamW whose state can be saved and restored, so a resumed run continues exactly where an
//! interrupted one stopped (candle's own optimizer keeps its moments private).

use candle_core::{Tensor, Var};

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates applied so far.
    pub t: usize,
    /// First and second moments, one pair per parameter, in the parameters' order.
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl AdamW {
    pub fn new(params: &[Var], config: AdamWConfig) -> Result<Self> {
        let m = params.iter().map(|p| p.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v = params.iter().map(|p| p.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { config, t: 0, m, v })
    }

    /// One update with learning rate `lr` from the gradients (same order as the parameters).
    pub fn step(&mut self, params: &[Var], grads: &[Tensor], lr: f64) -> Result<()> {
        if params.len() != grads.len() || params.len() != self.m.len() {
            return Err(Error::Invalid("AdamW: parameter, gradient and state counts differ".into()));
        }
        self.t += 1;
        let c = &self.config;
        let bc1 = 1.0 - c.beta1.powi(self.t as i32);
        let bc2 = 1.0 - c.beta2.powi(self.t as i32);
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&m / bc1)?;
            let v_hat = (&v / bc2)?;
            let update = m_hat.div(&(v_hat.sqrt()? + c.eps)?)?;
            let decayed = (p.as_tensor() * (1.0 - lr * c.weight_decay))?;
            p.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}
