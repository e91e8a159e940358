"""The sweep's grid files and its table (`experiments.sweep` is the command line; this
module registers no flags, so tests and notebooks can import it)."""

from __future__ import annotations

import csv
import os
import shlex

from jdbw.errors import ConfigError


def read_grid(path: str) -> list[tuple[str, str, list[str]]]:
  """[(name, variants, flags)] of a grid file; one-line ConfigError on a bad line."""
  if not os.path.isfile(path):
    raise ConfigError(f"--grid: no such file {path!r}")
  rows, seen = [], set()
  with open(path) as f:
    for n, line in enumerate(f, 1):
      line = line.split("#", 1)[0].strip()
      if not line:
        continue
      parts = shlex.split(line)
      if len(parts) < 2 or any(not p.startswith("--") for p in parts[2:]):
        raise ConfigError(f"--grid: {path}:{n}: expected 'name variants [--flag=value ...]'")
      if parts[0] in seen:
        raise ConfigError(f"--grid: {path}:{n}: name {parts[0]!r} is used twice")
      seen.add(parts[0])
      rows.append((parts[0], parts[1], parts[2:]))
  if not rows:
    raise ConfigError(f"--grid: {path} lists no configuration")
  return rows


def read_results(path: str) -> dict:
  """{(metric, variant): (mean, std, values)} of a study's results.csv."""
  out = {}
  with open(path) as f:
    for r in csv.DictReader(f):
      vals = [float(v) for v in r["values"].split()]
      out[(r["metric"], r["variant"])] = (float(r["mean"]), float(r["std"]), vals)
  return out


def table(rows, results: dict, columns) -> str:
  lines = ["| configuration | flags | variant | " + " | ".join(columns) + " |",
           "|---|---|---|" + "---|" * len(columns)]
  for name, variants, extra in rows:
    res = results.get(name)
    flag_text = " ".join(f"`{x}`" for x in extra) or "(base)"
    for v in variants.split(","):
      if res is None:
        cells = ["failed / not run"] * len(columns)
      else:
        cells = []
        for c in columns:
          if (c, v) not in res:
            cells.append("—")
            continue
          mean, std, vals = res[(c, v)]
          cells.append(f"{mean:.3f} ± {std:.3f} ({', '.join(f'{x:.2f}' for x in vals)})")
      lines.append(f"| {name} | {flag_text} | {v} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
