"""What `pip install .` ships: every Python package, and the trained models as package data."""
import glob
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_python_package_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("collab", "collab_app")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_every_model_file_ships_as_package_data():
    setuptools = PYPROJECT["tool"]["setuptools"]
    root = ROOT / setuptools["package-dir"]["collab_checkpoints"]
    shipped = {f for pattern in setuptools["package-data"]["collab_checkpoints"]
               for f in glob.glob(pattern, root_dir=root) if (root / f).is_file()}
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert present == shipped, sorted(present - shipped)
    assert {"demo/model_index.json", "demo/collaborators/mask/model.safetensors", "joint/model_index.json",
            "joint/vae/model.safetensors", "evaluator/evaluator.safetensors"} <= shipped  # component folders


def test_torch_is_a_range_in_the_package_and_pinned_for_the_app():
    deps = PYPROJECT["project"]["dependencies"]
    assert "torch>=2.4,<3" in deps
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().splitlines()
