"""Which weight file to load, among what YMIR offers.

YMIR >= 2.0 extracts a model stage to ``/in/models/<stage>/<file>`` and writes
``/in/models/ymir-info.yaml``; older releases use a flat ``/in/models/<file>``
and sometimes relative names. The image verifier passes every top-level file
of a training's ``/out/models`` (``result.yaml`` included). The choice is
deterministic and logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from executor.protocol import model_error

LOG = logging.getLogger("executor")
WEIGHT_SUFFIXES = (".pt", ".pth")
INFO_FILES = ("ymir-info.yaml", "result.yaml")


def resolve(paths: list[str], models_dir: str) -> tuple[list[Path], list[str]]:
    """Existing files for ``paths`` (as given, else under ``models_dir``); also every path tried."""
    found: list[Path] = []
    tried: list[str] = []
    for raw in paths:
        options = [raw] if os.path.isabs(raw) else []
        options += [os.path.join(models_dir, raw.lstrip("/")), os.path.join(models_dir, os.path.basename(raw))]
        if not os.path.isabs(raw):
            options.append(raw)
        for option in options:
            tried.append(option)
            if os.path.isfile(option):
                found.append(Path(option))
                break
    return found, tried


def _best_stage_files(info_file: Path) -> list[Path]:
    """The best stage's weight files named by a ymir-info.yaml or result.yaml."""
    try:
        data: dict[str, Any] = yaml.safe_load(info_file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    stages = data.get("stages") or data.get("model_stages") or {}
    best = data.get("best_stage_name")
    files = (stages.get(best) or {}).get("files", []) if isinstance(stages, dict) and best else []
    if not files and isinstance(data.get("model"), list):  # legacy result.yaml
        files = data["model"]
    out = []
    for f in files:
        for candidate in (info_file.parent / str(best) / f, info_file.parent / f):
            if candidate.is_file() and candidate.suffix in WEIGHT_SUFFIXES:
                out.append(candidate)
                break
    return out


def choose(paths: list[str], models_dir: str, purpose: str) -> Path:
    """Pick one weight file: the best stage's, else one named best, else the newest; log why."""
    found, tried = resolve(paths, models_dir)
    weights = [p for p in found if p.suffix in WEIGHT_SUFFIXES]
    info_dirs = [Path(models_dir)] + sorted({p.parent for p in found})
    best_files: list[Path] = []
    for directory in info_dirs:
        for name in INFO_FILES:
            if (directory / name).is_file():
                best_files += _best_stage_files(directory / name)
    resolved = {p.resolve() for p in weights}
    for candidate in best_files:
        if not weights or candidate.resolve() in resolved:
            LOG.info("%s weights: %s (the best stage named by %s)", purpose, candidate, candidate.parent)
            return candidate
    named_best = sorted(p for p in weights if p.stem.startswith("best"))
    if named_best:
        LOG.info("%s weights: %s (named best; offered: %s)", purpose, named_best[0], [str(p) for p in weights])
        return named_best[0]
    if weights:
        newest = max(weights, key=lambda p: (p.stat().st_mtime, p.name))
        LOG.info("%s weights: %s (the newest of %s)", purpose, newest, [str(p) for p in weights])
        return newest
    raise model_error(
        f"no usable .pt weights for {purpose}: tried {tried or 'nothing (model_params_path is empty)'}; "
        "choose a model trained by this image"
    )
