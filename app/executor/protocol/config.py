"""env.yaml, config.yaml, the templates, typed hyper-parameters, protocol versions and index files."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from easydict import EasyDict

from executor.protocol.errors import config_error, dataset_error

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


def env_file_path() -> str:
    return os.environ.get(ENV_FILE_VARIABLE) or DEFAULT_ENV_FILE


def template_dir() -> Path:
    """Templates live at the repository root locally and in /img-man in the image."""
    here = Path(__file__).resolve().parents[3]
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
