"""The YMIR protocol: the only package that knows what the platform reads and writes (docs/contract.md).

One concern a module, as in the platform's own SDK: ``config`` (env.yaml, config.yaml, templates, typed
hyper-parameters, versions, index files), ``errors`` (codes and messages), ``monitor`` (monitor.txt),
``files`` (atomic writes: the platform stops a task with SIGKILL) and ``results`` (the three result files).
Callers import the names from here.
"""

from executor.protocol.config import (
    DEFAULT_ENV_FILE,
    DEFAULT_MONITOR_FILE,
    ENV_FILE_VARIABLE,
    PLATFORM_KEYS,
    TASKS,
    Params,
    Protocol,
    class_names,
    env_file_path,
    get_merged_config,
    gpu_ids,
    load_template,
    monitor_location,
    parse_bool,
    path_list,
    read_index,
    tasks_to_run,
    template_dir,
)
from executor.protocol.errors import ErrorCode, YmirError, classify_exception, config_error, dataset_error, model_error
from executor.protocol.files import AtomicFile, atomic_copy, atomic_write_text, atomic_writer
from executor.protocol.monitor import Monitor
from executor.protocol.results import (
    MAX_STAGES,
    InferResultWriter,
    Stage,
    asset_id,
    prune_unlisted,
    stage_identifier,
    write_mining_result,
    write_training_result,
    ymir_box,
)

__all__ = [
    "DEFAULT_ENV_FILE", "DEFAULT_MONITOR_FILE", "ENV_FILE_VARIABLE", "MAX_STAGES", "PLATFORM_KEYS", "TASKS",
    "AtomicFile", "ErrorCode", "InferResultWriter", "Monitor", "Params", "Protocol", "Stage", "YmirError",
    "asset_id", "atomic_copy", "atomic_write_text", "atomic_writer", "class_names", "classify_exception",
    "config_error", "dataset_error", "env_file_path", "get_merged_config", "gpu_ids", "load_template",
    "model_error", "monitor_location", "parse_bool", "path_list", "prune_unlisted", "read_index",
    "stage_identifier", "tasks_to_run", "template_dir", "write_mining_result", "write_training_result", "ymir_box",
]
