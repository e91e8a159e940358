"""The module layout: the layers' import rules (issue 36) and entry points kept out of the
test processes. Static reads of the source; nothing is imported."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Lower to higher; a module may import its own layer or lower ones only.
LAYERS = (
    ("components", ("jdbw", "jdbw.errors", "jdbw.config", "jdbw.flops", "jdbw.nets", "jdbw.losses",
                    "jdbw.batch_weight", "jdbw.optim", "jdbw.image_pool", "jdbw.parallel",
                    "jdbw.data", "jdbw.figures",
                    "jdbw.workdir")),  # workdir: atomic files and locks (imports errors only)
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
