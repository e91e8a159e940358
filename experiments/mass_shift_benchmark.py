r"""Mass-shift benchmark: train and evaluate several variants over several seeds.

  python -m experiments.mass_shift_benchmark --flagfile=experiments/configs/mass_shift_cpu.flags

Every run is `<workdir>/<variant>/seed_<k>` (trained by the same loop as
experiments.mnist_srmnist, resumed if it exists, then evaluated like
experiments.evaluate); the table of mean ± std over seeds per metric is printed and
saved as `<workdir>/results.md` and `<workdir>/results.csv`. Model and data flags are
experiments.mnist_srmnist's (each variant takes the flags of its --model); --variants
and --seeds replace --model, --batch_weight and --seed.
"""

import dataclasses
import json
import os

from absl import app, flags, logging

from experiments import common
from jdbw import inference, methods, storage
from jdbw import train
from jdbw.errors import ConfigError
from jdbw.evaluation import report

@dataclasses.dataclass(frozen=True)
class Variant:
  description: str
  model: str                # --model of experiments.mnist_srmnist
  overrides: dict           # model-config fields fixed by the variant
  steps_factor: int = 1     # x --steps (the paper gives MUNIT 3x the generator steps of JD)
  pairing: str = "none"     # the run's --pairing (paired methods: same_draw)


def munit_rule(what: str, model: str, batch_weight: str | None = None, *,
               pairing: str = "none", **overrides) -> Variant:
  """A variant under MUNIT's budget rule: 1 D step per G step, 3x the generator steps."""
  if batch_weight is not None:
    overrides["batch_weight"] = batch_weight
  return Variant(f"{what}; 1 D step, 3x the steps", model, {**overrides, "d_steps": 1}, 3,
                 pairing)


VARIANTS = {
    "jd_bw": Variant("JD-BW, two-sided batch weight (Algorithm 1)", "jd",
                     {"batch_weight": "two_sided"}),
    "jd": Variant("JD, joint discriminator without batch weight", "jd", {"batch_weight": "none"}),
    "one_sided": Variant("One-sided batch weight (Algorithm 2)", "jd",
                         {"batch_weight": "one_sided"}),
    "munit": munit_rule("MUNIT", "munit", "none"),
    "munit_bw": munit_rule("MUNIT + batch weight (composite W on the fake side of both GAN"
                           " losses)", "munit", "two_sided"),
    # The other marginal-GAN baselines under MUNIT's budget rule.
    "cyclegan": munit_rule("CycleGAN (cycle + identity, 50-image pool)", "cyclegan", "none"),
    "cyclegan_bw": munit_rule("CycleGAN + batch weight (composite W on the fake side of both"
                              " GAN losses)", "cyclegan", "two_sided"),
    "distancegan": munit_rule("DistanceGAN (pairwise distance, no cycle)", "distancegan",
                              "none"),
    "distancegan_bw": munit_rule("DistanceGAN + batch weight (composite W on the fake side)",
                                 "distancegan", "two_sided"),
    # The paired ceiling: trained on (x, sr(x)) pairs drawn with X's class distribution,
    # both directions in one run (--reverse).
    "pix2pix": munit_rule("pix2pix on SR pairs drawn with X's classes (both directions,"
                          " --reverse)", "pix2pix", pairing="same_draw", reverse=True),
    "bicyclegan": munit_rule("BiCycleGAN on SR pairs drawn with X's classes (both directions,"
                             " --reverse; the reference's two-scale D and D2)", "bicyclegan",
                             pairing="same_draw", reverse=True, d_scales=2),
    # The semantic translators. DTN is one-directional (X -> Y): its batch weight is
    # one-sided (Algorithm 2). Its f: --dtn_f (classifier by default).
    "dtn": munit_rule("DTN (f fixed, fitted first: --dtn_f; X -> Y only)", "dtn", "none"),
    "dtn_bw": munit_rule("DTN + one-sided batch weight (W(x) on the G(x) terms of the ternary"
                         " game)", "dtn", "one_sided"),
    "xgan": munit_rule("XGAN (shared embedding, embedding adversary, semantic consistency,"
                       " GAN both ways)", "xgan", "none"),
    "xgan_bw": munit_rule("XGAN + batch weight (composite W on both GAN terms and both sides"
                          " of the embedding adversary)", "xgan", "two_sided"),
    # The closest later method: its own learned per-image weights (not batch weight).
    "irwgan": munit_rule("IrwGAN (CycleGAN with learned per-image weights β on all of an"
                         " image's losses)", "irwgan"),
    "balagan": munit_rule("BalaGAN (X's modalities by a contrastive encoder and spherical"
                          " k-means, one FUNIT-like translator over the k + 1 classes)",
                          "balagan"),
}

common.define_training_flags()
flags.DEFINE_list("variants", list(VARIANTS), f"Variants to run, from {sorted(VARIANTS)}.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; one run per variant and seed.")
FLAGS = flags.FLAGS


def _check_flags():
  for name in ("seed", "batch_weight", "model", "pairing"):
    if FLAGS[name].present:
      raise ConfigError(f"--{name}: the benchmark sets it per run; use --seeds/--variants")
  unknown = [v for v in FLAGS.variants if v not in VARIANTS]
  if unknown or not FLAGS.variants:
    raise ConfigError(f"--variants: unknown {unknown or '(empty)'}; expected names from"
                      f" {sorted(VARIANTS)}")
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError:
    raise ConfigError(f"--seeds: expected integers, got {FLAGS.seeds}") from None
  if not seeds:
    raise ConfigError("--seeds: expected at least one seed")
  return seeds


def _evaluated(workdir, steps, eval_config, config, specs):
  """metrics.json of a finished run if it was made at `steps` with this eval config, this
  model config and these domains (a reused row must be the configuration it claims)."""
  path = os.path.join(workdir, "metrics.json")
  if not storage.isfile(path):
    return None
  with storage.open(path) as f:
    res = json.load(f)
  as_json = train.as_json  # config.json and metrics.json hold lists, not tuples
  # Settings added to EvalConfig since a row was evaluated take their defaults.
  old_eval = {**as_json(dataclasses.asdict(type(eval_config)())), **res.get("eval_config", {})}
  same = (res.get("step") == steps and old_eval == as_json(
      dataclasses.asdict(eval_config)) and res.get("model") == as_json(
      dataclasses.asdict(config)) and res.get("domains") == as_json(
      {k: dataclasses.asdict(s) for k, s in specs.items()}))
  return res if same else None


def variant_config(variant: str):
  """The model config of `variant`: its --model's config from the flags, with the
  variant's overrides.

  The clip schedule (bw_start, bw_full) counts generator steps at some d; the authors'
  constants count critic iterations (docs/paper_map.md). A variant that overrides
  d_steps (the MUNIT rule: 1 D step) keeps the schedule's length in critic iterations:
  bw_start and bw_full are scaled by d_given / d_variant, where d_given is the d the
  schedule was set for (--d_steps when the schedule comes from --bw_start/--bw_full,
  else the model's default). So --d_steps=5 --bw_full=200 (the authors' 1000 critic
  iterations) gives MUNIT + BW bw_full = 1000 at d = 1, the authors' own MUNIT + BW value.
  """
  v = VARIANTS[variant]
  base = common.model_config(v.model, strict=False)
  config = dataclasses.replace(base, **v.overrides)
  from_flags = FLAGS["bw_full"].present or FLAGS["bw_start"].present
  d_given = base.d_steps if from_flags else type(base)().d_steps
  if from_flags and not FLAGS["d_steps"].present and config.batch_weight != "none":
    logging.warning(
        "--bw_start/--bw_full without --d_steps: for %s they count generator steps at"
        " %s's default d = %d (%d critic iterations for bw_full); give --d_steps to"
        " fix their unit for every variant", variant, v.model, d_given,
        base.bw_full * d_given)
  if config.batch_weight != "none" and config.d_steps != d_given:
    scale = d_given / config.d_steps
    config = dataclasses.replace(config, bw_start=round(config.bw_start * scale),
                                 bw_full=round(config.bw_full * scale))
  return config.validate()


@common.exit_on_bad_input
def main(argv):
  seeds = _check_flags()
  base_run = common.run_config().validate()
  specs = common.domain_specs()
  eval_config = common.eval_config().validate()
  common.check_eval_split(specs, eval_config.split)
  common.check_evaluable(specs, eval_config.min_classifier_accuracy, eval_config.inception)
  classifier_config = common.classifier_config()   # checked before anything trains
  root = base_run.workdir
  results = {}
  # Every variant's config is built (and checked) before the first run trains.
  configs = {variant: variant_config(variant) for variant in FLAGS.variants}
  if FLAGS.dry_run:
    for variant in FLAGS.variants:
      v, c = VARIANTS[variant], configs[variant]
      method = methods.from_config(c)
      logging.info("dry run: %s = --model=%s (%s), %d steps, batch %d, d %d, clip schedule"
                   " %s, pairing %s, seeds %s -> %s", variant, methods.name_of(method),
                   v.description, base_run.steps * v.steps_factor, base_run.batch_size,
                   c.d_steps, f"bw_start {c.bw_start} / bw_full {c.bw_full} (generator steps)"
                   if c.batch_weight != "none" else "unused", v.pairing, seeds,
                   os.path.join(root, variant))
    logging.info("dry run: domains %s; evaluation on %r", {
        k: f"{s.source} {s.split} ({s.channels} ch, {s.transform}, classes"
           f" {s.classes or 'natural'})"
        for k, s in specs.items()}, eval_config.split)
    return
  for variant in FLAGS.variants:
    v = VARIANTS[variant]
    config = configs[variant]
    method = methods.from_config(config)
    results[variant] = []
    for seed in seeds:
      workdir = os.path.join(root, variant, f"seed_{seed}")
      run = dataclasses.replace(base_run, workdir=workdir, seed=seed,
                                steps=base_run.steps * v.steps_factor, pairing=v.pairing)
      res = _evaluated(workdir, run.steps, eval_config, config, specs)
      if res is None:
        logging.info("benchmark: %s (%s), seed %d -> %s", variant, v.description, seed, workdir)
        train.train(method, run, specs)
        if max(inference.checkpoint_steps(workdir), default=0) < run.steps:
          # train() returns early after SIGTERM; evaluating that run would mix a
          # partial run into the table.
          logging.warning("benchmark: %s stopped before step %d; rerun to resume", workdir,
                          run.steps)
          return
        res = report.evaluate_workdir(workdir, eval_config, data_dir=run.data_dir,
                                      classifier_config=classifier_config)
      results[variant].append(res["scalars"])
  rows = report.summarise(results)
  md = report.summary_markdown(rows, {v: VARIANTS[v].description for v in results}, seeds)
  storage.makedirs(root)
  with storage.open(os.path.join(root, "results.md"), "w") as f:
    f.write(md)
  report.write_summary_csv(os.path.join(root, "results.csv"), rows)
  print(md)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
