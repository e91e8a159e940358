"""Figures as PNG (matplotlib, Agg backend): image grids and class histograms."""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def domain_preview(path: str, panels: Sequence[dict], ncol: int = 16) -> str:
  """One row per domain: a sample grid and its empirical vs specified class mass.

  Each panel: {'title', 'images' [N,H,W,C], 'labels' [M] (a larger sample),
  'probs' [K] (the domain's specified class probabilities)}.
  """
  fig, axes = plt.subplots(len(panels), 2, figsize=(12, 2.6 * len(panels)),
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


def _with_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """Grey images repeated to RGB where a figure mixes grey and colour rows."""
  return images if images.shape[-1] == channels else np.repeat(images, channels, -1)


def transfer_rows(path: str, panels: Sequence[dict]) -> str:
  """Figure 2 layout per panel: row 1 source, row 2 transferred, row 3 transferred back.

  Each panel: {'title', 'rows': [source, transferred, back]} image batches of equal N
  (rows may have different channel counts: grey rows are shown as RGB where needed).
  """
  fig, axes = plt.subplots(len(panels), 1, figsize=(12, 2.4 * len(panels)), squeeze=False)
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
  fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.5), squeeze=False)
  for ax, p in zip(axes[0], panels):
    src, out = np.asarray(p["sources"]), np.asarray(p["outputs"])
    c = max(src.shape[-1], out.shape[-1])
    src, out = _with_channels(src, c), _with_channels(out, c)
    cells = np.concatenate([src[:, None], out], 1)  # [R, 1 + C, H, W, c]
    show(ax, image_grid(cells.reshape((-1,) + cells.shape[2:]), ncol=cells.shape[1]),
         p["title"])
  fig.tight_layout()
  return save(fig, path)


def weight_curves(path: str, steps, curves: dict, title: str) -> str:
  """Figure 3: moving averages of per-class combined weights over training.

  `curves` = {'x': [T, K], 'y': [T, K]}; solid lines for X, dashed for Y, one colour
  per class.
  """
  fig, ax = plt.subplots(figsize=(8, 4.5))
  colors = plt.get_cmap("tab10")
  for side, style in (("x", "-"), ("y", "--")):
    vals = np.asarray(curves[side])
    for k in range(vals.shape[1]):
      ax.plot(steps, vals[:, k], style, color=colors(k % 10),
              label=f"{side}{k}")
  ax.axhline(1.0, color="grey", lw=0.5)
  ax.set_xlabel("generator step")
  ax.set_ylabel("mean weight x m (1 = uniform)")
  ax.set_title(title, fontsize=9)
  ax.legend(ncol=4, fontsize=6)
  fig.tight_layout()
  return save(fig, path)


def confusion_matrices(path: str, matrices: dict, title: str) -> str:
  """Row-normalised confusion matrices side by side, each {title: [K, K] counts}."""
  fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 4.2), squeeze=False)
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


def class_histograms(path: str, hists: dict, title: str) -> str:
  """Grouped bars of class masses, {label: [K]} (weight calibration, Fig. 3 as a number)."""
  fig, ax = plt.subplots(figsize=(8, 3.8))
  n = len(hists)
  width = 0.8 / n
  for i, (label, h) in enumerate(hists.items()):
    h = np.asarray(h)
    ax.bar(np.arange(len(h)) + (i - (n - 1) / 2) * width, h, width=width, label=label)
  ax.set_xticks(np.arange(len(h)))
  ax.set_xlabel("class")
  ax.set_ylabel("class mass")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return save(fig, path)


def metric_curves(path: str, steps, curves: dict, ylabel: str, title: str) -> str:
  """Line plot of scalar metrics over checkpoints, {label: [T]}."""
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for label, v in curves.items():
    ax.plot(steps, v, "o-", label=label)
  ax.set_xlabel("generator step")
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return save(fig, path)
