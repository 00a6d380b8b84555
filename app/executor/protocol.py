"""The YMIR protocol: env and config files, error codes, versions and result formats.

This is the only module that knows what the platform reads and writes
(see ``docs/contract.md``). Every result file is written atomically
(temp file + rename) because the platform stops a task with SIGKILL.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import IO, Any

import yaml
from easydict import EasyDict

LOG = logging.getLogger("executor")

DEFAULT_ENV_FILE = "/in/env.yaml"
DEFAULT_MONITOR_FILE = "/out/monitor.txt"  # where the platform reads progress when env.yaml cannot tell
ENV_FILE_VARIABLE = "DEFAULT_ENV_FILE_PATH"  # the SDK's own override, kept for local runs
TASKS = ("training", "mining", "infer")
# Keys the platform injects into config.yaml: never in a template.
PLATFORM_KEYS = frozenset(
    {
        "task_id",
        "gpu_id",
        "gpu_count",
        "shm_size",
        "object_type",
        "class_names",
        "pretrained_model_params",
        "model_params_path",
    }
)
MAX_STAGES = 11  # the platform keeps the 10 most recent stages plus the best


class ErrorCode(IntEnum):
    """Error codes the platform knows (written to monitor.txt on failure)."""

    CONFIG = 300001
    DATASET = 300002
    IMAGE = 300003
    MODEL = 300004
    OBJECT_TYPE = 300005
    CUDA = 300101
    NO_GPU = 300102
    OUT_OF_MEMORY = 300103
    NAN_LOSS = 300201
    NETWORK = 300301


class YmirError(Exception):
    """A failure the user can act on: a code for the platform, a sentence for the user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message


def config_error(message: str) -> YmirError:
    return YmirError(ErrorCode.CONFIG, message)


def dataset_error(message: str) -> YmirError:
    return YmirError(ErrorCode.DATASET, message)


def model_error(message: str) -> YmirError:
    return YmirError(ErrorCode.MODEL, message)


def classify_exception(exc: BaseException) -> tuple[ErrorCode, str]:
    """Map any exception to the platform's error code and a plain message."""
    if isinstance(exc, YmirError):
        return exc.code, " ".join(exc.message.split())
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    lowered = text.lower()
    if isinstance(exc, MemoryError) or "out of memory" in lowered or "outofmemory" in lowered:
        return (
            ErrorCode.OUT_OF_MEMORY,
            f"out of memory ({text[:200]}); lower batch_size_per_gpu or img_size, "
            "or num_workers_per_gpu",
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return ErrorCode.MODEL, f"no space left on the output disk ({text[:200]}); free space where /out is mounted"
    if "cuda" in lowered or "cudnn" in lowered or "nccl" in lowered:
        return ErrorCode.CUDA, f"CUDA failure ({text[:200]}); check the GPU driver and gpu_id"
    if re.search(r"\bnan\b", lowered):
        return ErrorCode.NAN_LOSS, f"training diverged ({text[:200]}); lower lr0 or check the annotations"
    # An internal error is reported as a model error: it is the code nearest to
    # "the algorithm failed", and the log above it holds the traceback.
    return ErrorCode.MODEL, f"unexpected error: {text[:300]}"


# ---------------------------------------------------------------- atomic files


class AtomicFile:
    """A temp file beside ``path``, renamed over ``path`` by ``commit`` and removed by ``discard``."""

    def __init__(self, path: str | os.PathLike, mode: str = "w") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.fp: IO[Any] = os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8")

    def commit(self) -> None:
        self.fp.flush()
        os.fsync(self.fp.fileno())
        self.fp.close()
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.fp.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Yield a temp file beside ``path``; rename it over ``path`` only on success."""
    target = AtomicFile(path, mode)
    try:
        yield target.fp
    except BaseException:
        target.discard()
        raise
    target.commit()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_writer(path) as fp:
        fp.write(text)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a file so that ``dst`` is always either absent, old or complete."""
    with open(src, "rb") as fin, atomic_writer(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)


# ---------------------------------------------------------------- versions


@dataclass(frozen=True)
class Protocol:
    """The env's protocol_version: absent (YMIR <= 1.1) means the legacy formats."""

    version: str | None

    @property
    def legacy(self) -> bool:
        if not self.version:
            return True
        try:
            major = int(str(self.version).strip().split(".")[0])
        except ValueError as exc:
            raise config_error(
                f"env.yaml protocol_version '{self.version}' is not a version like 1.1.0"
            ) from exc
        return major < 1


# ---------------------------------------------------------------- env and config


def env_file_path() -> str:
    return os.environ.get(ENV_FILE_VARIABLE) or DEFAULT_ENV_FILE


def template_dir() -> Path:
    """Templates live at the repository root locally and in /img-man in the image."""
    here = Path(__file__).resolve().parents[2]
    for candidate in (here, Path("/img-man")):
        if (candidate / "training-template.yaml").is_file():
            return candidate
    raise config_error(f"no training-template.yaml found in {here} or /img-man")


def load_template(task: str) -> dict[str, Any]:
    path = template_dir() / f"{task}-template.yaml"
    with open(path, encoding="utf-8") as fp:
        data = yaml.safe_load(fp) or {}
    return dict(data)


def _read_yaml(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fp:
            data = yaml.safe_load(fp)
    except FileNotFoundError as exc:
        raise config_error(f"{what} not found at {path}") from exc
    except yaml.YAMLError as exc:
        raise config_error(f"{what} at {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise config_error(f"{what} at {path} must be a mapping, found {type(data).__name__}")
    return data


def tasks_to_run(env: dict[str, Any]) -> list[str]:
    """The tasks the env asks for, in the order they run (training alone, or mining then infer)."""
    flags = {t: parse_bool(env.get(f"run_{t}", False), f"run_{t}") for t in TASKS}
    return [t for t in TASKS if flags[t]]


def monitor_location(env_path: str | None = None) -> tuple[str | None, str]:
    """``(monitor file, task id)`` read from env.yaml alone, before anything else can fail, so that every
    failure reaches monitor.txt; ``/out/monitor.txt`` when env.yaml cannot be read (None without /out)."""
    try:
        with open(env_path or env_file_path(), encoding="utf-8") as fp:
            env = yaml.safe_load(fp)
        return str(env["output"]["monitor_file"]), str(env.get("task_id") or "")
    except Exception:  # noqa: BLE001 - whatever is wrong with env.yaml is reported by get_merged_config
        fallback = DEFAULT_MONITOR_FILE
        return (fallback if os.path.isdir(os.path.dirname(fallback)) else None), ""


def get_merged_config(env_path: str | None = None) -> EasyDict:
    """Like ``ymir_exc.util.get_merged_config``: ``cfg.ymir`` is env.yaml and
    ``cfg.param`` is config.yaml over the defaults of the templates of the tasks run."""
    env = _read_yaml(env_path or env_file_path(), "env.yaml")
    for key in ("input", "output"):
        if not isinstance(env.get(key), dict):
            raise config_error(f"env.yaml has no '{key}' section")
    config = _read_yaml(env["input"].get("config_file", "/in/config.yaml"), "config.yaml")
    defaults: dict[str, Any] = {}
    for task in tasks_to_run(env):
        defaults.update(load_template(task))
    return EasyDict({"ymir": env, "param": {**defaults, **config}, "defaults": defaults, "config": config})


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def parse_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise config_error(f"config key '{key}' must be true or false, got {value!r}")


class Params:
    """Typed, validated access to the user's hyper-parameters.

    The template is the source of truth: a key must be in it, and values typed
    by users (``'100'``, ``'true'``) are converted to the template default's type.
    Every key read is recorded so a test can check code and templates agree.
    """

    def __init__(self, defaults: dict[str, Any], values: dict[str, Any], user: dict[str, Any] | None = None) -> None:
        self._defaults = defaults
        self._values = values
        self._user = values if user is None else user
        self.read_keys: set[str] = set()

    def given(self, key: str) -> bool:
        """Whether config.yaml itself sets ``key`` (some keys mean something when absent)."""
        return key in self._user and self._user[key] not in (None, "")

    def unknown_keys(self) -> list[str]:
        return sorted(k for k in self._values if k not in self._defaults and k not in PLATFORM_KEYS)

    def _raw(self, key: str) -> Any:
        if key not in self._defaults:
            raise KeyError(f"'{key}' is read by the code but is in no template")  # a bug, not a user error
        self.read_keys.add(key)
        value = self._values.get(key, self._defaults[key])
        return self._defaults[key] if value is None else value

    def bool(self, key: str) -> bool:
        return parse_bool(self._raw(key), key)

    def int(self, key: str, lo: int | None = None, hi: int | None = None) -> int:
        value = self._raw(key)
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not number.is_integer():
                raise ValueError
            result = int(number)
        except (TypeError, ValueError, OverflowError):
            raise config_error(f"config key '{key}' must be a whole number, got {value!r}") from None
        return _check_range(key, result, lo, hi)

    def float(self, key: str, lo: float | None = None, hi: float | None = None) -> float:
        value = self._raw(key)
        try:
            if isinstance(value, bool):
                raise ValueError
            result = float(value)
        except (TypeError, ValueError):
            raise config_error(f"config key '{key}' must be a number, got {value!r}") from None
        if not math.isfinite(result):
            raise config_error(f"config key '{key}' must be a finite number, got {value!r}")
        return _check_range(key, result, lo, hi)

    def str(self, key: str, choices: Sequence[str] | None = None) -> str:
        value = self._raw(key)
        if isinstance(value, (dict, list)):
            raise config_error(f"config key '{key}' must be a text value, got {value!r}")
        result = str(value).strip()
        if choices is not None and result not in choices:
            raise config_error(
                f"config key '{key}' is '{result}', which is not one of: {', '.join(choices)}"
            )
        return result

    def floats(self, key: str, count: int) -> list[float]:
        """A comma-separated list of numbers; empty means ``count`` ones."""
        text = self.str(key)
        if not text:
            return [1.0] * count
        try:
            values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
        except ValueError:
            raise config_error(f"config key '{key}' must be numbers separated by commas, got {text!r}") from None
        if len(values) != count or not all(math.isfinite(v) and v >= 0 for v in values):
            raise config_error(
                f"config key '{key}' needs {count} non-negative numbers (one per class), got {text!r}"
            )
        return values


def _check_range(key: str, value: Any, lo: Any, hi: Any) -> Any:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else f"between {lo} and {hi}"
        raise config_error(f"config key '{key}' must be {bounds}, got {value!r}")
    return value


def class_names(param: dict[str, Any]) -> list[str]:
    names = param.get("class_names")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not isinstance(names, list) or not names:
        raise config_error("config.yaml has no class_names: choose at least one class for the task")
    names = [str(n).strip() for n in names]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates or any(not n for n in names):
        raise config_error(f"class_names must be distinct and not empty, got {names} (repeated: {duplicates})")
    return names


def gpu_ids(param: dict[str, Any]) -> list[int]:
    """Parse ``gpu_id`` ('0,1', '', 0); ``gpu_count: 0`` means CPU."""
    raw = param.get("gpu_id", "")
    count = param.get("gpu_count")
    if count is not None and str(count).strip() in ("0", "0.0"):
        return []
    text = "" if raw is None else str(raw)
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise config_error(f"gpu_id must be GPU numbers separated by commas, got {raw!r}") from None


def path_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v).strip()]
    raise config_error(f"expected a list of model file paths, got {value!r}")


# ---------------------------------------------------------------- index files


def read_index(path: str, columns: int) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for each non-blank line.

    Fields are separated by tabs only, so paths may contain spaces (a line without a tab is one field).
    Lines with more columns keep the first ``columns``; CRLF endings are accepted; quotes are plain text.
    """
    try:
        fp = open(path, encoding="utf-8", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise dataset_error(f"index file {path} does not exist: the dataset was not exported") from None
    with fp:
        rows = csv.reader(fp, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for number, row in enumerate(rows, 1):
                fields = [f.strip() for f in row]
                if any(fields):
                    yield number, fields[:columns]
        except csv.Error as exc:
            raise dataset_error(f"index file {path} line {rows.line_num} cannot be read ({exc})") from None


def asset_id(image_path: str) -> str:
    """The platform keys results on the file name without extension (the content hash)."""
    return os.path.splitext(os.path.basename(image_path))[0]


# ---------------------------------------------------------------- monitor


class Monitor:
    """Writes /out/monitor.txt; ``span`` maps a sub-task's [0, 1] into the shared bar."""

    RUNNING = 2
    ERROR = 4

    def __init__(self, path: str, task_id: str, span: tuple[float, float] = (0.0, 1.0),
                 _high: list[float] | None = None) -> None:
        self.path = path
        self.task_id = task_id
        self.span = span
        self._last = -1.0
        self._last_time = 0.0
        self._high = _high if _high is not None else [0.0]  # shared with sub-monitors: the bar's high-water mark

    def sub(self, start: float, end: float) -> Monitor:
        lo, hi = self.span
        return Monitor(self.path, self.task_id, (lo + (hi - lo) * start, lo + (hi - lo) * end), self._high)

    def progress(self, fraction: float, force: bool = False) -> None:
        """Never moves backwards: Ultralytics re-runs an epoch after a NaN recovery or an out-of-memory
        retry, and the bar then holds where it was until the run passes that point again."""
        lo, hi = self.span
        percent = max(lo + (hi - lo) * min(max(float(fraction), 0.0), 1.0), self._high[0])
        self._high[0] = percent
        now = time.time()
        # Throttle: at most one write per percent step or per second.
        if not force and percent - self._last < 0.01 and now - self._last_time < 1.0:
            return
        self._last, self._last_time = percent, now
        atomic_write_text(self.path, f"{self.task_id}\t{int(now)}\t{percent:.2f}\t{self.RUNNING}\n")

    def error(self, code: ErrorCode, message: str) -> None:
        atomic_write_text(
            self.path,
            f"{self.task_id}\t{int(time.time())}\t1.00\t{self.ERROR}\t{int(code)}\n{message}\n",
        )


# ---------------------------------------------------------------- training result


@dataclass
class Stage:
    name: str
    files: list[str]
    mAP: float
    timestamp: int = field(default_factory=lambda: int(time.time()))


def stage_identifier(name: str) -> str:
    """Stage names must be Python identifiers ('epoch-10' -> 'epoch_10')."""
    ident = re.sub(r"\W", "_", str(name))
    if not ident or ident[0].isdigit():
        ident = f"stage_{ident}"
    return ident


def write_training_result(
    path: str,
    models_dir: str,
    stages: Iterable[Stage],
    protocol: Protocol,
    attachments: dict[str, list[str]] | None = None,
    evaluate_config: dict[str, float] | None = None,
) -> str:
    """Write result.yaml; returns the best stage's name.

    Keeps at most 11 stages (the 10 newest and the best: best by mAP, then newest, then the one named best),
    checks every listed file is a regular file in ``models_dir`` (or its stage folder).
    """
    by_name: dict[str, Stage] = {}
    for stage in stages:
        name = stage_identifier(stage.name)
        mAP = float(stage.mAP)
        if not (math.isfinite(mAP) and 0.0 <= mAP <= 1.0):
            raise ValueError(f"stage {name} has mAP {stage.mAP}, outside [0, 1]")
        for f in stage.files:
            if os.path.isabs(f) or os.sep in f:
                raise ValueError(f"stage {name} file {f!r} must be a bare file name")
            found = [os.path.join(models_dir, name, f), os.path.join(models_dir, f)]
            if not any(os.path.isfile(p) and not os.path.islink(p) for p in found):
                raise FileNotFoundError(f"stage {name} lists {f}, which is not a regular file in {models_dir}")
        by_name[name] = Stage(name, list(stage.files), mAP, int(stage.timestamp))
    if not by_name:
        raise ValueError("a training result needs at least one model stage")
    best = max(by_name.values(), key=lambda s: (s.mAP, s.timestamp, s.name == "best"))
    newest = sorted(by_name.values(), key=lambda s: s.timestamp, reverse=True)
    kept = [s for s in newest if s is not best][: MAX_STAGES - 1] + [best]
    kept.sort(key=lambda s: s.timestamp)
    if protocol.legacy:
        data: dict[str, Any] = {"model": list(best.files), "map": best.mAP}
    else:
        data = {
            "model_stages": {
                s.name: {"stage_name": s.name, "files": s.files, "timestamp": s.timestamp, "mAP": s.mAP}
                for s in kept
            },
            "best_stage_name": best.name,
            "mAP": best.mAP,
        }
        if attachments:
            data["attachments"] = attachments
        if evaluate_config:
            data["evaluate_config"] = {k: float(v) for k, v in evaluate_config.items()}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return best.name


def prune_unlisted(models_dir: str, result_file: str) -> list[str]:
    """Delete the top-level files of ``models_dir`` that result.yaml does not list (YMIR packs the folder);
    returns their names. Folders (attachments, stage folders) and result.yaml itself stay."""
    with open(result_file, encoding="utf-8") as fp:
        data = yaml.safe_load(fp) or {}
    listed = set(data.get("model") or [])
    for stage in (data.get("model_stages") or {}).values():
        listed.update(stage.get("files") or [])
    removed = []
    for entry in sorted(os.listdir(models_dir)):
        path = os.path.join(models_dir, entry)
        if entry not in listed and entry != os.path.basename(result_file) and (os.path.islink(path) or os.path.isfile(path)):
            os.unlink(path)
            removed.append(entry)
    return removed


# ---------------------------------------------------------------- mining result


def write_mining_result(path: str, scores: Iterable[tuple[str, float | None]]) -> dict[str, int]:
    """Write result.tsv, highest score first; each candidate once.

    ``None`` (or a non-finite score) marks an unreadable image: it goes last,
    with a score below every real one. Returns counts for the log.
    """
    seen: set[str] = set()
    good: list[tuple[str, float]] = []
    bad: list[str] = []
    duplicates = 0
    for image, score in scores:
        if image in seen:
            duplicates += 1
            continue
        seen.add(image)
        if score is None or not math.isfinite(float(score)):
            bad.append(image)
        else:
            good.append((image, float(score)))
    good.sort(key=lambda item: -item[1])  # stable: ties keep index order
    floor = (min(s for _, s in good) if good else 0.0) - 1.0
    with atomic_writer(path) as fp:
        for image, score in good:
            fp.write(f"{image}\t{score:.8g}\n")
        for image in bad:
            fp.write(f"{image}\t{floor:.8g}\n")
    return {"scored": len(good), "unreadable": len(bad), "duplicates": duplicates}


# ---------------------------------------------------------------- infer result


def ymir_box(xyxy: Sequence[float], width: int, height: int) -> dict[str, Any] | None:
    """Integer ``x, y, w, h`` clipped to the image, ``w, h >= 1``; None if nothing is left."""
    if width < 1 or height < 1:
        return None
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    x1, x2 = sorted((min(max(x1, 0.0), width), min(max(x2, 0.0), width)))
    y1, y2 = sorted((min(max(y1, 0.0), height), min(max(y2, 0.0), height)))
    x, y = min(int(math.floor(x1)), width - 1), min(int(math.floor(y1)), height - 1)
    w = max(1, min(int(round(x2)) - x, width - x))
    h = max(1, min(int(round(y2)) - y, height - y))
    return {"x": x, "y": y, "w": w, "h": h, "rotate_angle": 0.0}


class InferResultWriter:
    """Streams infer-result.json to a temp file, renamed into place on ``close``.

    Results are written as they come so memory does not grow with the
    candidate count. Keys are image basenames with extension.
    """

    def __init__(self, path: str, protocol: Protocol, class_names: Sequence[str]) -> None:
        self.path = path
        self.box_key = "annotations" if protocol.legacy else "boxes"
        self.class_names = set(class_names)
        self.keys: set[str] = set()
        self.duplicates = 0
        self._file = AtomicFile(path)
        self._fp = self._file.fp
        self._fp.write('{"detection": {')

    def add(self, image_path: str, detections: Iterable[tuple[str, float, Sequence[float]]], width: int, height: int) -> None:
        """``detections`` holds ``(class_name, score, (x1, y1, x2, y2))`` in image pixels."""
        key = os.path.basename(image_path)
        if key in self.keys:
            self.duplicates += 1
            return
        boxes = []
        for name, score, xyxy in detections:
            if name not in self.class_names:
                raise ValueError(f"class {name!r} is not one of the task's class_names")
            box = ymir_box(xyxy, width, height)
            score = float(score)
            if box is None or not math.isfinite(score):
                continue
            boxes.append({"class_name": name, "score": round(min(max(score, 0.0), 1.0), 5), "box": box})
        self._fp.write(("," if self.keys else "") + json.dumps(key) + ":" + json.dumps({self.box_key: boxes}))
        self.keys.add(key)

    def close(self) -> None:
        self._fp.write("}}\n")
        self._file.commit()

    def abort(self) -> None:
        self._file.discard()
