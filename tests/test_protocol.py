"""The protocol layer against the contract: typed config, writers, atomicity, versions, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT
from contract import check_infer_json, check_mining_tsv, check_monitor_error, check_monitor_running, check_result_yaml
from executor import protocol
from executor.protocol import (
    ErrorCode,
    InferResultWriter,
    Monitor,
    Params,
    Protocol,
    Stage,
    YmirError,
    atomic_write_text,
    classify_exception,
    write_mining_result,
    write_training_result,
)


def params(**values):
    defaults = {"epochs": 100, "lr0": 0.01, "export_onnx": False, "model": "yolo11n", "weights": ""}
    return Params(defaults, values)


@pytest.mark.parametrize("raw, expected", [("100", 100), (100, 100), (100.0, 100), ("1e2", 100), (None, 100)])
def test_int_accepts_what_users_type(raw, expected):
    assert params(epochs=raw).int("epochs") == expected


@pytest.mark.parametrize("raw", ["abc", "", "1.5", True, [1]])
def test_int_rejects_with_key_and_value(raw):
    with pytest.raises(YmirError) as info:
        params(epochs=raw).int("epochs")
    assert info.value.code == ErrorCode.CONFIG
    assert "epochs" in info.value.message and repr(raw) in info.value.message


@pytest.mark.parametrize("raw, expected", [(True, True), ("true", True), ("True", True), ("1", True), (1, True),
                                           (False, False), ("false", False), ("0", False), (0, False), ("no", False)])
def test_bool_accepts_platform_spellings(raw, expected):
    assert params(export_onnx=raw).bool("export_onnx") is expected


def test_bool_and_float_reject():
    with pytest.raises(YmirError, match="export_onnx"):
        params(export_onnx="maybe").bool("export_onnx")
    with pytest.raises(YmirError, match="lr0"):
        params(lr0="nan").float("lr0")
    assert params(lr0="0.5").float("lr0") == 0.5


def test_ranges_and_choices():
    with pytest.raises(YmirError, match="'epochs' must be at least 1"):
        params(epochs="0").int("epochs", 1)
    with pytest.raises(YmirError, match="not one of"):
        params(model="yolo99").str("model", ["yolo11n"])


def test_unknown_keys_are_reported_and_code_keys_must_be_in_template():
    p = params(epochs=3, foo=1, class_names=["a"], gpu_id="0")
    assert p.unknown_keys() == ["foo"]
    with pytest.raises(KeyError):
        p.int("not_in_template")
    p.int("epochs")
    assert p.read_keys == {"epochs"}


def test_floats_per_class():
    assert params(weights="").floats("weights", 2) == [1.0, 1.0]
    p = Params({"w": ""}, {"w": "1, 2.5"})
    assert p.floats("w", 2) == [1.0, 2.5]
    with pytest.raises(YmirError):
        Params({"w": ""}, {"w": "1"}).floats("w", 2)


def test_class_names_and_gpu_ids():
    assert protocol.class_names({"class_names": ["a", "b"]}) == ["a", "b"]
    for bad in ([], ["a", "a"], None):
        with pytest.raises(YmirError) as info:
            protocol.class_names({"class_names": bad})
        assert info.value.code == ErrorCode.CONFIG
    assert protocol.gpu_ids({"gpu_id": "0,1"}) == [0, 1]
    assert protocol.gpu_ids({"gpu_id": ""}) == []
    assert protocol.gpu_ids({"gpu_id": "0", "gpu_count": 0}) == []
    assert protocol.gpu_ids({"gpu_id": 0}) == [0]


def test_protocol_versions():
    assert Protocol(None).legacy and Protocol("").legacy and Protocol("0.9.0").legacy
    assert not Protocol("1.0.0").legacy and not Protocol("1.1.0").legacy and not Protocol("2.3.0").legacy


def test_tasks_and_merged_config(tmp_path):
    from executor import sample

    env_path = sample.write_task(tmp_path, ["mining", "infer"], {"img_size": "320", "foo": 1})
    cfg = protocol.get_merged_config(str(env_path))
    assert protocol.tasks_to_run(cfg.ymir) == ["mining", "infer"]
    assert cfg.param.img_size == "320" and cfg.param.conf_thres == 0.25 and cfg.param.mining_algorithm
    assert "epochs" not in cfg.param


def test_read_index_tolerates_crlf_blank_lines_spaces_and_extra_columns(tmp_path):
    index = tmp_path / "i.tsv"
    index.write_bytes(b"/a b/1.jpg\t/x/1.txt\textra\r\n\r\n   \n/c/2.jpg\n/in/with space/3.jpg\n/in/\"q\"/4.jpg\n")
    rows = [fields for _, fields in protocol.read_index(str(index), 2)]
    assert rows == [["/a b/1.jpg", "/x/1.txt"], ["/c/2.jpg"], ["/in/with space/3.jpg"], ['/in/"q"/4.jpg']]
    with pytest.raises(YmirError) as info:
        list(protocol.read_index(str(tmp_path / "missing.tsv"), 1))
    assert info.value.code == ErrorCode.DATASET


def test_monitor_running_error_and_shared_bar(tmp_path):
    path = str(tmp_path / "monitor.txt")
    monitor = Monitor(path, "t1")
    monitor.progress(0.5, force=True)
    check_monitor_running(path, "t1", 0.5)
    mining, infer = monitor.sub(0.0, 0.5), monitor.sub(0.5, 1.0)
    mining.progress(1.0, force=True)
    check_monitor_running(path, "t1", 0.5)
    infer.progress(0.5, force=True)
    check_monitor_running(path, "t1", 0.75)
    monitor.error(ErrorCode.DATASET, "no images")
    assert check_monitor_error(path, 300002) == "no images"


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "result.yaml"
    atomic_write_text(path, "old: 1\n")
    with pytest.raises(RuntimeError):
        with protocol.atomic_writer(path) as fp:
            fp.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old: 1\n"
    assert os.listdir(tmp_path) == ["result.yaml"], "no temp file left behind"


def _stage_files(models, names):
    for n in names:
        (models / n).write_bytes(b"w")


def test_training_result_stage_form(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    now = int(time.time())
    stages = []
    for i in range(1, 16):
        _stage_files(models, [f"epoch_{i}.pt"])
        stages.append(Stage(f"epoch-{i}", [f"epoch_{i}.pt"], 0.1 + 0.01 * i, now + i, {"mAR": 0.2, "tp": i, "fp": 2, "fn": 3}))
    stages[2].mAP = 0.9  # an old best must survive the trim
    _stage_files(models, ["best.pt", "best.onnx"])
    path = str(models / "result.yaml")
    best = write_training_result(path, str(models), stages, Protocol("1.1.0"),
                                 {"images": []}, {"conf_thr": 0.001, "iou_thr": 0.7})
    data = check_result_yaml(path, legacy=False)
    assert best == "epoch_3" == data["best_stage_name"]
    assert data["model_stages"]["epoch_3"]["tp"] == 3 and data["model_stages"]["epoch_3"]["mAR"] == 0.2
    assert len(data["model_stages"]) == 11
    assert "epoch_3" in data["model_stages"] and "epoch_15" in data["model_stages"] and "epoch_4" not in data["model_stages"]
    assert data["evaluate_config"] == {"conf_thr": 0.001, "iou_thr": 0.7}


@pytest.mark.parametrize("figures", [{"mAR": 1.5}, {"tp": -1}, {"fn": -3}])
def test_stage_figures_outside_what_the_platform_accepts_are_refused(tmp_path, figures):
    """The platform's ModelStageStorage takes mAR in [0, 1] and tp, fp, fn >= 0: anything else fails the task there."""
    _stage_files(tmp_path, ["best.pt"])
    with pytest.raises(ValueError, match="figures"):
        write_training_result(str(tmp_path / "result.yaml"), str(tmp_path), [Stage("best", ["best.pt"], 0.5, 100, figures)],
                              Protocol("1.1.0"))


def test_training_result_exact_ties_go_to_the_stage_named_best(tmp_path):
    _stage_files(tmp_path, ["last.pt", "best.pt"])
    stages = [Stage("best", ["best.pt"], 0.5, 100), Stage("last", ["last.pt"], 0.5, 100)]
    assert write_training_result(str(tmp_path / "r.yaml"), str(tmp_path), stages, Protocol("1.1.0")) == "best"
    assert write_training_result(str(tmp_path / "r.yaml"), str(tmp_path), stages[::-1], Protocol("1.1.0")) == "best"


def test_training_result_best_ties_go_to_newest_and_legacy_form(tmp_path):
    models = tmp_path
    _stage_files(models, ["last.pt", "best.pt"])
    stages = [Stage("last", ["last.pt"], 0.5, 100), Stage("best", ["best.pt"], 0.5, 200)]
    path = str(models / "result.yaml")
    assert write_training_result(path, str(models), stages, Protocol("1.0.0")) == "best"
    assert write_training_result(path, str(models), stages, Protocol(None)) == "best"
    data = check_result_yaml(path, legacy=True)
    assert data == {"model": ["best.pt"], "map": 0.5}


@pytest.mark.parametrize("stage, error", [
    (Stage("a", ["missing.pt"], 0.5), FileNotFoundError),
    (Stage("a", ["x.pt"], 1.5), ValueError),
    (Stage("a", ["/abs/x.pt"], 0.5), ValueError),
])
def test_training_result_rejects_what_the_platform_rejects(tmp_path, stage, error):
    (tmp_path / "x.pt").write_bytes(b"w")
    with pytest.raises(error):
        write_training_result(str(tmp_path / "result.yaml"), str(tmp_path), [stage], Protocol("1.1.0"))
    assert not (tmp_path / "result.yaml").exists()


def test_training_result_refuses_symlinks(tmp_path):
    (tmp_path / "real.pt").write_bytes(b"w")
    os.symlink(tmp_path / "real.pt", tmp_path / "link.pt")
    with pytest.raises(FileNotFoundError):
        write_training_result(str(tmp_path / "r.yaml"), str(tmp_path), [Stage("a", ["link.pt"], 0.1)], Protocol("1.1.0"))


def test_mining_result_sorted_unique_unreadable_last(tmp_path):
    path = str(tmp_path / "result.tsv")
    scores = [("/a/1.jpg", 0.2), ("/a/2.jpg", None), ("/a/3.jpg", 0.9), ("/a/1.jpg", 0.5), ("/a/4.jpg", float("nan")),
              ("/a/5.jpg", -3.0)]
    counts = write_mining_result(path, scores)
    rows = check_mining_tsv(path, ["/a/1.jpg", "/a/2.jpg", "/a/3.jpg", "/a/4.jpg", "/a/5.jpg"])
    assert [r[0] for r in rows[:3]] == ["/a/3.jpg", "/a/1.jpg", "/a/5.jpg"]
    assert {r[0] for r in rows[3:]} == {"/a/2.jpg", "/a/4.jpg"} and rows[3][1] < -3.0
    assert counts == {"scored": 3, "unreadable": 2, "duplicates": 1}


@pytest.mark.parametrize("xyxy, expected", [
    ((10.4, 20.6, 50.2, 60.9), {"x": 10, "y": 20, "w": 40, "h": 41}),
    ((-5, -5, 300, 300), {"x": 0, "y": 0, "w": 100, "h": 80}),
    ((99.7, 79.9, 99.9, 80.0), {"x": 99, "y": 79, "w": 1, "h": 1}),
    ((50, 60, 40, 30), {"x": 40, "y": 30, "w": 10, "h": 30}),
])
def test_ymir_box_integers_clipped(xyxy, expected):
    assert protocol.ymir_box(xyxy, 100, 80) == {**expected, "rotate_angle": 0.0}


@pytest.mark.parametrize("version", ["1.1.0", None])
def test_infer_result_both_protocols(tmp_path, version):
    path = str(tmp_path / "infer-result.json")
    writer = InferResultWriter(path, Protocol(version), ["dog", "cat"])
    writer.add("/in/assets/aa/1.jpg", [("dog", 0.91, (12.3, 30, 112.9, 110.2)), ("cat", 1.2, (0, 0, 5, 5)),
                                       ("dog", float("nan"), (0, 0, 5, 5))], 100, 100)
    writer.add("/in/assets/bb/2.png", [], 0, 0)
    writer.add("/other/aa/1.jpg", [("dog", 0.5, (0, 0, 5, 5))], 10, 10)  # duplicate basename: first kept
    assert not os.path.exists(path), "nothing visible until complete"
    writer.close()
    detection = check_infer_json(path, ["/in/assets/aa/1.jpg", "/in/assets/bb/2.png"], ["dog", "cat"], version is None)
    key = "annotations" if version is None else "boxes"
    boxes = detection["1.jpg"][key]
    assert [b["class_name"] for b in boxes] == ["dog", "cat"]
    assert boxes[0]["box"] == {"x": 12, "y": 30, "w": 88, "h": 70, "rotate_angle": 0.0}
    assert boxes[1]["score"] == 1.0
    assert detection["2.png"][key] == []
    assert writer.duplicates == 1
    json.loads(open(path).read())


def test_infer_result_abort_leaves_no_file(tmp_path):
    path = str(tmp_path / "infer-result.json")
    writer = InferResultWriter(path, Protocol("1.1.0"), ["dog"])
    writer.add("/a/1.jpg", [], 1, 1)
    writer.abort()
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        w = InferResultWriter(path, Protocol("1.1.0"), ["dog"])
        w.add("/a/1.jpg", [("cat", 0.5, (0, 0, 1, 1))], 5, 5)


@pytest.mark.parametrize("exc, code", [
    (YmirError(ErrorCode.DATASET, "x"), 300002),
    (MemoryError(), 300103),
    (RuntimeError("CUDA out of memory. Tried to allocate"), 300103),
    (RuntimeError("CUDA error: device-side assert triggered"), 300101),
    (RuntimeError("Training failed: NaN persisted for 3 epochs"), 300201),  # Ultralytics' own words, 8.4.190
    (RuntimeError("Loss NaN/Inf detected but no valid last.pt is available for recovery"), 300201),
    (RuntimeError("Checkpoint /out/ultralytics/train/weights/last.pt is corrupted with NaN/Inf weights"), 300201),
    (ValueError("something else"), 300004),
    (OSError(28, "No space left on device"), 300004),
])
def test_classify_exception(exc, code):
    found, message = classify_exception(exc)
    assert found == code and message and "\n" not in message


@pytest.mark.parametrize("words", [  # torch's, as a DataLoader worker's error reaches the main process
    "Caught RuntimeError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n  File x\n"
    "RuntimeError: unable to allocate shared memory(shm) for file </torch_7840_2991505544_1>: No space left on device (28)",
    # the same full /dev/shm under torch 2.11 (the GPU machine's), and the words of older versions
    "RuntimeError: unable to allocate shared memory(shm) for file </torch_22889_589852612_1>: No such file or directory (2)",
    "RuntimeError: unable to write to file </torch_8289_606636967_0>: No space left on device (28)",
    "RuntimeError: unable to write to file </torch_76_3625483894> at /pytorch/aten/src/TH/THAllocator.c:383",
    "DataLoader worker (pid(s) 8031) exited unexpectedly",  # not this: a worker killed (next test)
    "DataLoader worker (pid 8031) is killed by signal: Bus error. It is possible that dataloader's workers are out of "
    "shared memory. Please try to raise your shared memory limit.",
])
def test_a_full_shared_memory_is_named_with_what_to_change(words):
    code, message = classify_exception(RuntimeError(words))
    if "exited unexpectedly" in words:
        assert "shm_size" not in message
    else:
        assert code == 300103 and "shm_size" in message and "--shm-size" in message and "\n" not in message


def test_templates_parse_and_keep_platform_keys_out():
    for task in protocol.TASKS:
        template = protocol.load_template(task)
        assert template and not set(template) & protocol.PLATFORM_KEYS
    assert yaml.safe_load(open(protocol.template_dir() / "manifest.yaml"))["object_type"] == 2


@pytest.mark.parametrize("words", ["DataLoader worker (pid 8031) is killed by signal: Killed. ",
                                   "process 1 terminated with signal SIGKILL"])  # a spawned scan shard
def test_a_killed_worker_is_reported_as_memory_most_likely(words):
    code, message = classify_exception(RuntimeError(words))
    assert code == 300103 and "most likely killed by the kernel for lack of memory" in message


@pytest.mark.parametrize("form", ["EOFError", "ConnectionResetError"])
def test_a_connection_to_a_worker_lost_under_the_main_process_is_reported_as_memory_most_likely(form):
    """A killed worker can reach the main process as its end of the worker's connection failing inside
    multiprocessing (``ConnectionResetError: [Errno 104]`` was seen on a clean clone, with a batch's file
    descriptors in flight), not as DataLoader's RuntimeError. Made for real on a local socket pair: closed
    (EOF) or reset (TCP with SO_LINGER 0). The same error raised outside multiprocessing is not a worker's."""
    import socket
    import struct
    from multiprocessing.connection import Connection

    if form == "EOFError":
        ours, theirs = socket.socketpair()
    else:
        server = socket.create_server(("127.0.0.1", 0))
        ours = socket.create_connection(server.getsockname())
        theirs, _ = server.accept()
        server.close()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        theirs.sendall(b"\0\0\0\x10")  # a message header, then the peer dies mid-message
    theirs.close()
    connection = Connection(ours.detach())
    with pytest.raises((EOFError, ConnectionResetError)) as info:
        connection.recv()
    connection.close()
    assert type(info.value).__name__ == form
    code, message = classify_exception(info.value)
    assert code == 300103 and "most likely killed by the kernel for lack of memory" in message
    assert classify_exception(ConnectionResetError(104, "Connection reset by peer"))[1].startswith("unexpected error")


def test_a_dataloader_worker_killed_for_real_is_reported_as_memory_most_likely():
    """A worker SIGKILLs itself at its 10th item, as the kernel's out-of-memory killer would. In a subprocess:
    torch's SIGCHLD handler raises in the main thread wherever it happens to be, pytest's own code included.
    The loss reaches the main process as DataLoader's RuntimeError or as the worker's connection reset, and
    the handler could raise a second time inside the classification (this test failed 1 run in 8 so)."""
    code = ("import os, signal, sys, torch\n"
            f"sys.path.insert(0, {str(ROOT / 'app')!r})\n"
            "from executor.protocol.errors import classify_exception\n"
            "from executor.runtime import ignore_dead_workers\n"
            "class Dies(torch.utils.data.Dataset):\n"
            "    def __len__(self): return 64\n"
            "    def __getitem__(self, i):\n"
            "        if i == 9: os.kill(os.getpid(), signal.SIGKILL)\n"
            "        return i\n"
            "try:\n"
            "    list(torch.utils.data.DataLoader(Dies(), batch_size=4, num_workers=1))\n"
            "except Exception as exc:\n"  # whichever form the loss takes (timing decides it): see the test above
            "    ignore_dead_workers()\n"  # as cli.main's failure path: the SIGCHLD handler may raise again
            "    print(*classify_exception(exc))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.startswith("300103 a worker process died without an error of its own"), proc.stdout + proc.stderr[-2000:]


def test_too_many_open_files_says_which_limit_to_raise():
    import errno

    code, message = classify_exception(OSError(errno.EMFILE, "Too many open files"))
    assert code == ErrorCode.MODEL and "--ulimit nofile" in message and "num_workers_per_gpu" in message
