"""Figures as PNG (matplotlib, Agg backend): image grids and class histograms."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from jdbw import storage


def _pyplot():
  """matplotlib's pyplot on the Agg backend, imported on the first figure drawn (about
  0.4 s that a run which draws nothing, a dry run or a CLI refusal, does not pay)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def image_grid(images: np.ndarray, ncol: int, pad: int = 1) -> np.ndarray:
  """[N, H, W, C] in [-1, 1] -> one [rows*(H+pad)-pad, ncol*(W+pad)-pad, C] image in [0, 1].

  Missing cells of the last row stay white.
  """
  images = np.clip((np.asarray(images, np.float32) + 1.0) / 2.0, 0.0, 1.0)
  n, h, w, c = images.shape
  rows = -(-n // ncol)
  grid = np.ones((rows * (h + pad) - pad, ncol * (w + pad) - pad, c), np.float32)
  for i in range(n):
    r, q = divmod(i, ncol)
    grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = images[i]
  return grid


def show(ax, grid: np.ndarray, title: str | None = None) -> None:
  if grid.shape[-1] == 1:
    ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  else:
    ax.imshow(grid, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])
  if title:
    ax.set_title(title, fontsize=9)


def save(fig, path: str) -> str:
  storage.makedirs(os.path.dirname(storage.absolute(path)))
  with storage.open(path, "wb") as f:
    fig.savefig(f, format=os.path.splitext(path)[1][1:] or "png", dpi=120,
                bbox_inches="tight")
  _pyplot().close(fig)
  return path


def domain_preview(path: str, panels: Sequence[dict], ncol: int = 16) -> str:
  """One row per domain: a sample grid and its empirical vs specified class mass.

  Each panel: {'title', 'images' [N,H,W,C], 'labels' [M] (a larger sample),
  'probs' [K] (the domain's specified class probabilities)}.
  """
  fig, axes = _pyplot().subplots(len(panels), 2, figsize=(12, 2.6 * len(panels)),
                           gridspec_kw={"width_ratios": [3.2, 1]}, squeeze=False)
  for (ax_img, ax_bar), p in zip(axes, panels):
    show(ax_img, image_grid(p["images"], ncol), p["title"])
    k = len(p["probs"])
    freq = np.bincount(p["labels"], minlength=k) / max(len(p["labels"]), 1)
    ax_bar.bar(np.arange(k) - 0.2, p["probs"], width=0.4, label="specified")
    ax_bar.bar(np.arange(k) + 0.2, freq, width=0.4, label=f"drawn (n={len(p['labels'])})")
    ax_bar.set_xticks(np.arange(k))
    ax_bar.set_ylabel("class mass")
    ax_bar.legend(fontsize=7)
  fig.tight_layout()
  return save(fig, path)


def modality_rows(path: str, rows: dict, title: str) -> str:
  """One row of example images per found cluster: {row title: images [N, H, W, C]}."""
  fig, axes = _pyplot().subplots(len(rows), 1, figsize=(8, 1.2 * len(rows) + 0.6), squeeze=False)
  for ax, (name, images) in zip(axes[:, 0], rows.items()):
    show(ax, image_grid(np.asarray(images), ncol=max(len(images), 1)), name)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return save(fig, path)


def _with_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """Grey images repeated to RGB where a figure mixes grey and colour rows."""
  return images if images.shape[-1] == channels else np.repeat(images, channels, -1)


def transfer_rows(path: str, panels: Sequence[dict]) -> str:
  """Figure 2 layout per panel: row 1 source, row 2 transferred, row 3 transferred back.

  Each panel: {'title', 'rows': [source, transferred, back]} image batches of equal N
  (rows may have different channel counts: grey rows are shown as RGB where needed).
  """
  fig, axes = _pyplot().subplots(len(panels), 1, figsize=(12, 2.4 * len(panels)), squeeze=False)
  for ax, p in zip(axes[:, 0], panels):
    rows = [np.asarray(r) for r in p["rows"]]
    c = max(r.shape[-1] for r in rows)
    rows = [_with_channels(r, c) for r in rows]
    show(ax, image_grid(np.concatenate(rows), ncol=len(rows[0])), p["title"])
  fig.tight_layout()
  return save(fig, path)


def noise_grid(path: str, panels: Sequence[dict]) -> str:
  """Figure 4 layout: source per row (first column), fixed noise per column.

  Each panel: {'title', 'sources' [R,...], 'outputs' [R, C, ...]}.
  """
  fig, axes = _pyplot().subplots(1, len(panels), figsize=(6.5 * len(panels), 6.5), squeeze=False)
  for ax, p in zip(axes[0], panels):
    src, out = np.asarray(p["sources"]), np.asarray(p["outputs"])
    c = max(src.shape[-1], out.shape[-1])
    src, out = _with_channels(src, c), _with_channels(out, c)
    cells = np.concatenate([src[:, None], out], 1)  # [R, 1 + C, H, W, c]
    show(ax, image_grid(cells.reshape((-1,) + cells.shape[2:]), ncol=cells.shape[1]),
         p["title"])
  fig.tight_layout()
  return save(fig, path)


def _note(ax, text: str) -> None:
  """A panel with nothing to draw says why."""
  ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, transform=ax.transAxes)
  ax.set_yticks([])


QUIET = 0.45   # alpha of the classes other than the highlighted one in Figure 3


def weight_curves(path: str, steps, curves: dict, title: str, *, targets: dict | None = None,
                  highlight: int | None = None, critic: dict | None = None,
                  critic_names: dict | None = None, class_names: dict | None = None,
                  unlabelled: Sequence[str] = ()) -> str:
  """Figure 3: moving averages of per-class combined weights over training.

  `curves` = {'x': [T, K], 'y': [T, K]}, one panel per domain, one colour per class;
  class `highlight` (the over-represented one, e.g. the zeros) is drawn thick.
  `targets` = {'x': [K], 'y': [K]}: reference weights (the midpoint mixture's, see
  `metrics.midpoint_target_weights`), dotted, the highlighted class's labelled.
  `critic` = {'x': [T, K], 'y': [T, K]}: per-class mean critic scores minus the batch
  mean, in a second row (why W moves: its gradient on a sample's weight is 2·gap·D_i).
  `class_names` {'x': [K], ...} name the legend's classes; a side in `unlabelled` (a folder
  without class subfolders) has no classes to split by: its panels say so. A side whose
  curve is None has no batch weight (JD or CycleGAN without it, the Y side of one-sided
  runs): its weight panel says so, its critic row (if any) is still drawn.
  """
  rows = 2 if critic else 1
  fig, axes = _pyplot().subplots(rows, 2, figsize=(12, 4.2 * rows), squeeze=False, sharex=True)
  colors = _pyplot().get_cmap("tab10")
  # The over-represented class in one strong colour, the others in their own colours,
  # thin and faded (tab10 has no black, so the highlight never matches another class).
  color = lambda k: "black" if k == highlight else colors(k % 10)
  steps = np.asarray(steps)
  marker = "o" if len(steps) < 3 else None   # a run of one or two points: no line to see

  def label(side, k):
    names = (class_names or {}).get(side) or ()
    return f"class {k}" + (f" {names[k]}" if k < len(names) else "")

  for col, side in enumerate(("x", "y")):
    ax = axes[0, col]
    if side in unlabelled:   # no classes to split by: both rows say so
      for a in axes[:, col]:
        _note(a, f"{side.upper()} is unlabelled: per-class curves need class labels\n"
                 "(class subfolders in its folder)")
      continue
    if curves.get(side) is None:   # a side without batch weight: its critic row still shows
      _note(ax, f"{side.upper()} is not weighted (uniform weights)")
    else:
      vals = np.asarray(curves[side], np.float64)
      for k in range(vals.shape[1]):
        hl = k == highlight
        ax.plot(steps, vals[:, k], color=color(k), lw=2.8 if hl else 0.9, marker=marker,
                alpha=1.0 if hl or highlight is None else QUIET, zorder=3 if hl else 2,
                label=label(side, k) + (" (the shifted mode)" if hl else ""))
        if targets is not None and (hl or highlight is None):
          t = float(np.asarray(targets[side])[k])
          ax.axhline(t, color=color(k), ls=":", lw=1.8 if hl else 0.8)
          if hl:
            ax.annotate(f"target {t:.2f}", (steps[-1] if len(steps) else 0, t), fontsize=8,
                        color=color(k), xytext=(2, 3), textcoords="offset points",
                        ha="right", fontweight="bold")
      if targets is not None and highlight is not None:   # the other classes' targets, quiet
        others = np.delete(np.asarray(targets[side], np.float64), highlight)
        others = others[np.isfinite(others)]
        if len(others):
          ax.axhspan(others.min() - 0.005, others.max() + 0.005, color="grey", alpha=0.15,
                     lw=0, label="targets of the other classes")
      ax.axhline(1.0, color="grey", lw=0.5)
      ax.set_title(f"{side.upper()}: mean combined weight x m per class (1 = uniform)",
                   fontsize=9)
      ax.set_ylabel("mean weight x m")
      ax.legend(ncol=2, fontsize=6)
    if critic:
      cax = axes[1, col]
      cvals = np.asarray(critic[side], np.float64)
      for k in range(cvals.shape[1]):
        hl = k == highlight
        cax.plot(steps, cvals[:, k], color=color(k), lw=2.8 if hl else 0.9, marker=marker,
                 alpha=1.0 if hl or highlight is None else QUIET, zorder=3 if hl else 2,
                 label=label(side, k))
      if curves.get(side) is None:   # the weight panel above has no legend to read colours by
        cax.legend(ncol=2, fontsize=6)
      scored = (critic_names or {"x": "D(x, G_xy(x))", "y": "D(G_yx(y), y)"})[side]
      cax.set_title(f"{side.upper()}: per-class mean of {scored} minus the batch mean",
                    fontsize=9)
      cax.set_ylabel("D - batch mean")
  for ax in axes[-1]:
    ax.set_xlabel("generator step")
  drawn = any(curves.get(s) is not None and s not in unlabelled for s in ("x", "y"))
  note = "; dotted: midpoint target weights" if targets is not None and drawn else ""
  fig.suptitle(title + note, fontsize=9)
  fig.tight_layout()
  return save(fig, path)


def point_panels(path: str, panels: Sequence[dict], title: str) -> str:
  """Scatter plots of 2-D point domains (the `mixture2d` bench's Figures 2 and 4).

  Each panel: {'title', 'background' [N, 2] (grey), 'points' [M, 2], 'color' [M]
  (values; with 'cmap' a colour scale, else class indices in tab10), optional 'cmap',
  'size' [M], 'centres' [K, 2] (labelled by index), 'segments' ([M, 2], [M, 2]) drawn
  as thin lines from the first to the second point}.
  """
  n = len(panels)
  cols = 2 if n > 1 else 1
  rows = -(-n // cols)
  fig, axes = _pyplot().subplots(rows, cols, figsize=(5.6 * cols, 5.0 * rows), squeeze=False)
  for ax, p in zip(axes.reshape(-1), panels):
    if p.get("background") is not None:
      bg = np.asarray(p["background"])
      ax.scatter(bg[:, 0], bg[:, 1], s=3, c="0.85", lw=0, zorder=0)
    if p.get("segments") is not None:
      a, b = (np.asarray(v) for v in p["segments"])
      for i in range(len(a)):
        ax.plot([a[i, 0], b[i, 0]], [a[i, 1], b[i, 1]], color="0.6", lw=0.4, zorder=1)
    pts = np.asarray(p["points"])
    size = np.asarray(p["size"]) if p.get("size") is not None else 6
    if p.get("cmap"):
      sc = ax.scatter(pts[:, 0], pts[:, 1], s=size, c=np.asarray(p["color"]), cmap=p["cmap"],
                      lw=0, zorder=2)
      fig.colorbar(sc, ax=ax, shrink=0.8, label=p.get("color_label", ""))
    else:
      cls = np.asarray(p["color"]).astype(int)
      ax.scatter(pts[:, 0], pts[:, 1], s=size, c=_pyplot().get_cmap("tab10")(cls % 10), lw=0,
                 zorder=2)
    if p.get("centres") is not None:
      for k, (cx, cy) in enumerate(np.asarray(p["centres"])):
        ax.text(cx, cy, str(k), fontsize=11, weight="bold", ha="center", va="center",
                zorder=3, bbox=dict(boxstyle="circle,pad=0.15", fc="white", alpha=0.7))
    ax.set_aspect("equal")
    ax.set_title(p["title"], fontsize=9)
  for ax in axes.reshape(-1)[n:]:
    ax.axis("off")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return save(fig, path)


def confusion_matrices(path: str, matrices: dict, title: str) -> str:
  """Row-normalised confusion matrices side by side, each {title: [K, K] counts}."""
  fig, axes = _pyplot().subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4.2), squeeze=False)
  for ax, (name, cm) in zip(axes[0], matrices.items()):
    cm = np.asarray(cm, np.float64)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0)
    k = len(cm)
    for i in range(k):
      for j in range(k):
        if rows[i, j] >= 0.01:
          ax.text(j, i, f"{100 * rows[i, j]:.0f}", ha="center", va="center", fontsize=6,
                  color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("class of translation")
    ax.set_ylabel("source class")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{name}: {100 * acc:.1f}% consistent", fontsize=9)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return save(fig, path)


def class_histograms(path: str, hists: dict, title: str, ylabel: str = "class mass") -> str:
  """Grouped bars of class masses, {label: [K]} (weight calibration, Fig. 3 as a number)."""
  fig, ax = _pyplot().subplots(figsize=(8, 3.8))
  n = len(hists)
  width = 0.8 / n
  for i, (label, h) in enumerate(hists.items()):
    h = np.asarray(h)
    ax.bar(np.arange(len(h)) + (i - (n - 1) / 2) * width, h, width=width, label=label)
  ax.set_xticks(np.arange(len(h)))
  return _finish_plot(fig, ax, path, "class", ylabel, title)


def metric_curves(path: str, steps, curves: dict, ylabel: str, title: str) -> str:
  """Line plot of scalar metrics over checkpoints, {label: [T]}."""
  fig, ax = _pyplot().subplots(figsize=(6, 3.5))
  for label, v in curves.items():
    ax.plot(steps, v, "o-", label=label)
  return _finish_plot(fig, ax, path, "generator step", ylabel, title)


def _finish_plot(fig, ax, path: str, xlabel: str, ylabel: str, title: str) -> str:
  """Labels, title and legend of a one-axes plot, then saved to `path`."""
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return save(fig, path)
