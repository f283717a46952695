//! Learning-rate schedules, with a state that is saved in checkpoints.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the learning rate changes between epochs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LrSchedule {
    /// The same rate every epoch.
    Constant,
    /// Divide by `factor` at the end of every epoch from epoch `after` on: epoch `e` (1-based)
    /// trains with `lr / factor^max(0, e - after)`.
    StepDecay {
        /// The divisor (> 1 to decay).
        factor: f64,
        /// The last epoch trained with the initial rate.
        after: usize,
    },
    /// Divide by `factor` whenever an epoch's validation perplexity is not lower than the best
    /// one so far.
    Plateau {
        /// The divisor (> 1 to decay).
        factor: f64,
    },
}

impl LrSchedule {
    /// Checks the divisor.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::StepDecay { factor, .. } | LrSchedule::Plateau { factor } => {
                if factor.is_finite() && factor > 0.0 {
                    Ok(())
                } else {
                    Err(Error::option("lr decay factor", "a positive finite number (for example 4)", factor))
                }
            }
        }
    }
}

/// The schedule and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrScheduler {
    /// The schedule.
    pub schedule: LrSchedule,
    /// The initial rate.
    pub base_lr: f64,
    /// The rate of the next epoch.
    pub lr: f64,
    /// Best validation perplexity seen (plateau schedule).
    pub best: Option<f64>,
}

impl LrScheduler {
    /// A scheduler starting at `base_lr`.
    pub fn new(schedule: LrSchedule, base_lr: f64) -> Result<Self> {
        schedule.validate()?;
        if !(base_lr.is_finite() && base_lr > 0.0) {
            return Err(Error::option("lr", "a positive finite learning rate", base_lr));
        }
        Ok(LrScheduler { schedule, base_lr, lr: base_lr, best: None })
    }

    /// The rate to use now.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Called after epoch `epoch` (1-based) with its validation perplexity; sets the rate of the
    /// next epoch and returns whether it changed.
    pub fn end_epoch(&mut self, epoch: usize, val_ppl: Option<f64>) -> bool {
        let before = self.lr;
        match self.schedule {
            LrSchedule::Constant => {}
            LrSchedule::StepDecay { factor, after } => {
                let next = epoch + 1;
                let k = next.saturating_sub(after) as i32;
                self.lr = self.base_lr / factor.powi(k);
            }
            LrSchedule::Plateau { factor } => {
                if let Some(v) = val_ppl.filter(|v| v.is_finite()) {
                    match self.best {
                        Some(b) if v >= b => self.lr /= factor,
                        _ => self.best = Some(v),
                    }
                }
            }
        }
        self.lr != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_decay_and_plateau() {
        let mut s = LrScheduler::new(LrSchedule::StepDecay { factor: 2.0, after: 2 }, 1.0).unwrap();
        let mut lrs = vec![s.lr()];
        for e in 1..=4 {
            s.end_epoch(e, None);
            lrs.push(s.lr());
        }
        assert_eq!(lrs, vec![1.0, 1.0, 0.5, 0.25, 0.125]);
        let mut p = LrScheduler::new(LrSchedule::Plateau { factor: 4.0 }, 1.0).unwrap();
        p.end_epoch(1, Some(10.0));
        p.end_epoch(2, Some(9.0));
        assert_eq!(p.lr(), 1.0);
        assert!(p.end_epoch(3, Some(9.5)));
        assert_eq!(p.lr(), 0.25);
        assert!(LrScheduler::new(LrSchedule::Constant, -1.0).is_err());
    }
}
