"""What a run watches besides its losses: hooks a method provides to the training loop.

The loop (`jdbw.train`) knows nothing of weights, critics or figures: it asks the method
for `hooks(domains, ema=..., every=...)` and, on the host, calls each hook's

- `new_history(n_steps)`: the keys the hook keeps in the run's history (saved with every
  checkpoint as JSON, restored on resume; `n_steps` pads series an older checkpoint lacks);
- `observe(history, step, per_sample, labels)`: every step, with the iteration's
  per-sample outputs and the batch labels (host numpy; labels are for monitoring only
  and never reach a loss);
- `scalars(history, step)`: at logged steps, TensorBoard scalars;
- `figures(method, state, eval_batch, history, out_dir, seed)`: at figure steps, paths written.

Two hooks cover today's methods: `TransferFigures` (Figures 2 and 4: translations and
noise, as image grids or, for point domains, scatter plots) and `WeightMonitor`
(Figure 3: per-class moving averages of the combined weights and of the centred critic
scores, the mass-ratio targets as reference lines).
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jdbw import figures, nets, workdir
from jdbw.evaluation import metrics


@runtime_checkable
class Hook(Protocol):
  def new_history(self, n_steps: int = 0) -> dict: ...

  def observe(self, history: dict, step: int, per_sample: dict, labels: dict) -> None: ...

  def scalars(self, history: dict, step: int) -> dict: ...

  def figures(self, method, state, eval_batch, history: dict, out_dir: str,
              seed: int) -> list: ...


def new_history(hooks, n_steps: int = 0) -> dict:
  """The run's history: every hook's keys."""
  out = {}
  for h in hooks:
    out.update(h.new_history(n_steps))
  return out


def default_hooks(method, domains, *, ema: float, every: int) -> tuple:
  """The loop's hooks: Figures 2-4 for a translator with per-sample weights (and critic
  scores, named by `method.critic_names`, if its iteration returns `d_x` / `d_y`).
  `domains`: the loaded {'x', 'y'} domains; `ema`, `every`: the weight monitor's
  moving-average rate and recording interval."""
  refs = references(domains)
  return (TransferFigures(refs["centres"]),
          WeightMonitor({k: d.num_classes for k, d in domains.items()}, ema, every,
                        refs["targets"], refs["highlight"], method.critic_names,
                        class_names={k: d.data.class_names for k, d in domains.items()},
                        unlabelled=tuple(k for k, d in domains.items()
                                         if not d.data.labelled),
                        weighted=method.weighted_sides))


def references(domains) -> dict:
  """Figures' references: the over-represented class and the midpoint target weights
  (Figure 3), and the modes' centres of point domains (Figures 2 and 4; None for images)."""
  px, py = domains["x"].probs, domains["y"].probs
  centres = {k: None if d.data.mixture is None else d.data.mixture.means
             for k, d in domains.items()}
  if len(px) != len(py):
    return {"targets": None, "highlight": None, "centres": centres}
  return {"targets": metrics.midpoint_target_weights(px, py),
          "highlight": metrics.over_represented_class(px, py), "centres": centres}



class TransferFigures:
  """Figure 2 (source, transferred, transferred back) and Figure 4 (fixed noise per
  column) of the paper's layout; scatter plots for point domains, with the modes'
  `centres` {'x': [K, 2], 'y': ...} marked if given."""

  def __init__(self, centres: dict | None = None):
    self.centres = centres or {}

  def new_history(self, n_steps: int = 0) -> dict:
    return {}

  def observe(self, history, step, per_sample, labels) -> None:
    pass

  def scalars(self, history, step) -> dict:
    return {}

  def figures(self, method, state, eval_batch, history, out_dir, seed) -> list:
    if method.point_domains:
      return _point_figures(method, state, eval_batch, out_dir, seed, self.centres)
    return _image_figures(method, state, eval_batch, out_dir, seed)


# (history series, per-sample key, EMA key, domain): per-class moving averages of the
# combined weights (Figure 3) and of the critic scores (why W moves).
SERIES = (("weights_x", "w_x", "ema_x", "x"), ("weights_y", "w_y", "ema_y", "y"),
          ("critic_x", "d_x", "ema_d_x", "x"), ("critic_y", "d_y", "ema_d_y", "y"))


class WeightMonitor:
  """Figure 3: per-class moving averages (EMA `ema`) of the combined weights x m and of
  the critic scores minus their batch mean, recorded every `every` steps; `targets`
  (midpoint weights) and `highlight` (the over-represented class) as references;
  `critic_names` {'x', 'y'} label the critic rows (None: the joint critic's)."""

  def __init__(self, num_classes: dict, ema: float, every: int, targets=None, highlight=None,
               critic_names: dict | None = None, class_names: dict | None = None,
               unlabelled: tuple = (), weighted: tuple = ("x", "y")):
    self.num_classes, self.ema, self.every = num_classes, ema, every
    self.weighted = tuple(weighted)   # sides with non-uniform weights (Figure 3's top row)
    self.targets, self.highlight, self.critic_names = targets, highlight, critic_names
    self.class_names, self.unlabelled = class_names or {}, unlabelled
    if unlabelled:   # per-class references are meaningless without classes
      self.targets, self.highlight = None, None

  def new_history(self, n_steps: int = 0) -> dict:
    out = {"steps": []}
    for series, _, ema, _ in SERIES:
      out[series], out[ema] = [None] * n_steps, None
    return out

  def observe(self, history, step, per_sample, labels) -> None:
    """Per-class means of the weights and critic scores (labels used for monitoring only).

    Critic scores are centred on their side's batch mean first: W's gradient on a weight
    is 2·gap·D_i and the weights of a side sum to one, so only D_i minus the batch's
    level moves mass between classes (the level itself drifts freely in a WGAN critic).
    """
    for series, key, ema_key, side in SERIES:
      if key not in per_sample:
        continue
      w, lab = np.asarray(per_sample[key], np.float64), np.asarray(labels[side]).reshape(-1)
      if series.startswith("critic"):
        w = w - w.mean()
      k = self.num_classes[side]
      sums = np.bincount(lab, weights=w, minlength=k)
      counts = np.bincount(lab, minlength=k)
      prev = history[ema_key]
      cur = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
      if prev is None:
        new = np.where(np.isnan(cur), 1.0 if series.startswith("weights") else 0.0, cur)
      else:
        prev = np.asarray(prev, np.float64)
        new = np.where(np.isnan(cur), prev, self.ema * prev + (1 - self.ema) * cur)
      history[ema_key] = new.tolist()
    if step % self.every == 0:
      history["steps"].append(step)
      for series, _, ema_key, _ in SERIES:
        history[series].append(history[ema_key])

  def scalars(self, history, step) -> dict:
    out = {}
    if history["steps"] and history["steps"][-1] == step:
      for series, _, _, side in SERIES:
        if side in self.unlabelled:
          continue   # one "class": the side's mean, nothing per class to watch
        if series.startswith("weights") and side not in self.weighted:
          continue   # uniform by construction: nothing to watch
        for c, w in enumerate(history[series][-1] or ()):
          if w is not None and np.isfinite(w):
            out[f"{series}/class_{c}"] = w
    return out

  def figures(self, method, state, eval_batch, history, out_dir, seed) -> list:
    history = self.with_last_step(history, int(state.step))
    if not history["steps"]:
      return []
    series = {k: as_rows(history[k]) for k, *_ in SERIES}
    critic = ({"x": series["critic_x"], "y": series["critic_y"]}
              if series["critic_x"] is not None else None)
    paths = [figures.weight_curves(
        os.path.join(out_dir, "figure3_weights.png"), history["steps"],
        {s: series[f"weights_{s}"] if s in self.weighted else None for s in ("x", "y")},
        "Figure 3: moving average of per-class combined weights", targets=self.targets,
        highlight=self.highlight, critic=critic, critic_names=self.critic_names,
        class_names=self.class_names, unlabelled=self.unlabelled)]
    record = {k: history.get(k) for k in ("steps", "weights_x", "weights_y", "critic_x",
                                          "critic_y")}
    for side in ("x", "y"):
      if side not in self.weighted:   # uniform by construction (the method does not weight it)
        record[f"weights_{side}"] = None
    record.update(weighted_sides=list(self.weighted), targets=self.targets,
                  highlight=self.highlight,
                  class_names={k: list(v) for k, v in self.class_names.items() if v},
                  unlabelled=list(self.unlabelled),
                  note="per-class moving averages (EMA) of the combined weight x m and of"
                       " the critic score minus its batch mean, at each logged step; targets:"
                       " midpoint weights")
    workdir.write_json_atomic(os.path.join(out_dir, "figure3_weights.json"), record)
    paths.append(os.path.join(out_dir, "figure3_weights.json"))
    return paths


  @staticmethod
  def with_last_step(history: dict, step: int) -> dict:
    """`history` with the moving averages at `step` appended when the last recorded point
    is older (a run whose --steps is no multiple of --log_every): a copy for the figure
    and its data file, so the checkpointed history, and a resumed run, are unchanged."""
    steps = history["steps"]
    if history.get("ema_x") is None or (steps and steps[-1] >= step):
      return history
    out = {**history, "steps": steps + [step]}
    for series, _, ema_key, _ in SERIES:
      out[series] = history[series] + [history[ema_key]]
    return out


def as_rows(values):
  """[T] rows of K values, None rows (steps before a series existed) as NaN; None if
  the series was never recorded (e.g. MUNIT has no joint critic scores)."""
  k = next((len(v) for v in values if v is not None), None)
  if k is None:
    return None
  return np.asarray([[np.nan] * k if v is None else v for v in values], np.float64)


def _image_figures(method, state, eval_batch, out_dir, seed) -> list[str]:
  params, spectral = state.params, state.spectral
  translate = jax.jit(method.translate, static_argnums=4)
  nz = method.config.noise_dim
  key = jax.random.PRNGKey(seed)
  rows, noise_rows = [], []
  names = {"xy": ("x", "yx", "X -> Y -> X"), "yx": ("y", "xy", "Y -> X -> Y")}
  for d in method.directions:
    side, back, title = names[d]
    src = jnp.asarray(eval_batch[side]["image"][:12])
    z = nets.sample_noise(jax.random.fold_in(key, 0), 12, nz)
    fwd = translate(params, spectral, src, z, d)
    row, what = [src, fwd], ["source", "transferred"]
    if back in method.directions:
      row.append(translate(params, spectral, fwd, z[::-1], back))
      what.append("transferred back")
    if method.paired:   # the batch holds pairs: each source's own target
      row.append(jnp.asarray(eval_batch[d[1]]["image"][:12]))
      what.append("its pair")
    rows.append({"title": f"Figure 2 layout, {title} (rows: {', '.join(what)}), step"
                          f" {int(state.step)}", "rows": row})
    if not method.stochastic:
      continue   # Figure 4 needs translations that depend on z (not CycleGAN's)
    src8 = src[:8]
    zs = nets.sample_noise(jax.random.fold_in(key, 1), 8, nz)
    outs = jnp.stack([translate(params, spectral, src8, jnp.broadcast_to(zs[j], (8, nz)), d)
                      for j in range(8)], 1)
    noise_rows.append({"title": f"Figure 4 layout, G_{d}: source per row, noise per column",
                       "sources": src8, "outputs": outs})
  paths = [figures.transfer_rows(os.path.join(out_dir, "figure2_transfer.png"), rows)]
  if noise_rows:
    paths.append(figures.noise_grid(os.path.join(out_dir, "figure4_noise.png"), noise_rows))
  return paths


def _point_figures(method, state, eval_batch, out_dir, seed, centres) -> list[str]:
  """Figure 2 as scatter plots (weights on the sources, translations by source mode) and
  Figure 4 as 8 sources x 8 noises (segments from each source to its translations)."""
  params, spectral = state.params, state.spectral
  translate = jax.jit(method.translate, static_argnums=4)
  nz = method.config.noise_dim
  key = jax.random.PRNGKey(seed)
  x, y = (jnp.asarray(eval_batch[s]["image"]) for s in ("x", "y"))
  lab = {s: np.asarray(eval_batch[s]["label"]) for s in ("x", "y")}
  n = x.shape[0]
  z = nets.sample_noise(jax.random.fold_in(key, 0), n, nz)
  fake = {d: translate(params, spectral, x if d == "xy" else y, z, d) for d in method.directions}
  logits = method.weight_logits(params, x, fake.get("xy"), fake.get("yx"), y)
  w_x, w_y = (np.asarray(w) * n for w in method.normalise_weights(logits, n, state.step))
  step = int(state.step)
  panels = [{"title": f"{s.upper()}, coloured by combined weight x m (size too)",
             "points": np.asarray(p), "color": w, "cmap": "viridis", "size": 4 + 6 * w,
             "color_label": "weight x m", "centres": centres.get(s)}
            for s, p, w in (("x", x, w_x), ("y", y, w_y))]
  for d, src, tgt in (("xy", "x", "y"), ("yx", "y", "x")):
    if d in fake:
      panels.append({"title": f"G_{d}({src}) over real {tgt.upper()} (grey), coloured by"
                              f" the source's mode", "points": np.asarray(fake[d]),
                     "color": lab[src], "background": np.asarray(y if tgt == "y" else x),
                     "centres": centres.get(tgt)})
  paths = [figures.point_panels(os.path.join(out_dir, "figure2_transfer.png"), panels,
                                f"Figure 2 for points, step {step}: numbers mark the modes")]
  noise_panels = []
  zs = nets.sample_noise(jax.random.fold_in(key, 1), 8, nz)
  for d, src_pts, src in (("xy", x, "x"), ("yx", y, "y")):
    if d not in fake:
      continue
    s8 = src_pts[:8]
    outs = np.stack([np.asarray(translate(params, spectral, s8, jnp.broadcast_to(zs[j], (8, nz)),
                                          d)) for j in range(8)], 1)  # [8 sources, 8 noises, 2]
    starts = np.repeat(np.asarray(s8), 8, 0)
    noise_panels.append({"title": f"Figure 4 for points, G_{d}: 8 sources x 8 noises (lines"
                                  " from source to translation)",
                         "points": outs.reshape(-1, 2), "color": np.repeat(lab[src][:8], 8),
                         "segments": (starts, outs.reshape(-1, 2)),
                         "background": np.asarray(jnp.concatenate([x, y])),
                         "centres": None})
  paths.append(figures.point_panels(os.path.join(out_dir, "figure4_noise.png"), noise_panels,
                                    f"Noise should move points within a mode, step {step}"))
  return paths
