"""The module layout: the layers' import rules (issue 36) and entry points kept out of the
test processes. Static reads of the source; nothing is imported."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lower to higher; a module may import its own layer or lower ones only.
LAYERS = (
    ("components", ("jdbw", "jdbw.errors", "jdbw.config", "jdbw.flops", "jdbw.nets", "jdbw.losses",
                    "jdbw.batch_weight", "jdbw.optim", "jdbw.image_pool", "jdbw.parallel",
                    "jdbw.data", "jdbw.figures", "jdbw.storage",   # storage: local or gs:// files
                    "jdbw.workdir",   # workdir: atomic files and locks (errors, storage)
                    "jdbw.xla_flags")),  # XLA:CPU flags set before JAX starts (no imports)
    ("methods", ("jdbw.methods",)),
    ("run", ("jdbw.train", "jdbw.hooks", "jdbw.checkpoint", "jdbw.evaluation",
             "jdbw.inference", "jdbw.export")),
    ("entry points", ("experiments",)),
)


def _modules(package):
  for d, _, files in os.walk(os.path.join(ROOT, package)):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(d, f)
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        yield name.removesuffix(".__init__"), path


def _imports(path, name):
  """Absolute names of the jdbw/experiments modules a file imports (anywhere in it)."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        pkg = name.split(".")[:-node.level] if not path.endswith("__init__.py") else \
            name.split(".")[:len(name.split(".")) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
      out.update(f"{base}.{a.name}" for a in node.names)
      out.add(base)
  return {m for m in out if m.split(".")[0] in ("jdbw", "experiments")}


def _layer(module):
  best = None
  for i, (_, prefixes) in enumerate(LAYERS):
    for p in prefixes:
      if module == p or (module.startswith(p + ".") and p != "jdbw"):
        if best is None or len(p) > best[1]:
          best = (i, len(p))
  return None if best is None else best[0]


def test_no_import_runs_back_up_a_layer():
  bad = []
  for package in ("jdbw", "experiments"):
    for name, path in _modules(package):
      mine = _layer(name)
      assert mine is not None, f"{name} is in no layer of LAYERS: place it"
      for imp in _imports(path, name):
        theirs = _layer(imp)
        if theirs is not None and theirs > mine:
          bad.append(f"{name} ({LAYERS[mine][0]}) imports {imp} ({LAYERS[theirs][0]})")
  assert not bad, "\n".join(bad)


def _defines_flags_at_import(path):
  """Whether a module registers absl flags when imported (a call at module level)."""
  for node in ast.parse(open(path).read()).body:
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
      f = node.value.func
      text = ast.unparse(f)
      if text.startswith("flags.DEFINE") or (text.startswith("common.define_")):
        return True
  return False


def test_the_tests_import_no_entry_point():
  """An entry point registers its flags on import; two of them in one pytest worker clash
  (DuplicateFlagError) depending on which files the worker drew. Tests run entry points as
  subprocesses and import their logic from jdbw."""
  entry = {name for name, path in _modules("experiments")
           if _defines_flags_at_import(path) and "__main__" in open(path).read()}
  assert "experiments.mnist_srmnist" in entry and "experiments.sweep" in entry
  bad = []
  for f in sorted(os.listdir(os.path.join(ROOT, "tests"))):
    if f.endswith(".py"):
      for imp in _imports(os.path.join(ROOT, "tests", f), "tests." + f[:-3]):
        if imp in entry:
          bad.append(f"tests/{f} imports {imp}")
  assert not bad, "\n".join(bad)


def _module_level_imports(path, name):
  tree = ast.parse(open(path).read())
  top = ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                   type_ignores=[])
  return _imports_of_tree(top, path, name)


def _imports_of_tree(tree, path, name):
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = name.split(".")
        keep = len(parts) - node.level + (1 if path.endswith("__init__.py") else 0)
        base = ".".join(parts[:keep] + ([base] if base else []))
      out.update(f"{base}.{a.name}" for a in node.names)
      out.add(base)
  return {m for m in out if m.split(".")[0] in ("jdbw", "experiments")}


def test_no_modules_import_each_other_in_a_circle():
  """At import time (module-level imports; a function's own import runs later)."""
  mods = dict(m for p in ("jdbw", "experiments") for m in _modules(p))
  def targets(n, p):
    # `from pkg import sub` needs pkg's module object only: a package importing its own
    # submodules is not a circle. `from pkg import name` needs pkg run.
    imps = _module_level_imports(p, n)
    subs = {i for i in imps if i in mods and "." in i and i.rsplit(".", 1)[0] in imps}
    bases = {i.rsplit(".", 1)[0] for i in subs}
    return {i for i in imps if i in mods and i != n
            and not (i in bases and n.startswith(i + "."))}
  graph = {n: targets(n, p) for n, p in mods.items()}
  state, stack = {}, []

  def visit(n):
    state[n] = "open"
    stack.append(n)
    for m in sorted(graph[n]):
      if state.get(m) == "open":
        raise AssertionError("import circle: " + " -> ".join(stack[stack.index(m):] + [m]))
      if m not in state:
        visit(m)
    stack.pop()
    state[n] = "done"
  for n in sorted(graph):
    if n not in state:
      visit(n)


# Tool options (the benchmark's, the sweep's, the study's variants and seeds) stay
# hand-written; everything else is generated from the configs' settings.
TOOL_OPTIONS = {"experiments/benchmark.py": None, "experiments/sweep.py": None,
                "experiments/mass_shift_benchmark.py": {"variants", "seeds"}}


def test_entry_points_hold_at_most_45_hand_written_flag_definitions():
  """Issue 36's measure: a setting is defined once, in its config, and its flag generated."""
  count, names = 0, []
  for name, path in _modules("experiments"):
    rel = os.path.relpath(path, ROOT)
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("flags.DEFINE_"):
        first = node.args[0] if node.args else None
        if isinstance(first, ast.JoinedStr):   # one per domain: --source_x, --source_y
          flag, n = ast.unparse(first), 2
        elif isinstance(first, ast.Constant):
          flag, n = first.value, 1
        else:   # a generated definition (a loop over a config's settings)
          continue
        tool = TOOL_OPTIONS.get(rel, set())
        if tool is None or flag in tool:
          continue
        count += n
        names.append(f"{rel}:{flag}")
  assert count <= 45, f"{count} hand-written flags:\n" + "\n".join(names)


def test_every_test_file_has_its_place_in_the_suites_order():
  """conftest.LONGEST_FIRST orders the files for the two workers; a file missing from it
  runs first (harmless, but its place should be measured and written down)."""
  import conftest
  files = {f for f in os.listdir(os.path.join(ROOT, "tests"))
           if f.startswith("test_") and f.endswith(".py")}
  assert files == set(conftest.LONGEST_FIRST), (
      f"not listed: {sorted(files - set(conftest.LONGEST_FIRST))}; listed but gone:"
      f" {sorted(set(conftest.LONGEST_FIRST) - files)}")


def test_matplotlib_loads_only_where_a_figure_is_drawn():
  """Importing the loop, the methods, inference and the evaluator (what every CLI launch
  does) loads no matplotlib: a run that draws nothing does not pay for it."""
  import subprocess
  import sys
  code = ("import sys; import jdbw.train, jdbw.methods, jdbw.inference, jdbw.hooks;"
          " import jdbw.evaluation.evaluator, jdbw.evaluation.report;"
          " print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "[]", out.stdout
