//! One `seqlm train` run as named steps: built fresh or from a checkpoint, trained epoch by
//! epoch (metrics, checkpoints, samples, plots), then reported.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use candle_core::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{default_out, prepare_data, DataSpec, OutputArgs, TokenizerChoice, TrainArgs};
use crate::checkpoint::{self, CheckpointConfig};
use crate::error::Error;
use crate::generate::{generate, SamplingOptions};
use crate::metrics::{self, EpochMetrics};
use crate::model::LanguageModel;
use crate::run_dir::RunDir;
use crate::tokenizer::TextTokenizer;
use crate::trainer::{evaluate, read_training_files, EpochEnd, StepReport, TrainConfig, Trainer};

/// A run being trained: the trainer and everything written beside it.
pub(super) struct TrainRun {
    trainer: Trainer,
    tokenizer: TextTokenizer,
    checkpoint_config: CheckpointConfig,
    data: DataSpec,
    test: Option<Vec<u32>>,
    dir: RunDir,
    /// The metrics of every epoch done, oldest first.
    history: Vec<EpochMetrics>,
    /// The epoch and directory of the newest complete checkpoint of this run, if any.
    last_checkpoint: Option<(usize, PathBuf)>,
}

/// How [`TrainRun::train`] ended.
pub(super) enum Ended {
    /// Every epoch is done.
    Finished,
    /// Ctrl-C: the trainer stopped between two steps.
    Interrupted,
}

impl TrainRun {
    /// A fresh run: data prepared, model initialised, run directory claimed.
    pub(super) fn fresh(args: &TrainArgs, device: &Device) -> anyhow::Result<Self> {
        let data = args.data.spec()?;
        let tokenizer_spec = args.data.tokenizer()?;
        let train_config = args.train_config(&data)?;
        let prepared = prepare_data(&data, TokenizerChoice::Fit(&tokenizer_spec))?;
        let model_config = args.model_config(prepared.tokenizer.vocab_size())?;
        check_fills_a_minibatch(&train_config, prepared.train.len())?;
        let trainer = Trainer::new(model_config.clone(), train_config, prepared.train, prepared.valid, device)?;
        let path = args.output.out.clone().unwrap_or_else(|| default_out(&data.corpus, &model_config));
        let dir = RunDir::claim(path, args.output.overwrite)?;
        println!(
            "corpus {} ({} tokens, vocabulary {}): training on {} tokens, validating on {}",
            data.corpus,
            prepared.corpus_tokens,
            prepared.tokenizer.vocab_size(),
            trainer.fingerprint().train_tokens,
            match trainer.fingerprint().valid_tokens {
                0 => "nothing".to_string(),
                n => format!("{n} tokens"),
            }
        );
        Ok(TrainRun {
            trainer,
            tokenizer: prepared.tokenizer,
            checkpoint_config: CheckpointConfig::new(model_config, tokenizer_spec),
            data,
            test: prepared.test,
            dir,
            history: Vec::new(),
            last_checkpoint: None,
        })
    }

    /// The run whose checkpoint (or run directory) is `from`, exactly where it stopped.
    pub(super) fn resume(args: &TrainArgs, from: &Path, device: &Device) -> anyhow::Result<Self> {
        let fixed = args.given_fixed_options();
        if !fixed.is_empty() {
            return Err(Error::option(
                "options with --resume",
                "only --epochs, --lr, --device, --impl, --out and the output options (the checkpoint fixes the \
                 model, data and training options)",
                fixed.join(", "),
            )
            .into());
        }
        let loaded =
            checkpoint::load(from, device).with_context(|| format!("loading checkpoint {}", from.display()))?;
        let saved =
            read_training_files(&loaded.dir).with_context(|| format!("resuming from {}", loaded.dir.display()))?;
        let data: DataSpec = serde_json::from_value(saved.state.extra.clone()).map_err(|e| Error::Checkpoint {
            path: loaded.dir.join("trainer.json"),
            problem: format!("the `extra` data options are unreadable: {e}"),
        })?;
        let prepared = prepare_data(&data, TokenizerChoice::Use(&loaded.tokenizer))?;
        let (train, valid) = (prepared.train, prepared.valid);
        let mut trainer =
            Trainer::resume(loaded.model, loaded.varmap, saved.state, saved.optimizer, saved.carry, train, valid)
                .with_context(|| format!("resuming from {}", loaded.dir.display()))?;
        if args.given.contains("epochs") {
            trainer.set_epochs(args.session.epochs)?;
        }
        if args.given.contains("lr") {
            trainer.set_lr(args.session.lr)?;
        }
        let source = run_dir_of(&loaded.dir);
        let done = trainer.progress().epoch;
        let target = args.output.out.clone().unwrap_or_else(|| source.clone());
        let continued = RunDir::continue_run(&source, target, args.output.overwrite, done)?;
        for note in &continued.notes {
            eprintln!("note: {note}");
        }
        let p = trainer.progress();
        println!(
            "resuming {} at epoch {} (batch {}, step {}) of {}",
            loaded.dir.display(),
            done + 1,
            p.batch,
            p.step,
            trainer.config().epochs
        );
        Ok(TrainRun {
            trainer,
            tokenizer: prepared.tokenizer,
            checkpoint_config: loaded.config,
            data,
            test: prepared.test,
            dir: continued.dir,
            history: continued.history,
            last_checkpoint: Some((done, loaded.dir)),
        })
    }

    /// Chooses the code of the recurrent layers.
    pub(super) fn set_implementation(&mut self, implementation: seqmodels::Implementation) {
        self.trainer.set_implementation(implementation);
    }

    /// Whether every epoch is done already.
    pub(super) fn finished(&self) -> bool {
        self.trainer.finished()
    }

    /// Prints the model and recipe, and a note on a costly choice.
    pub(super) fn print_summary(&self) {
        let (mc, tc) = (self.trainer.model().config(), self.trainer.config());
        if mc.embed.is_none() && mc.vocab_size > 2000 {
            println!(
                "note: one-hot input over {} tokens is slow and large; --embed E (for example 200) is the usual choice",
                mc.vocab_size
            );
        }
        println!(
            "model {} x{} H={} input {} ({} parameters); {} lr {} clip {} batch {} steps {} {} sampling; run directory {}",
            mc.rnn.kind.layer_name(),
            mc.rnn.num_layers,
            mc.rnn.hidden_size,
            mc.embed.map_or("one-hot".to_string(), |e| format!("embedding {e}")),
            mc.num_parameters(),
            tc.optimizer.kind.as_str(),
            fmt_num(self.trainer.lr()),
            fmt_num(tc.clip),
            tc.batch_size,
            tc.num_steps,
            tc.sampling,
            self.dir.path().display()
        );
    }

    /// Prints that there is nothing to train.
    pub(super) fn print_already_done(&self) {
        println!(
            "the run already has {} of {} epochs; give a larger --epochs to train more",
            self.trainer.progress().epoch,
            self.trainer.config().epochs
        );
    }

    /// Trains the remaining epochs; stops early on Ctrl-C (`stop`) or on a loss that diverged.
    pub(super) fn train(&mut self, out: &OutputArgs, stop: &AtomicBool) -> anyhow::Result<Ended> {
        let epochs = self.trainer.config().epochs;
        let bar = progress_bar(out.no_progress, epochs);
        while !self.trainer.finished() {
            let mut on_step = |r: &StepReport| show_step(&bar, r, epochs);
            match self.trainer.run_epoch(stop, &mut on_step) {
                Ok(EpochEnd::Finished(m)) => self.end_epoch(out, m, &bar)?,
                Ok(EpochEnd::Interrupted) => {
                    bar.finish_and_clear();
                    return Ok(Ended::Interrupted);
                }
                Err(e @ Error::NonFinite { .. }) => {
                    bar.finish_and_clear();
                    return Err(self.diverged(e));
                }
                Err(e) => return Err(e.into()),
            }
        }
        bar.finish_and_clear();
        Ok(Ended::Finished)
    }

    /// Records a finished epoch: sample, metrics line, checkpoint, printed line, plot.
    fn end_epoch(&mut self, out: &OutputArgs, mut m: EpochMetrics, bar: &ProgressBar) -> anyhow::Result<()> {
        let (e, epochs) = (m.epoch, self.trainer.config().epochs);
        let last = e == epochs;
        if out.sample_every > 0 && (e % out.sample_every == 0 || last) {
            m.sample = Some(continuation(self.trainer.model(), &self.tokenizer, &out.prefix, out.sample_len));
        }
        self.dir.append(&m)?;
        self.history.push(m.clone());
        if e % out.checkpoint_every == 0 || last {
            self.save_checkpoint().with_context(|| format!("writing the checkpoint of epoch {e}"))?;
        }
        if e == 1 || last || (out.log_every > 0 && e % out.log_every == 0) || m.sample.is_some() {
            bar.suspend(|| {
                println!("{}", epoch_line(&m, epochs));
                if let Some(s) = &m.sample {
                    println!("  sample: {s}");
                }
            });
        }
        if out.sample_every > 0 && e % out.sample_every == 0 {
            self.plot()?;
        }
        Ok(())
    }

    /// Writes a checkpoint of where training stands.
    fn save_checkpoint(&mut self) -> anyhow::Result<PathBuf> {
        let files = self.trainer.training_files(serde_json::to_value(&self.data)?)?;
        let dir =
            checkpoint::save(self.dir.path(), &self.checkpoint_config, self.trainer.model(), &self.tokenizer, &files)?;
        self.last_checkpoint = Some((self.trainer.progress().epoch, dir.clone()));
        Ok(dir)
    }

    /// Draws the perplexity plot of the epochs done.
    fn plot(&self) -> anyhow::Result<()> {
        let corpus = Path::new(&self.data.corpus).file_stem().map(|s| s.to_string_lossy().into_owned());
        let mc = self.trainer.model().config();
        let title = format!("{} {} on {}", mc.rnn.kind.layer_name(), mc.rnn.hidden_size, corpus.unwrap_or_default());
        Ok(metrics::plot_perplexity(&self.dir.plot_path(), &title, &self.history)?)
    }

    /// The error of a run that diverged: the step, the likely cause, and the checkpoint kept.
    fn diverged(&self, e: Error) -> anyhow::Error {
        if !self.history.is_empty() {
            let _ = self.plot();
        }
        let kept = match &self.last_checkpoint {
            Some((epoch, dir)) => format!("the last good checkpoint (epoch {epoch}) is in {}", dir.display()),
            None => "no checkpoint was written yet".to_string(),
        };
        let cause = if self.trainer.config().clip == 0.0 {
            "the learning rate is likely too high for unclipped gradients: try a smaller --lr, or --clip 1"
        } else {
            "the learning rate is likely too high: try a smaller --lr or a smaller --clip"
        };
        let next = match &self.last_checkpoint {
            Some(_) => format!(" (continue with --resume {} --lr ...)", self.dir.path().display()),
            None => " (start again with --overwrite)".to_string(),
        };
        anyhow::anyhow!("{e}. {kept}; {cause}{next}")
    }

    /// Checkpoints the interrupted run (Ctrl-C) and says how to continue it.
    pub(super) fn checkpoint_interrupted(&mut self) -> anyhow::Result<()> {
        let dir = self.save_checkpoint().context("writing the checkpoint after Ctrl-C")?;
        if !self.history.is_empty() {
            self.plot()?;
        }
        let p = self.trainer.progress();
        println!(
            "interrupted: checkpoint written to {} (epoch {}, batch {}, step {}); continue with: seqlm train --resume {}",
            dir.display(),
            p.epoch + 1,
            p.batch,
            p.step,
            self.dir.path().display()
        );
        Ok(())
    }

    /// The end of a run: plot, times, final and test perplexity, a continuation.
    pub(super) fn report(&self, out: &OutputArgs, started: Instant) -> anyhow::Result<()> {
        self.plot()?;
        let Some(last) = self.history.last() else {
            return Ok(());
        };
        let total_s: f64 = self.history.iter().map(|m| m.seconds).sum();
        let total_tokens: usize = self.history.iter().map(|m| m.tokens).sum();
        println!(
            "trained {} epochs: {} of training steps, {} tok/s ({} wall time since this command started)",
            last.epoch,
            fmt_duration(total_s),
            fmt_rate(total_tokens as f64 / total_s.max(1e-9)),
            fmt_duration(started.elapsed().as_secs_f64())
        );
        match last.val_ppl {
            Some(v) => println!("final perplexity: train {:.3}, validation {:.3}", last.train_ppl, v),
            None => println!("final perplexity: train {:.3}", last.train_ppl),
        }
        if let Some(test) = &self.test {
            let tc = self.trainer.config();
            let t = evaluate(self.trainer.model(), test, tc.batch_size, tc.num_steps)
                .context("evaluating the test file")?;
            println!("test perplexity: {:.3} ({} tokens)", t.perplexity, t.tokens);
        }
        println!("{}", continuation(self.trainer.model(), &self.tokenizer, &out.prefix, out.sample_len));
        println!(
            "wrote {}, {} and {}",
            self.dir.checkpoint_path().display(),
            self.dir.metrics_path().display(),
            self.dir.plot_path().display()
        );
        Ok(())
    }
}

/// The run directory of a checkpoint directory: its parent for `RUN/checkpoint` (or
/// `checkpoint.prev`), else the directory itself.
fn run_dir_of(checkpoint_dir: &Path) -> PathBuf {
    match checkpoint_dir.file_name().and_then(|n| n.to_str()) {
        Some(n) if n.starts_with(checkpoint::CHECKPOINT_DIR) => checkpoint_dir.parent().map(Path::to_path_buf),
        _ => None,
    }
    .unwrap_or_else(|| checkpoint_dir.to_path_buf())
}

/// Refuses a batch and step count that no minibatch of the training data can fill.
fn check_fills_a_minibatch(cfg: &TrainConfig, train_tokens: usize) -> anyhow::Result<()> {
    let min = seqmodels_data::Sampling::min_tokens(cfg.sampling, cfg.batch_size, cfg.num_steps);
    if train_tokens < min {
        return Err(Error::option(
            "batch/steps",
            format!(
                "a minibatch that fits the {train_tokens} training tokens ({} sampling with --batch {} --steps {} needs at least {min})",
                cfg.sampling.as_str(),
                cfg.batch_size,
                cfg.num_steps
            ),
            format!("--batch {} --steps {}", cfg.batch_size, cfg.num_steps),
        )
        .into());
    }
    Ok(())
}

fn progress_bar(hidden: bool, epochs: usize) -> ProgressBar {
    let bar = if hidden {
        ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::hidden())
    } else {
        ProgressBar::with_draw_target(Some(epochs.saturating_mul(1000) as u64), ProgressDrawTarget::stderr())
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {msg} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn show_step(bar: &ProgressBar, r: &StepReport, epochs: usize) {
    bar.set_prefix(format!("epoch {}/{}", r.epoch, epochs));
    bar.set_position(((r.epoch - 1) * 1000 + r.batch * 1000 / r.num_batches.max(1)) as u64);
    bar.set_message(format!(
        "loss {:.3} ppl {:.2} {} tok/s",
        r.epoch_loss,
        r.epoch_loss.exp(),
        fmt_rate(r.tokens_per_s)
    ));
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

/// A learning rate or other number, short: `1`, `0.25`, `1e-5`, `1e35`.
fn fmt_num(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e5).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn fmt_duration(s: f64) -> String {
    if s >= 3600.0 {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    } else if s >= 60.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{s:.1}s")
    }
}

fn epoch_line(m: &EpochMetrics, epochs: usize) -> String {
    let width = epochs.to_string().len();
    let val = m.val_ppl.map_or(String::new(), |v| format!("  val ppl {v:8.3}"));
    format!(
        "epoch {:>width$}/{epochs}  train ppl {:8.3}{val}  lr {}  {} tok/s  {:.1}s",
        m.epoch,
        m.train_ppl,
        fmt_num(m.lr),
        fmt_rate(m.tokens_per_s),
        m.seconds
    )
}

/// A continuation of `prefix` (greedy), or a note why there is none.
fn continuation(model: &LanguageModel, tok: &TextTokenizer, prefix: &str, len: usize) -> String {
    let ids = match tok.encode_prefix(prefix) {
        Ok(ids) if !ids.is_empty() => ids,
        _ => return format!("(the prefix {prefix:?} has no tokens in this vocabulary)"),
    };
    match generate(model, &ids, len, &SamplingOptions::greedy()) {
        Ok(new) => {
            let mut all = ids.clone();
            all.extend(new);
            tok.decode(&all)
        }
        Err(e) => format!("(generation failed: {e})"),
    }
}
