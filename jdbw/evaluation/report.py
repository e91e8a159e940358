"""Evaluate a training workdir: metrics.json, report.md and the evaluation figures."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import platform

import jax
import numpy as np
from absl import logging

from jdbw import data, figures, inference, storage
from jdbw import workdir as workdir_lib
from jdbw.errors import CheckpointError
from jdbw.evaluation import classifier as clf_lib
from jdbw.evaluation import evaluator as ev_lib
from jdbw.evaluation import metrics


def evaluate_workdir(workdir: str, config: ev_lib.EvalConfig = ev_lib.EvalConfig(), *,
                     step: int | None = None, data_dir: str | None = None,
                     classifier_config: clf_lib.ClassifierConfig = clf_lib.ClassifierConfig(),
                     every_checkpoint: bool = True) -> dict:
  """All metrics of `step` (default: latest) plus weight calibration at every checkpoint.

  Writes `metrics.json`, `report.md` and figures under `figures/` into the run's
  evaluation folder: the workdir itself for the latest checkpoint (step None), and
  `<workdir>/evaluations/step_<N>/` for an explicit step, so evaluating an older
  checkpoint never replaces the run's own metrics.json. Returns the metrics, with
  `output_dir` naming that folder.
  """
  out_root = workdir if step is None else os.path.join(workdir, "evaluations", f"step_{step}")
  method, state, record = inference.load_run(workdir, step)
  specs = {k: data.DomainSpec(**v) for k, v in record["domains"].items()}
  evaluator = ev_lib.Evaluator(method, specs, config, data_dir=data_dir,
                               classifier_config=classifier_config)
  result = evaluator(state)
  result["workdir"] = storage.absolute(workdir)
  result["method"], result["model"] = record["method"], record["model"]
  result["domains"] = record["domains"]
  result["eval_config"] = dataclasses.asdict(config)
  result["scalars"] = ev_lib.scalars(result)
  result["scalars"].update(figure3_margins(workdir, result["step"]))
  per_ckpt = {}
  if every_checkpoint and evaluator.labelled:
    for s in inference.checkpoint_steps(workdir):
      if s == result["step"]:
        wc = result["weight_calibration"]
      else:
        try:
          wc = evaluator.calibration_at(inference.load_run(workdir, s)[1])
        except CheckpointError as e:   # a damaged older checkpoint: skipped, one line
          logging.warning("%s; left out of the per-checkpoint calibration", e)
          continue
      per_ckpt[s] = {"tv_weighted": wc["tv_weighted"], "tv_unweighted": wc["tv_unweighted"]}
  result["weight_calibration_per_checkpoint"] = [{"step": k, **v}
                                                 for k, v in sorted(per_ckpt.items())]
  storage.makedirs(out_root)
  result["output_dir"] = storage.absolute(out_root)
  out_dir = os.path.join(out_root, "figures")
  paths = ev_lib.write_figures(result, out_dir) if evaluator.labelled else {}
  if "modalities" in result:   # a grid per found cluster, of the evaluation's X draws
    mod = result["modalities"]
    images = evaluator.sample["x"]["image"]
    paths["modalities"] = figures.modality_rows(
        os.path.join(out_dir, "modalities.png"),
        {f"modality {c}: {mod['sizes'][c]} draws, majority class {mod['majority_class'][c]}":
         images[idx] for c, idx in mod["examples"].items()},
        f"X's modalities found without labels at step {result['step']} (purity"
        f" {mod['purity']:.3f}, NMI {mod['nmi']:.3f} against the classes)")
  if len(per_ckpt) > 1:
    steps = sorted(per_ckpt)
    paths["calibration_curve"] = figures.metric_curves(
        os.path.join(out_dir, "weight_calibration_per_checkpoint.png"), steps,
        {"TV weighted": [per_ckpt[s]["tv_weighted"] for s in steps],
         "TV unweighted": [per_ckpt[s]["tv_unweighted"] for s in steps]},
        "TV between class masses", "Weight calibration per checkpoint")
  result["figures"] = {k: os.path.relpath(v, out_root) for k, v in paths.items()}
  result["evaluated"] = {"date": datetime.date.today().isoformat(),
                         "machine": f"{platform.machine()} {jax.devices()[0].device_kind}",
                         "jax": jax.__version__}
  workdir_lib.write_json_atomic(os.path.join(out_root, "metrics.json"), result, indent=2,
                                sort_keys=True)
  workdir_lib.write_text_atomic(os.path.join(out_root, "report.md"),
                                report_markdown(result, out_root))
  return result


def weights_workdir(workdir: str, config: ev_lib.EvalConfig = ev_lib.EvalConfig(), *,
                    step: int | None = None, data_dir: str | None = None) -> dict:
  """Weight calibration of one checkpoint on `config.split`, without classifiers.

  For looking at the learned weights on any split, a training slice included (where
  the small validation slice of a data set leaves a class with a handful of images).
  Writes `<workdir>/weights/<split>-step<step>.json` (metrics.json is left alone);
  returns the calibration dict with `step`, `split`, `samples` and `path` added.
  """
  method, state, record = inference.load_run(workdir, step)
  specs = {k: data.DomainSpec(**v) for k, v in record["domains"].items()}
  evaluator = ev_lib.Evaluator(method, specs, config, data_dir=data_dir,
                               with_classifiers=False)
  out = evaluator.calibration_at(state)
  out.update(step=int(state.step), split=config.split, samples=config.samples,
             seed=config.seed, mode_class=evaluator.mode,
             training_splits={k: s.split for k, s in specs.items()})
  name = "".join(ch if ch.isalnum() else "_" for ch in config.split).strip("_")
  path = os.path.join(workdir, "weights", f"{name}-step{out['step']}.json")
  storage.makedirs(os.path.dirname(path))
  workdir_lib.write_json_atomic(path, out, indent=2, sort_keys=True)
  out["path"] = path
  return out


def figure3_margins(workdir: str, step: int) -> dict[str, float]:
  """{'figure3_margin_x', 'figure3_margin_y'}: `metrics.mode_weight_margin` of Figure 3's
  moving averages of the training weights (`figures/figure3_weights.json`) at its last
  recorded step, the picture the run drew; {} when that file is missing, records another
  step than `step`, has no per-class references, or a side is not weighted."""
  path = os.path.join(workdir, "figures", "figure3_weights.json")
  if not storage.isfile(path):
    return {}
  with storage.open(path) as f:
    record = json.load(f)
  if not record.get("steps") or record["steps"][-1] != step or record.get("targets") is None:
    return {}
  out = {}
  for side in ("x", "y"):
    series = record.get(f"weights_{side}")
    if series:
      out[f"figure3_margin_{side}"] = metrics.mode_weight_margin(
          series[-1], record["targets"][side], record["highlight"])
  return out


def weights_table(result: dict) -> str:
  """Per-class learned mean weights beside their targets, as aligned text."""
  k = len(result["mean_weight_x"])
  rows = [f"{'class':>6s} {'X weight':>9s} {'X target':>9s} {'Y weight':>9s} {'Y target':>9s}"]
  for c in range(k):
    mark = "  <- over-represented" if c == result["mode_class"] else ""
    rows.append(f"{c:6d} {result['mean_weight_x'][c]:9.2f} {result['target_weight_x'][c]:9.2f}"
                f" {result['mean_weight_y'][c]:9.2f} {result['target_weight_y'][c]:9.2f}{mark}")
  rows.append(f"TV weighted {result['tv_weighted']:.3f} (unweighted"
              f" {result['tv_unweighted']:.3f}); mode margin X {result['mode_margin_x']:+.2f},"
              f" Y {result['mode_margin_y']:+.2f}")
  return "\n".join(rows)


def _fmt(v):
  return "n/a" if v is None or v != v else f"{v:.4f}"


def report_markdown(result: dict, out_root: str) -> str:
  """A short human-readable report of one evaluation, written into `out_root` (links
  relative to it; the training-time figures are linked when it is the workdir)."""
  m = result["model"]
  if result.get("labelled", True) is False:
    return _unlabelled_markdown(result)
  lines = [f"# Evaluation of `{result['workdir']}`", "",
           f"{result['method']} (batch_weight={m.get('batch_weight')}), checkpoint step"
           f" {result['step']}; {result['samples']} draws per domain of the"
           f" `{result['eval_config']['split']}` split (seed {result['eval_config']['seed']});"
           f" over-represented class c = {result['mode_class']}. Evaluated"
           f" {result['evaluated']['date']} on {result['evaluated']['machine']}.", "",
           "| classifier | test accuracy (balanced) | threshold | accuracy on eval sample |",
           "|---|---|---|---|"]
  for side, c in sorted(result["classifier"].items()):
    d = result["domains"][side]
    lines.append(f"| {side.upper()}: {d['source']} ({d['transform']}) | {c['test_accuracy']:.4f}"
                 f" | {c['threshold']} | {c['eval_sample_accuracy']:.4f} |")
  lines += ["", "| metric | value |", "|---|---|"]
  lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(result["scalars"].items())]
  lines += [f"| {k} | not applicable ({v['not_applicable']}) |" for k, v in sorted(result.items())
            if k.startswith("noise_") and isinstance(v, dict) and "not_applicable" in v]
  lines += ["", "Metric definitions: `jdbw/evaluation/metrics.py`. FD-classifier is a"
            " Fréchet distance in the target classifier's penultimate features, not FID.", ""]
  if len(result["weight_calibration_per_checkpoint"]) > 1:
    lines += ["| checkpoint | TV weighted | TV unweighted |", "|---|---|---|"]
    lines += [f"| {v['step']} | {v['tv_weighted']:.4f} | {v['tv_unweighted']:.4f} |"
              for v in result["weight_calibration_per_checkpoint"]]
    lines.append("")
  figs = dict(result["figures"])
  for name in ("figure2_transfer.png", "figure3_weights.png", "figure4_noise.png"):
    if storage.isfile(os.path.join(out_root, "figures", name)):
      figs[name[:-4]] = os.path.join("figures", name)
  lines += [f"![{k}]({v})" for k, v in figs.items()]
  return "\n".join(lines) + "\n"


def _unlabelled_markdown(result: dict) -> str:
  lines = [f"# Evaluation of `{result['workdir']}`", "",
           f"{result['method']}, checkpoint step {result['step']}; {result['samples']} draws"
           f" per domain of the `{result['eval_config']['split']}` split. The domains are"
           " unlabelled, so only FID and KID are reported (features:"
           f" {result['eval_config']['feature_model'] or 'InceptionV3, ImageNet weights'}).",
           f" Evaluated {result['evaluated']['date']} on {result['evaluated']['machine']}.", "",
           "| metric | value |", "|---|---|"]
  lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(result["scalars"].items())]
  return "\n".join(lines) + "\n"


def summarise(results: dict) -> list[dict]:
  """{variant: [scalars of each seed]} -> rows {metric, variant, mean, std, n, values}.

  std is the sample standard deviation (ddof=1; 0 for a single seed). NaN values
  (e.g. a metric a variant cannot have) are left out of mean/std and counted out of n.
  """
  rows = []
  metrics_ = sorted({k for runs in results.values() for r in runs for k in r})
  for metric in metrics_:
    for variant, runs in results.items():
      vals = [r[metric] for r in runs if metric in r]
      finite = np.asarray([v for v in vals if v == v], np.float64)
      if not len(vals):
        continue
      rows.append({"metric": metric, "variant": variant, "values": vals, "n": int(len(finite)),
                   "mean": float(finite.mean()) if len(finite) else float("nan"),
                   "std": float(finite.std(ddof=1)) if len(finite) > 1 else 0.0})
  return rows


def summary_markdown(rows: list[dict], descriptions: dict, seeds) -> str:
  """Metrics as rows, variants as columns, cells 'mean ± std'."""
  variants = list(descriptions)
  cell = {(r["metric"], r["variant"]): r for r in rows}
  out = ["| metric | " + " | ".join(variants) + " |",
         "|---|" + "---|" * len(variants)]
  for metric in sorted({r["metric"] for r in rows}):
    cells = []
    for v in variants:
      r = cell.get((metric, v))
      cells.append("—" if r is None or r["n"] == 0 else f"{r['mean']:.3f} ± {r['std']:.3f}")
    out.append(f"| {metric} | " + " | ".join(cells) + " |")
  out += ["", f"mean ± sample std over seeds {', '.join(map(str, seeds))};"
          " — where a variant has no such metric.", ""]
  out += [f"- `{v}`: {d}" for v, d in descriptions.items()]
  return "\n".join(out) + "\n"


def write_summary_csv(path: str, rows: list[dict]) -> str:
  with storage.open(path, "w") as f:   # csv: newline="" is the local default here
    w = csv.writer(f)
    w.writerow(["metric", "variant", "mean", "std", "n", "values"])
    for r in rows:
      w.writerow([r["metric"], r["variant"], r["mean"], r["std"], r["n"],
                  " ".join(f"{v:.6g}" for v in r["values"])])
  return path
