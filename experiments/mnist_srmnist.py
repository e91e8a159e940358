r"""Trains JD-BW (Algorithm 1), its ablations, MUNIT, CycleGAN or DistanceGAN (each + BW)
on MNIST <-> SR-MNIST, or any other pair of domains (the --source_* flags).

  python -m experiments.mnist_srmnist --flagfile=experiments/configs/quickstart.flags
  python -m experiments.mnist_srmnist --flagfile=experiments/configs/mnist_srmnist.flags

Rerunning the same command resumes from the latest checkpoint in --workdir.
"""

import dataclasses

import jax
from absl import app, flags, logging

from experiments import common
from jdbw import methods, train
from jdbw.nets import layers
from jdbw.methods import cyclegan, distancegan, jd, munit
from jdbw.errors import ConfigError
from jdbw.evaluation import evaluator as ev_lib

common.define_domain_flags()
common.define_eval_flags()
# Paper defaults for MNIST <-> SR-MNIST: X = MNIST, Y = SR-MNIST with half zeros.
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard and figures.")
flags.DEFINE_integer("steps", 50000, "Generator steps (iterations of 1 G + d D steps).")
flags.DEFINE_integer("batch_size", None, "Global batch size (divisible by the device count);"
                     " default 128 (distancegan: 16, the authors' MNIST-SVHN batch).")
flags.DEFINE_integer("seed", 0, "Seed of the parameters, the RNG state and the data stream.")
flags.DEFINE_enum("parallel", "shard_map", train.PARALLEL,
                  "Data-parallel wrapper of the same step: jit(shard_map) or pmap.")
flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint period (steps).")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
flags.DEFINE_integer("stream_segment", 1000,
                     "Iterations per data-stream segment: each is seeded from (seed, its first"
                     " step), so a resume replays the stream exactly, skipping at most this"
                     " many iterations' draws. Keep it when resuming.")
flags.DEFINE_integer("log_every", 50, "Log/TensorBoard period (steps).")
flags.DEFINE_integer("figure_every", 5000, "Figure period (steps); figures also at the end.")
flags.DEFINE_integer("eval_every", 0,
                     "Evaluate (experiments.evaluate's metrics) every N steps and at the end,"
                     " to TensorBoard under eval/; 0 = off.")
flags.DEFINE_bool("jax_distributed", False,
                  "Call jax.distributed.initialize() first: one process per host (TPU pod"
                  " slices, Slurm and Open MPI detect the rest; elsewhere give the three"
                  " flags below).")
flags.DEFINE_string("coordinator_address", None,
                    "--jax_distributed: host:port of process 0 (e.g. localhost:12355).")
flags.DEFINE_integer("num_processes", None, "--jax_distributed: number of processes.")
flags.DEFINE_integer("process_id", None, "--jax_distributed: this process's index.")
flags.DEFINE_enum("model", "jd", methods.names(),
                  "; ".join(f"{k} = {e.summary}" for k, e in methods.REGISTRY.items()) + ".")
_DEFAULT, _MUNIT = jd.JDConfig(), munit.MUNITConfig()
_CYCLE, _DIST = cyclegan.CycleGANConfig(), distancegan.DistanceGANConfig()
_PER_MODEL = " (default per --model: jd {jd}, munit {munit})"


def _per_model(field: str) -> str:
  """' (default per --model: jd .., munit .., ...)' of a field several models have."""
  configs = {"jd": _DEFAULT, "munit": _MUNIT, "cyclegan": _CYCLE, "distancegan": _DIST}
  return " (default per --model: " + ", ".join(
      f"{k} {getattr(c, field)}" for k, c in configs.items() if hasattr(c, field)) + ")"


flags.DEFINE_enum("batch_weight", None, sorted(set(jd.BATCH_WEIGHTS) | set(munit.BATCH_WEIGHTS)),
                  "two_sided = JD-BW (Algorithm 1) / MUNIT, CycleGAN, DistanceGAN + BW; none ="
                  " no batch weight; one_sided = Algorithm 2 (jd: marginal D, weights on X"
                  " only; distancegan --one_sided)." + _per_model("batch_weight"))
flags.DEFINE_enum("weighting", _DEFAULT.weighting, ["composite", "concat", "single"],
                  "Weighting scheme (Appendix B.1; jd only, munit uses composite).")
flags.DEFINE_enum("weight_norm", _DEFAULT.weight_norm, ["sigmoid", "softmax"],
                  "sigmoid (Algorithm 1) or softmax over the batch with clipping (authors' code).")
flags.DEFINE_enum("weight_phase", _DEFAULT.weight_phase, jd.WEIGHT_PHASES,
                  "Train W in the generator phase (paper) or the critic phase (authors' code); jd only.")
flags.DEFINE_enum("gp_type", _DEFAULT.gp_type, ["points", "interpolates", "none"],
                  "Gradient penalty at training points (Roth et al.) or interpolates (Gulrajani et al.); jd only.")
flags.DEFINE_float("gp_weight", _DEFAULT.gp_weight, "Gradient penalty weight (jd only).")
flags.DEFINE_integer("d_steps", None, "Critic steps per generator step." + _per_model("d_steps"))
flags.DEFINE_integer("noise_dim", _DEFAULT.noise_dim,
                     "Noise size d (8 MNIST-SRMNIST, 16 MNIST-SVHN); munit: the style dimension.")
flags.DEFINE_integer("g_kernel", _DEFAULT.g_kernel, "Generator K (4, or 1 for MNIST-SVHN); jd only.")
flags.DEFINE_integer("g_stride", _DEFAULT.g_stride, "Generator s (2, or 1 for MNIST-SVHN); jd only.")
flags.DEFINE_integer("g_features", _DEFAULT.g_features, "Generator width (Table 2: 64); jd only.")
flags.DEFINE_integer("d_features", _DEFAULT.d_features, "Joint critic base width (Table 1: 32); jd only.")
flags.DEFINE_integer("w_features", _DEFAULT.w_features, "Weight-net base width (DCGAN: 64).")
flags.DEFINE_integer("bw_start", _DEFAULT.bw_start,
                     "Generator step where batch weight starts (uniform weights before).")
flags.DEFINE_integer("bw_full", None,
                     "Generator step where the clip t = 0.25 + (step - bw_start) / (bw_full -"
                     " bw_start) reaches 1.25 (it keeps growing after). Units: generator steps"
                     " (iterations of 1 G + d D steps); the authors count critic iterations,"
                     " so their bw_full = 1000 at d = 5 is 200 here."
                     + _PER_MODEL.format(jd=_DEFAULT.bw_full, munit=_MUNIT.bw_full))
flags.DEFINE_float("lr", _DEFAULT.lr, "Adam learning rate (G, D and W).")
flags.DEFINE_float("w_lr", _DEFAULT.w_lr,
                   "Weight nets' Adam learning rate; 0 = --lr (the paper's single rate).")
flags.DEFINE_float("b1", _DEFAULT.b1, "Adam beta1.")
flags.DEFINE_float("b2", _DEFAULT.b2, "Adam beta2.")
flags.DEFINE_float("weight_decay", None, "Coupled L2 weight decay (authors' code: 1e-4)."
                   + _PER_MODEL.format(jd=_DEFAULT.weight_decay, munit=_MUNIT.weight_decay))
flags.DEFINE_integer("lr_decay_every", _DEFAULT.lr_decay_every,
                     "Halve (x lr_decay_rate) the learning rates every N steps; 0 = constant.")
flags.DEFINE_float("lr_decay_rate", _DEFAULT.lr_decay_rate, "Step decay factor.")
flags.DEFINE_enum("conv_impl", _DEFAULT.conv_impl, list(layers.CONV_IMPLS),
                  "Convolution kernels: XLA's convolution or im2col + matmul (same function and"
                  " parameters); auto = im2col on CPU, where it is faster, XLA elsewhere.")
flags.DEFINE_enum("compute_dtype", _DEFAULT.compute_dtype, list(layers.COMPUTE_DTYPES),
                  "Network compute dtype; parameters, optimiser state and losses stay float32.")
flags.DEFINE_enum("networks", _DEFAULT.networks, list(jd.NETWORKS),
                  "conv = the paper's image networks; mlp = vector networks (residual MLP"
                  " generators, MLP critic and weight nets; widths --g/d/w_features) for"
                  " point domains (--source_{x,y}=mixture2d...); jd only.")
flags.DEFINE_integer("mlp_layers", _DEFAULT.mlp_layers,
                     "Hidden layers of each MLP (--networks=mlp); jd only.")
flags.DEFINE_bool("oracle_generators", False,
                  "2-D mixture only: fix G_xy to the true map between the two mixture2d"
                  " domains and G_yx to its inverse; only D and W train (the unit test of"
                  " the D-W game).")
# MUNIT's own settings (authors' SR-MNIST config).
flags.DEFINE_integer("gen_dim", _MUNIT.gen_dim, "MUNIT generator width; munit only.")
flags.DEFINE_integer("mlp_dim", _MUNIT.mlp_dim, "MUNIT AdaIN-MLP width; munit only.")
flags.DEFINE_integer("n_downsample", _MUNIT.n_downsample, "MUNIT content down-samplings; munit only.")
flags.DEFINE_integer("n_res", _MUNIT.n_res, "MUNIT residual blocks; munit only.")
flags.DEFINE_integer("style_downsample", _MUNIT.style_downsample,
                     "MUNIT style-encoder down-samplings; munit only.")
flags.DEFINE_integer("dis_dim", _MUNIT.dis_dim, "MUNIT discriminator width; munit only.")
flags.DEFINE_integer("dis_scales", _MUNIT.dis_scales, "MUNIT discriminator scales; munit only.")
flags.DEFINE_float("gan_w", _MUNIT.gan_w, "MUNIT adversarial weight; munit only.")
flags.DEFINE_float("recon_x_w", _MUNIT.recon_x_w, "MUNIT image reconstruction weight; munit only.")
flags.DEFINE_float("recon_s_w", _MUNIT.recon_s_w, "MUNIT style reconstruction weight; munit only.")
flags.DEFINE_float("recon_c_w", _MUNIT.recon_c_w, "MUNIT content reconstruction weight; munit only.")
flags.DEFINE_float("recon_x_cyc_w", _MUNIT.recon_x_cyc_w, "MUNIT explicit cycle weight; munit only.")
# CycleGAN and DistanceGAN (jdbw/methods/cyclegan.py, distancegan.py).
flags.DEFINE_integer("ngf", _CYCLE.ngf, "CycleGAN ResNet generator width (reference: 64); cyclegan only.")
flags.DEFINE_integer("n_blocks", _CYCLE.n_blocks, "CycleGAN residual blocks (reference: 9 at 256, 6 at 128); cyclegan only.")
flags.DEFINE_integer("ndf", _CYCLE.ndf, "CycleGAN PatchGAN width (reference: 64); cyclegan only.")
flags.DEFINE_integer("dis_layers", None, "Discriminator down-sampling layers (cyclegan's PatchGAN:"
                     " reference 3; munit's)." + _per_model("dis_layers"))
flags.DEFINE_float("cycle_weight", None, "Cycle-consistency weight λ (cyclegan: L1 each way;"
                   " distancegan: the authors' squared error)." + _per_model("cycle_weight"))
flags.DEFINE_float("identity_weight", None, "Identity loss weight, times λ (0 = off)."
                   + _per_model("identity_weight"))
flags.DEFINE_integer("pool_size", None, "Discriminator history pool (0 = off)." + _per_model("pool_size"))
flags.DEFINE_float("d_loss_scale", None, "Factor of each discriminator's loss." + _per_model("d_loss_scale"))
flags.DEFINE_bool("bw_reconstruction", False, "Batch weight also on the cycle (and distance)"
                  " terms; cyclegan, distancegan.")
flags.DEFINE_integer("lr_hold_steps", 0, "CycleGAN's schedule: steps at --lr before the linear"
                     " decay; cyclegan, distancegan.")
flags.DEFINE_integer("lr_linear_decay", 0, "Steps of linear decay to 0 after --lr_hold_steps"
                     " (0 = constant); cyclegan, distancegan.")
flags.DEFINE_integer("g_dim", _DIST.g_dim, "DistanceGAN generator width (authors: 64); distancegan only.")
flags.DEFINE_integer("d_dim", _DIST.d_dim, "DistanceGAN discriminator width (authors: 64); distancegan only.")
flags.DEFINE_enum("distance", _DIST.distance, list(distancegan.DISTANCES),
                  "DistanceGAN: pairwise (Distance), self (Self-distance) or both; distancegan only.")
flags.DEFINE_float("distance_weight_x", _DIST.distance_weight_x, "Distance weight x -> y (λ_A); distancegan only.")
flags.DEFINE_float("distance_weight_y", _DIST.distance_weight_y, "Distance weight y -> x (λ_B); distancegan only.")
flags.DEFINE_bool("normalize_distances", _DIST.normalize_distances,
                  "Normalise distances by μ, σ estimated before training; distancegan only.")
flags.DEFINE_integer("distance_batches", _DIST.distance_batches,
                     "Batches per domain for the distance statistics; distancegan only.")
flags.DEFINE_bool("one_sided", _DIST.one_sided, "DistanceGAN one-sided: G_xy and D_y alone;"
                  " distancegan only.")
FLAGS = flags.FLAGS


# Model fields that are not flags of their own: set from the domain flags, or (oracle_map)
# computed from them by --oracle_generators.
_DERIVED = {"channels_x", "channels_y", "resolution", "point_dim", "oracle_map"}
_MODEL_FLAGS = sorted(({f.name for e in methods.REGISTRY.values() for f in dataclasses.fields(e.config)})
                      - _DERIVED)


def model_config(model: str | None = None, strict: bool = True):
  """The --model's config from the flags; a flag left unset takes that model's default.

  `strict`: a model flag given on the command line / flagfile that the model does not
  use is an error (no silently dead flags).
  """
  model = model or FLAGS.model
  cls = methods.get(model).config
  fields = {f.name for f in dataclasses.fields(cls)}
  given = {f for f in _MODEL_FLAGS if FLAGS[f].present or (
      FLAGS[f].value is not None and FLAGS[f].value != FLAGS[f].default)}
  if strict:
    unused = sorted(given - fields)
    if unused:
      raise ConfigError(f"--{unused[0]}: not a setting of --model={model} (unused: "
                        f"{', '.join('--' + u for u in unused)})")
  values = {f: FLAGS[f].value for f in given & fields}
  if FLAGS.oracle_generators:
    if model != "jd":
      raise ConfigError(f"--oracle_generators: not a setting of --model={model}")
    from jdbw.data import mixture
    for side in ("x", "y"):
      if not mixture.is_mixture(FLAGS[f"source_{side}"].value):
        raise ConfigError(f"--oracle_generators: needs two {mixture.NAME} domains; got"
                          f" --source_{side}={FLAGS[f'source_{side}'].value}")
    m, c = mixture.true_map(FLAGS.source_x, FLAGS.source_y)
    values["oracle_map"] = (tuple(m.reshape(-1)), tuple(c))
  return cls(channels_x=FLAGS.channels_x, channels_y=FLAGS.channels_y,
             resolution=FLAGS.resolution, **values)


DEFAULT_BATCH = {"distancegan": 16}


def run_config() -> train.RunConfig:
  return train.RunConfig(
      workdir=FLAGS.workdir, steps=FLAGS.steps, seed=FLAGS.seed,
      batch_size=FLAGS.batch_size or DEFAULT_BATCH.get(FLAGS.model, 128),
      parallel=FLAGS.parallel, checkpoint_every=FLAGS.checkpoint_every,
      keep_checkpoints=FLAGS.keep_checkpoints, log_every=FLAGS.log_every,
      figure_every=FLAGS.figure_every, data_dir=FLAGS.data_dir, eval_every=FLAGS.eval_every,
      stream_segment=FLAGS.stream_segment)


@common.exit_on_bad_input
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.jax_distributed:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id)
  elif any(FLAGS[f].present for f in ("coordinator_address", "num_processes", "process_id")):
    raise ConfigError("--coordinator_address/--num_processes/--process_id: need"
                      " --jax_distributed")
  run = run_config().validate()
  method = methods.from_config(model_config())
  logging.info("devices: %s; processes: %d", jax.devices(), jax.process_count())
  specs = common.domain_specs()
  evaluate = None
  if run.eval_every:  # Built before training: a bad classifier fails at start-up.
    common.check_eval_split(specs, FLAGS.eval_split)
    evaluator = common.make_evaluator(method, specs)
    evaluate = lambda state: ev_lib.scalars(evaluator(state))
  train.train(method, run, specs, evaluate=evaluate)
  logging.info("done: %s", run.workdir)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
