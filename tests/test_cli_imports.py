"""The ``cardioseg`` command starts fast: ``--help`` and ``models`` import neither torch nor napari."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "napari", "qtpy", "magicgui", "segmentation_models_pytorch")


def run_cli(argv: list[str]) -> dict:
    """Import the CLI and run ``argv`` in a fresh interpreter; report its heavy imports and time."""
    code = (
        "import json, sys, time\n"
        "start = time.perf_counter()\n"
        "import napari_cardioseg.cli as cli\n"
        "imported = time.perf_counter() - start\n"
        "try:\n"
        f"    code = cli.main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(json.dumps({'code': code, 'heavy': heavy, 'import_s': imported,\n"
        "                  'total_s': time.perf_counter() - start}), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stderr.strip().splitlines()[-1]) | {"stdout": out.stdout}


def test_help_imports_nothing_heavy():
    report = run_cli(["--help"])
    assert report["code"] == 0
    assert report["heavy"] == []
    for name in ("enhance", "predict", "train", "measure", "evaluate", "models", "demo"):
        assert f"    {name}" in report["stdout"]  # every subcommand listed with its summary
    assert report["import_s"] < 3.0  # well under 0.1 s when idle; loose for a busy 2-core box


@pytest.mark.parametrize("command", ["predict", "evaluate", "demo"])
def test_subcommand_help_imports_no_torch_or_napari(command):
    report = run_cli([command, "--help"])
    assert report["code"] == 0 and "usage: cardioseg " + command in report["stdout"]
    assert not {"torch", "napari"} & set(report["heavy"])


def test_models_imports_no_torch_or_napari(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    report = run_cli(["models"])
    assert report["code"] == 0 and "mito-em" in report["stdout"]
    assert report["heavy"] == []
    assert report["total_s"] < 3.0


def test_models_imports_no_napari(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDIOSEG_HOME", str(tmp_path))
    report = run_cli(["models"])
    assert report["code"] == 0 and "mito-em" in report["stdout"]
    assert not {"napari", "qtpy", "magicgui"} & set(report["heavy"])
