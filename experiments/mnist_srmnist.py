r"""Trains JD-BW (Algorithm 1) and its ablations on MNIST <-> SR-MNIST.

  python -m experiments.mnist_srmnist --flagfile=experiments/configs/quickstart.flags
  python -m experiments.mnist_srmnist --flagfile=experiments/configs/mnist_srmnist.flags

Rerunning the same command resumes from the latest checkpoint in --workdir.
"""

import dataclasses

import jax
from absl import app, flags, logging

from experiments import common
from jdbw import jd, train
from jdbw.evaluation import evaluator as ev_lib

common.define_domain_flags()
common.define_eval_flags()
# Paper defaults for MNIST <-> SR-MNIST: X = MNIST, Y = SR-MNIST with half zeros.
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard and figures.")
flags.DEFINE_integer("steps", 50000, "Generator steps (iterations of 1 G + d D steps).")
flags.DEFINE_integer("batch_size", 128, "Global batch size (divisible by the device count).")
flags.DEFINE_integer("seed", 0, "Seed of the parameters, the RNG state and the data stream.")
flags.DEFINE_enum("parallel", "shard_map", train.PARALLEL,
                  "Data-parallel wrapper of the same step: jit(shard_map) or pmap.")
flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint period (steps).")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
flags.DEFINE_integer("log_every", 50, "Log/TensorBoard period (steps).")
flags.DEFINE_integer("figure_every", 5000, "Figure period (steps); figures also at the end.")
flags.DEFINE_integer("eval_every", 0,
                     "Evaluate (experiments.evaluate's metrics) every N steps and at the end,"
                     " to TensorBoard under eval/; 0 = off.")
flags.DEFINE_bool("jax_distributed", False,
                  "Call jax.distributed.initialize() (multi-host TPU pod slices).")
_DEFAULT = jd.JDConfig()
flags.DEFINE_enum("batch_weight", _DEFAULT.batch_weight, jd.BATCH_WEIGHTS,
                  "two_sided = JD-BW (Algorithm 1); none = joint discriminator alone;"
                  " one_sided = Algorithm 2 (marginal D, weights on X only).")
flags.DEFINE_enum("weighting", _DEFAULT.weighting, ["composite", "concat", "single"],
                  "Weighting scheme (Appendix B.1).")
flags.DEFINE_enum("weight_norm", _DEFAULT.weight_norm, ["sigmoid", "softmax"],
                  "sigmoid (Algorithm 1) or softmax over the batch with clipping (authors' code).")
flags.DEFINE_enum("weight_phase", _DEFAULT.weight_phase, jd.WEIGHT_PHASES,
                  "Train W in the generator phase (paper) or the critic phase (authors' code).")
flags.DEFINE_enum("gp_type", _DEFAULT.gp_type, ["points", "interpolates", "none"],
                  "Gradient penalty at training points (Roth et al.) or interpolates (Gulrajani et al.).")
flags.DEFINE_float("gp_weight", _DEFAULT.gp_weight, "Gradient penalty weight.")
flags.DEFINE_integer("d_steps", _DEFAULT.d_steps, "Critic steps per generator step.")
flags.DEFINE_integer("noise_dim", _DEFAULT.noise_dim, "Noise size d (8 MNIST-SRMNIST, 16 MNIST-SVHN).")
flags.DEFINE_integer("g_kernel", _DEFAULT.g_kernel, "Generator K (4, or 1 for MNIST-SVHN).")
flags.DEFINE_integer("g_stride", _DEFAULT.g_stride, "Generator s (2, or 1 for MNIST-SVHN).")
flags.DEFINE_integer("g_features", _DEFAULT.g_features, "Generator width (Table 2: 64).")
flags.DEFINE_integer("d_features", _DEFAULT.d_features, "Joint critic base width (Table 1: 32).")
flags.DEFINE_integer("w_features", _DEFAULT.w_features, "Weight-net base width (DCGAN: 64).")
flags.DEFINE_integer("bw_start", _DEFAULT.bw_start, "Step where batch weight starts (uniform before).")
flags.DEFINE_integer("bw_full", _DEFAULT.bw_full, "Clip schedule t(step) reaches 1.25 here.")
flags.DEFINE_float("lr", _DEFAULT.lr, "Adam learning rate (G, D and W).")
flags.DEFINE_float("b1", _DEFAULT.b1, "Adam beta1.")
flags.DEFINE_float("b2", _DEFAULT.b2, "Adam beta2.")
flags.DEFINE_float("weight_decay", _DEFAULT.weight_decay, "Coupled L2 weight decay (code: 1e-4).")
flags.DEFINE_integer("lr_decay_every", _DEFAULT.lr_decay_every,
                     "Halve (x lr_decay_rate) the learning rates every N steps; 0 = constant.")
flags.DEFINE_float("lr_decay_rate", _DEFAULT.lr_decay_rate, "Step decay factor.")
FLAGS = flags.FLAGS


def model_config() -> jd.JDConfig:
  fields = {f.name for f in dataclasses.fields(jd.JDConfig)} - {"channels_x", "channels_y",
                                                                "resolution"}
  return jd.JDConfig(channels_x=FLAGS.channels_x, channels_y=FLAGS.channels_y,
                     resolution=FLAGS.resolution, **{f: FLAGS[f].value for f in fields})


def run_config() -> train.RunConfig:
  return train.RunConfig(
      workdir=FLAGS.workdir, steps=FLAGS.steps, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
      parallel=FLAGS.parallel, checkpoint_every=FLAGS.checkpoint_every,
      keep_checkpoints=FLAGS.keep_checkpoints, log_every=FLAGS.log_every,
      figure_every=FLAGS.figure_every, data_dir=FLAGS.data_dir, eval_every=FLAGS.eval_every)


@common.exit_on_bad_input
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.jax_distributed:
    jax.distributed.initialize()
  run = run_config().validate()
  method = jd.JD(model_config())
  logging.info("devices: %s; processes: %d", jax.devices(), jax.process_count())
  specs = common.domain_specs()
  evaluate = None
  if run.eval_every:  # Built before training: a bad classifier fails at start-up.
    evaluator = common.make_evaluator(method, specs)
    evaluate = lambda state: ev_lib.scalars(evaluator(state))
  train.train(method, run, specs, evaluate=evaluate)
  logging.info("done: %s", run.workdir)


if __name__ == "__main__":
  app.run(main)
