"""Every ``>>>`` example in storyreel's docstrings runs, under the module's real import name.

The backends live in folders outside ``storyreel/`` (``generators/``, ``enhancer/``) and are installed as
``storyreel.generators`` and ``storyreel.enhancer``, so their modules are found by walking the imported
packages rather than the file tree. Examples that need a model or a file outside the repository are
marked ``# doctest: +SKIP`` where they are written.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

from conftest import REPO

PACKAGES = ("storyreel", "storyreel.generators", "storyreel.enhancer")
# Modules that need an optional extra to import; their doctests run when it is installed.
NEEDS = {"storyreel.generators.skyreels": "diffusers"}


def _modules() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if info.name.split(".")[-1] in ("generators", "enhancer") and info.name.count(".") == 1:
                continue  # walked as packages of their own
            if info.name.endswith(".__main__"):
                continue  # importing it runs the command
            names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    monkeypatch.chdir(REPO)  # examples name files such as examples/swan_lake.yaml
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name, globs={"__name__": name, **vars(module)}):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} examples in {name} failed (the output above shows which)"
