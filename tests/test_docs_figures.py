"""The figures the docs quote are those of the raw results in bench/results (``bench/common.save_result``):
each figure below is recomputed from its JSON and must appear, so formatted, in the doc that quotes it; every raw
result a benchmark saved is cited by the docs; every JSON there parses."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ("README.md", "README.zh-CN.md", "docs/benchmarks.md", "docs/robustness.md")


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def read_doc(doc: str) -> str:
    """A doc as it reads: its lines joined, so that a figure matches wherever the doc's lines wrap."""
    return " ".join((ROOT / doc).read_text().split())


Figure = tuple[str, str]  # (a phrase of the table row or sentence that quotes it, the figure)


def infer_small(data: dict) -> list[Figure]:
    rounds = data["speedup_vs_plain_per_round"]["A executor infer task"]
    place = "A's speed over B's, per round"
    return [(place, f"median **{statistics.median(rounds):.2f}x**"),
            (place, f"best against best **{data['speedup_vs_plain_best']['A executor infer task']:.2f}x**"),
            (place, f"{len(rounds)} alternated rounds")]


def infer_photos(data: dict) -> list[Figure]:
    rounds = data["speedup_vs_plain_per_round"]["A executor infer task"]
    return [("| A executor infer task |", f"**{data['speedup_vs_plain_best']['A executor infer task']:.2f}x**"),
            ("Per round A ran", f"{min(rounds):.2f}x-{max(rounds):.2f}x B")]


def infer_photos_readme(data: dict) -> list[Figure]:
    rounds = data["speedup_vs_plain_per_round"]["A executor infer task"]
    return [("| infer task vs a plain", f"{data['speedup_vs_plain_best']['A executor infer task']:.2f}x on real-sized JPEGs, best "
             f"against best of {len(rounds)} rounds (per round {min(rounds):.2f}x-{max(rounds):.2f}x")]


def infer_small_readme(data: dict) -> list[Figure]:
    rounds = data["speedup_vs_plain_per_round"]["A executor infer task"]
    return [("| infer task vs a plain", f"{data['speedup_vs_plain_best']['A executor infer task']:.2f}x best against best, "
             f"median {statistics.median(rounds):.2f}x per round")]


def training(data: dict) -> list[Figure]:
    place = "with the same arguments"
    return [(place, f"best against best **{data['ratio_best']:.3f}x**"),
            (place, f"the three runs {min(data['ratio_per_run']):.3f}x-{max(data['ratio_per_run']):.3f}x")]


def mining_cost(data: dict) -> list[Figure]:
    joint = {k: v for k, v in data["vs_infer_alone"].items() if k.endswith("+ infer") and "cald" not in k}
    place = data["name"]
    return [(place, f"{min(joint.values()):.2f}x to {max(joint.values()):.2f}x"),
            (place, f"`cald` {data['vs_infer_alone']['mining cald + infer']:.1f}x")]


def mining_cost_one(data: dict) -> list[Figure]:
    """One algorithm's run (``--algorithms A --joint-only``): its mining + infer against infer alone."""
    (ratio,) = data["vs_infer_alone"].values()
    return [(data["name"], f"+ infer **{ratio:.2f}x** infer alone")]


def conversion(data: dict) -> list[Figure]:
    return [("lines/s (voc)", f"{data['lines'] / data['seconds'][fmt]:,.0f} lines/s ({fmt})") for fmt in ("ark", "voc")]


def memory(data: dict) -> list[Figure]:
    ends = [row["end"][1] / row["end"][0] for row in data["rss_mb"]]
    peaks = [row["peak"][1] / row["peak"][0] for row in data["rss_mb"]]
    place = {"memory-200.json": "from 200 to 2,000 candidates", "memory-2000.json": "2,000 and 20,000 candidates"}[data["name"]]
    return [(place, f"end-of-run RSS grew **{min(ends):.2f}x-{max(ends):.2f}x**"), (place, f"the peak {min(peaks):.2f}x-{max(peaks):.2f}x")]


def memory_runs(data: dict) -> list[Figure]:
    """Each run's end-of-run growth, named as the docs name it ("`ppal` 1.00x", "infer 1.01x")."""
    names = {"infer": "infer", "mining (entropy)": "`entropy`", "mining (diversity)": "`diversity`",
             "mining (ppal)": "`ppal`", "mining + infer (aldd)": "`aldd` mining + infer"}
    return [("2,000 and 20,000 candidates", f"{names[row['run']]} {row['end'][1] / row['end'][0]:.2f}x") for row in data["rss_mb"]]


def memory_scale(data: dict) -> list[Figure]:
    """Issue 43, item 3: per run, time per candidate and end-of-run RSS at 20,000 and 100,000, one row each."""
    names = {"infer": "| infer |", "mining (diversity)": "| `diversity` mining |",
             "mining + infer (ppal)": "| `ppal` mining + infer, before pruning |" if "before" in data["name"]
             else "| `ppal` mining + infer, pruning (0949ad4) |"}
    if "trim" in data["name"]:
        names = {"mining + infer (ppal)": "| `ppal` mining + infer, trimmed (d309dbc) |",
                 "mining (diversity)": "| `diversity` mining, trimmed (d309dbc) |"}
    n, n10 = data["candidates"]
    out = []
    for rss, wall in zip(data["rss_mb"], data["wall_s"], strict=True):
        (a, b), (ea, eb) = wall["wall"], rss["end"]
        out.append((names[rss["run"]], f"| {1000 * a / n:.2f} | {1000 * b / n10:.2f} | {b / n10 / (a / n):.2f}x | {ea:.0f} MB | "
                    f"{eb:.0f} MB | {eb / ea:.2f}x |"))
    return out


def memory_mmap(data: dict) -> list[Figure]:
    """The allocator run beside the default one (``memory-20000-100000.json``) at 20,000 candidates."""
    (ea, eb), (wa, _), n = data["rss_mb"][0]["end"], data["wall_s"][0]["wall"], data["candidates"][0]
    other = load("memory-20000-100000.json")
    assert other["candidates"][0] == n  # the same pool size, so the two times compare
    default = other["wall_s"][0]["wall"][0] / n
    return [("`MALLOC_MMAP_THRESHOLD_=65536` in the environment", f"ended at {ea:.0f} MB and {eb:.0f} MB, **{eb / ea:.2f}x**"),
            ("so that setting is no fix", f"{1000 * wa / n:.2f} ms a candidate at {n:,}, {wa / n / default:.2f}x the "
             f"{1000 * default:.2f} ms")]


def memory_trim_peaks(data: dict) -> list[Figure]:
    peaks = [row["peak"][1] / row["peak"][0] for row in data["rss_mb"]]
    ends = [row["end"][1] / row["end"][0] for row in data["rss_mb"]]
    return [("The peak grew", f"{peaks[0]:.2f}x for `ppal` and {peaks[1]:.2f}x for `diversity`"),
            ("| 3. memory from N to 10 x N candidates |", f"{min(ends):.2f}x-{max(ends):.2f}x (20,000 to 100,000")]


def memory_trim_readme(data: dict) -> list[Figure]:
    n, n10 = data["candidates"]
    (ppal, diversity), walls = data["rss_mb"], [w["wall"][1] / n10 / (w["wall"][0] / n) for w in data["wall_s"]]
    return [("| memory from 20,000 to 100,000 candidates |", f"end of run `ppal` mining + infer {ppal['end'][1] / ppal['end'][0]:.2f}x, "
             f"`diversity` {diversity['end'][1] / diversity['end'][0]:.2f}x, time per candidate {min(walls):.2f}x-{max(walls):.2f}x")]


def memory_workers(data: dict) -> list[Figure]:
    """The second run of the trimmed code, which also recorded the decoding workers' PSS."""
    (ea, eb), (wa, wb) = data["rss_mb"][0]["end"], data["workers_pss_mb"][0]["peak"]
    return [("A second run of the trimmed code", f"from {ea:.0f} MB to {eb:.0f} MB, {eb / ea:.2f}x"),
            ("So one run each way", f"1.04x-{eb / ea:.2f}x with the trim"),
            ("The decoding workers stay flat", f"{wa:.0f} MB at 20,000 candidates and {wb:.0f} MB at 100,000, {wb / wa:.2f}x"),
            ("| 3. memory from N to 10 x N candidates |", f"a second `ppal` run {eb / ea:.2f}x, {data['commit']}")]


def memory_workers_readme(data: dict) -> list[Figure]:
    (ea, eb) = data["rss_mb"][0]["end"]
    return [("| memory from 20,000 to 100,000 candidates |", f"a second `ppal` run {eb / ea:.2f}x ({data['commit']}")]


def memory_alternated(data: dict) -> list[Figure]:
    """One of the four alternated runs with and without the heap trim: its row, time and RSS growth."""
    (wa, wb), (ea, eb) = data["wall_s"][0]["wall"], data["rss_mb"][0]["end"]
    return [(f"| {data['name'][-6]} | {data['commit']} |", f"| {wa:.1f} s | {wb:.1f} s | {ea:.0f} MB | {eb:.0f} MB | {eb / ea:.2f}x |")]


def memory_large(data: dict) -> list[Figure]:
    rows = data["pss_mb"]
    place = "Most PSS added in the main process"
    return [(place, "sliced **" + " / ".join(f"{row['sliced_main']:.0f}" for row in rows) + " MB**"),
            (place, "plain " + " / ".join(f"{row['plain_main']:.0f}" for row in rows) + " MB")]


def sliced_speed(data: dict) -> list[Figure]:
    rounds = data["speed_b_over_c_per_round"]
    place = "sliced infer ran"
    return [(place, f"**{data['speed_b_over_c']:.2f}x SAHI's speed**"), (place, f"per round {min(rounds):.2f}x-{max(rounds):.2f}x"),
            (place, f"{data['cost_b_over_a']:.1f}x whole-image infer"),
            (place, f"sliced **{data['b']['infer_seconds_per_image']:.2f} s/image**")]


def mixed_sizes(data: dict) -> list[Figure]:
    row = "| (b) sliced training + sliced infer |"
    return [("(b) / (a+) |", f"{data['large_ratio_b_over_a+']:.2f}x"), ("(b) / (b0) |", f"{data['large_ratio_b_over_b0']:.2f}x"),
            (row, f"{data['b']['large']:.3f}"), (row, f"{data['b']['small']:.3f}"),
            ("| (c) SAHI + Ultralytics", f"{data['c']['large']:.3f}"),
            ("entries,", f"{data['sliced_training_images']} / " if data["seed"] == 0 else f"/ {data['sliced_training_images']} entries")]


def cpu_threads(data: dict) -> list[Figure]:
    best = {n: min(runs) for n, runs in data["seconds"].items()}
    place = "| infer, best of" if "infer" in data["name"] else "| training, best of"
    return [(place, f"**{data['vs_1_thread_best']['8']:.2f}x**"), (place, f"{best['1']:.2f} s"), (place, f"{best['8']:.2f} s")]


def shared_memory(data: dict) -> list[Figure]:
    ratio = data["vs_M_best"]
    place = "A **"
    return [(place, f"A **{ratio['A ample /dev/shm, workers -1']:.2f}x** M"),
            (place, f"P **{ratio['P 64m /dev/shm, workers -1 (by pipe)']:.2f}x** M")]


PHOTO = {"750": "3000", "1500": "6000", "3000": "12000"}  # the grid's image sizes and the photos they stand for at 640


def grid_pair(key: str, value) -> str:  # noqa: ANN001 - a function of one seed's JSON
    """One figure of both seeds of the slicing grid, as its table writes it: 'seed 0 / seed 1'."""
    return " / ".join(value(load(f"slicing-grid-seed-{seed}.json")) for seed in (0, 1))


def grid_lowest() -> str:
    return f"{min(c['ratio']['default'] for s in (0, 1) for c in load(f'slicing-grid-seed-{s}.json')['cells'].values()):.2f}x"


def slicing_grid(data: dict) -> list[Figure]:
    """Issue 42's grid: every cell's row with both seeds' AP@0.5 of each arm and the default's ratio, the control."""
    if data["seed"] != 0:
        return [("higher-scoring whole-image object", "met |")]
    out = []
    for size in PHOTO:
        for band in ("under_overlap", "overlap_window", "window_whole", "large"):
            row = f"| {size} px ({PHOTO[size]} at 640) | `{band}`"
            for arm in ("whole", "tiles", "default"):
                out.append((row, grid_pair(arm, lambda d, a=arm, s=size, b=band: f"{d['arms'][a]['ap50'][s][b]:.3f}")))
            out.append((row, grid_pair("ratio", lambda d, s=size, b=band: f"{d['cells'][f'{s}/{b}']['ratio']['default']:.2f}x")))
    control = "**Positive control**"
    out += [(control, grid_pair("c", lambda d: f"{d['control']['tiles_under_overlap_750']:.3f}")),
            (control, grid_pair("c", lambda d: f"{d['control']['whole_large_750']:.3f}")),
            ("met on both seeds** (lowest", f"(lowest {grid_lowest()}"), ("| 7. objects of every size", f"lowest {grid_lowest()}")]
    seconds = {arm: grid_pair(arm, lambda d, a=arm: f"{d['arms'][a]['infer_seconds_per_image']:.2f}")
               for arm in ("whole", "tiles", "default")}
    out += [("Cost per image", f"whole-image {seconds['whole']} s, tiles only {seconds['tiles']} s, the default {seconds['default']} s")]
    return out


def slicing_grid_readme(data: dict) -> list[Figure]:
    return [("| slicing: the default vs", f"at least {grid_lowest()} in every cell"),
            ("in every cell the default keeps at least", grid_lowest())]


def slicing_grid_tasks(data: dict) -> list[Figure]:
    return [("kept at least", f"kept at least {grid_lowest()} of the better")]


def grid_failures(data: dict, arm: str = "default") -> list[tuple[str, float]]:
    return [(cell, ratio[arm]) for cell, ratio in ((k, v["ratio"]) for k, v in data["cells"].items())
            if ratio[arm] is not None and ratio[arm] < 0.9]


def slicing_grid_rule_32(data: dict) -> list[Figure]:
    """The first rule's failing cells on a reported seed, as the rules table names them."""
    return [("no cap at a tile", f"{cell.split('/')[0]} px `{cell.split('/')[1]}` {ratio:.2f}x (seed {data['seed']})")
            for cell, ratio in grid_failures(data)]


def slicing_grid_pilot(data: dict) -> list[Figure]:
    """The pilot seed's runs: cells below 0.9x per rule and threshold, as the rules table counts them."""
    arms = sorted(data["target_met"], key=lambda a: int(a.split("@")[1]) if "@" in a else data["whole_min"])
    if "rule-32" in data["name"]:
        counts = " / ".join(str(len(grid_failures(data, a))) for a in arms if a != "default")
        return [("no cap at a tile", f"| {len(grid_failures(data))} (lowest {min(r for _, r in grid_failures(data)):.2f}x) |"),
                ("the same at 8 / 16 / 64 / 128 px", f"| {counts} |")]
    if "rule-cap" in data["name"]:
        counts = " / ".join(str(len(grid_failures(data, a))) for a in arms)
        worst = data["cells"]["3000/window_whole"]["ratio"]["default"]
        return [("capped at a tile", f"| {counts} (3000 px `window_whole` {worst:.2f}x in each)")]
    lowest = " / ".join(f"{min(c['ratio'][a] for c in data['cells'].values()):.2f}x" for a in arms)
    return [("higher-scoring whole-image object", f"none at 16 / 24 / 32 (lowest {lowest}")]


def whole_views(data: dict) -> list[Figure]:
    out = []
    for size, row in data["sizes"].items():
        place = f"{size[:-2]} MP took"
        out.append((place, f"**{row['before_median']:.1f} s before, {row['after_median']:.1f} s after ({row['speedup']:.1f}x)**"))
        out.append((place, f"{row['entries']} entries of which {row['whole_views']} whole views"))
    return out


def conversion_memory(data: dict) -> list[Figure]:
    arms = data["arms"]
    place = "one decoded image per thread"
    return [(place, f"**{arms['before (budget lifted)']['beyond_baseline_mib']:.0f} MiB**"),
            (place, f"**{arms['after (DECODED_BUDGET)']['beyond_baseline_mib']:.0f} MiB**"),
            ("peak RSS from", f"({arms['after (DECODED_BUDGET)']['baseline_mib']:.0f} MiB")]


# (doc, raw result, the figures as the doc writes them)
def sliced_mining_rule(data: dict) -> list[Figure]:
    """Errors and full/half Spearman of the mean reduction, before (its own JSON) and with the rule, in one row."""
    before = load(data["name"].replace("-after-", "-before-"))
    out = []
    for algorithm in ("ppal", "diversity"):
        b, a = before["arms"][f"{algorithm}/mean"], data["arms"][f"{algorithm}/mean"]
        out.append((f"| {data['seed']} | {algorithm} |", f"| {b['errors_spearman']:.3f} | **{a['errors_spearman']:.3f}** | "
                    f"{b['full_half_spearman']:.3f} | {a['full_half_spearman']:.3f} |"))
    return out


FIGURES = [
    ("docs/benchmarks.md", "infer-small-305-96px-cpu.json", infer_small),
    ("docs/benchmarks.md", "infer-throughput-photos-96-320px-cpu.json", infer_photos),
    ("README.md", "infer-throughput-photos-96-320px-cpu.json", infer_photos_readme),
    ("README.md", "infer-small-305-96px-cpu.json", infer_small_readme),
    ("docs/benchmarks.md", "training-overhead-128px-3ep-cpu.json", training),
    ("docs/benchmarks.md", "mining-cost-photos-96-320px-cpu.json", mining_cost),
    ("docs/benchmarks.md", "mining-cost-photos-96-640px-cpu.json", mining_cost),
    ("docs/benchmarks.md", "mining-cost-photos-96-640px-cpu-ppal-typical.json", mining_cost_one),
    ("docs/benchmarks.md", "conversion-100000.json", conversion),
    ("docs/benchmarks.md", "memory-200.json", memory),
    ("docs/benchmarks.md", "memory-2000.json", lambda data: memory(data) + memory_runs(data)),
    ("docs/benchmarks.md", "memory-large.json", memory_large),
    ("docs/benchmarks.md", "memory-20000-100000-before-pruning.json", memory_scale),
    ("docs/benchmarks.md", "memory-20000-100000.json", memory_scale),
    ("docs/benchmarks.md", "memory-20000-60000-mmap-threshold-65536.json", memory_mmap),
    ("docs/benchmarks.md", "memory-20000-100000-trim.json", lambda data: memory_scale(data) + memory_trim_peaks(data)),
    ("README.md", "memory-20000-100000-trim.json", memory_trim_readme),
    ("docs/benchmarks.md", "memory-20000-100000-workers.json", memory_workers),
    ("README.md", "memory-20000-100000-workers.json", memory_workers_readme),
    *[("docs/benchmarks.md", f"memory-2000-20000-alternated-{run}.json", memory_alternated) for run in (1, 2, 3, 4)],
    ("docs/benchmarks.md", "small-objects-speed-full.json", sliced_speed),
    ("docs/benchmarks.md", "cpu-threads-infer.json", cpu_threads),
    ("docs/benchmarks.md", "shared-memory-64m-640px.json", shared_memory),
    ("docs/benchmarks.md", "cpu-threads-training.json", cpu_threads),
    *[("docs/benchmarks.md", f"small-objects-mixed-whole-views-seed-{seed}.json", mixed_sizes) for seed in (0, 1)],
    *[("docs/benchmarks.md", f"slicing-grid-seed-{seed}.json", slicing_grid) for seed in (0, 1)],
    ("README.md", "slicing-grid-seed-0.json", slicing_grid_readme),
    ("docs/tasks.md", "slicing-grid-seed-0.json", slicing_grid_tasks),
    *[("docs/benchmarks.md", f"slicing-grid-rule-32-seed-{seed}.json", slicing_grid_rule_32) for seed in (0, 1)],
    *[("docs/benchmarks.md", f"slicing-grid-pilot-seed-100{rule}.json", slicing_grid_pilot) for rule in ("-rule-32", "-rule-cap", "")],
    ("docs/benchmarks.md", "whole-views-loading-cpu.json", whole_views),
    *[("docs/benchmarks.md", f"sliced-mining-rule-after-seed-{seed}.json", sliced_mining_rule) for seed in (1000, 1001)],
    ("docs/benchmarks.md", "conversion-memory-6x100-200MP-16-threads.json", conversion_memory),
]


def places(doc: str) -> list[str]:
    """A doc's table rows and sentences, each as it reads (its lines joined): where a figure is quoted. A figure
    found anywhere in a doc proves little ("1.00x" is in many rows), so each is looked for in its own place."""
    out = []
    for block in re.split(r"\n\s*\n", (ROOT / doc).read_text()):
        lines = block.splitlines()
        if lines and all(line.lstrip().startswith("|") for line in lines):
            out += [" ".join(line.split()) for line in lines]
        else:
            out += re.split(r"(?<=[.:;])\s+(?=[A-Z*(`\[!])", " ".join(block.split()))
    return out


def quoted_in_place(doc: str, place: str, figure: str) -> bool:
    """Whether one table row or sentence of ``doc`` holds both ``place`` (words that name it) and ``figure``."""
    return any(place in where and figure in where for where in places(doc))


@pytest.mark.parametrize(("doc", "name", "figures"), FIGURES, ids=[f[1] for f in FIGURES])
def test_the_docs_quote_the_raw_results(doc, name, figures):
    text = read_doc(doc)
    data = {**load(name), "name": name}
    assert name in text, f"{doc} does not cite bench/results/{name}"
    for place, figure in figures(data):
        assert quoted_in_place(doc, place, figure), \
            f"{doc} has no row or sentence with {place!r} saying {figure!r} (from bench/results/{name})"
    assert data["commit"] in text, f"{doc} does not name the commit {data['commit']} that {name} measured"


def test_a_figure_is_looked_for_in_its_own_row_or_sentence():
    """The check fails for a figure the doc has elsewhere but not where it belongs."""
    assert quoted_in_place("docs/benchmarks.md", "| B plain `YOLO.predict` loop |", "1.00x")
    assert not quoted_in_place("docs/benchmarks.md", "| A executor infer task |", "1.00x")
    assert not quoted_in_place("docs/benchmarks.md", "Per round A ran", "**2.20x**")


def test_every_saved_raw_result_is_cited_and_names_its_machine_and_commit():
    docs = " ".join(read_doc(doc) for doc in DOCS)
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())  # every raw result parses
        if isinstance(data, dict) and "benchmark" in data:  # written by common.save_result
            assert data["machine"] and data["commit"], path.name
            assert path.name in docs, f"no doc cites bench/results/{path.name}"


def rounds_summary(names: list[str]) -> dict:
    """``report_rounds`` (bench/active_learning.py) over the seeds of these raw results."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from active_learning import report_rounds

    return report_rounds([r for name in names for r in load(name)["results"]])


def merged_summary(names: list[str], drop: tuple[str, ...] = (), only: list[str] | None = None) -> tuple[list[dict], dict]:
    """The seeds of these raw results merged as ``--report`` merges them (an arm run again at another commit is
    ``ARM@COMMIT``), less the arms in ``drop``, or only the arms in ``only`` (``--only``): the results and
    ``report_rounds``' summary of them."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from active_learning import merge_rounds, only_arms, report_rounds

    results = [{**r, "rounds": {a: h for a, h in r["rounds"].items() if a not in drop}}
               for r in only_arms(merge_rounds([load(name) for name in names]), only)]
    return results, report_rounds(results)


def large_pilot_with(*runs: str) -> tuple[list[dict], dict]:
    """The large-pool pilot's arms (seeds 500 and 501, its ``diversity`` left out) beside a lever's runs of ``ppal``."""
    return merged_summary([f"rounds-large-{run}pilot-{s}.json" for run in ("", *runs) for s in (500, 501)], ("diversity",))


def gain_cells(summary: dict, arm: str) -> tuple[str, list[float]]:
    """An arm's table cells, ``| mAP (gain over the random mean) | ...`` per round, and those gains."""
    mean, rand = summary["arms"][arm]["mean"], summary["arms"]["random"]["mean"]
    gains = [m - r for m, r in zip(mean[1:], rand[1:], strict=True)]
    return "| " + " | ".join(f"{m:.4f} ({g:+.4f})" for m, g in zip(mean[1:], gains, strict=True)) + " |", gains


def per_seed_savings(summary: dict, arm: str) -> str:
    """An arm's label savings per seed against each seed's random draw (``report_rounds``' ``per_seed_savings``), as
    the docs list them."""
    return " and ".join(percent(v) for v in summary["arms"][arm]["per_seed_savings"])


def span(values: list[int]) -> str:
    """A range as the docs write it: ``low-high``, or one value when they are equal."""
    return f"{min(values)}-{max(values)}" if min(values) < max(values) else f"{min(values)}"


def percent(share: float) -> str:
    return f"{share:.0%}".replace("%", " %")


def test_the_rounds_pilot_figures_are_those_of_its_raw_results():
    """The label savings and the control of the active-learning rounds pilot, recomputed from its two JSONs."""
    summary = rounds_summary([f"rounds-pilot-{s}.json" for s in (400, 401)])
    bench = read_doc("docs/benchmarks.md")
    saved = percent(summary["arms"]["ppal"]["label_savings"])
    assert f"**{saved}** fewer mined labels" in bench
    assert f"{summary['arms']['diversity']['label_savings']:.0%}".replace("%", " %") in bench
    floors = summary["floors"]
    oracle = statistics.mean(summary["arms"]["oracle"]["mean"][1:]) - statistics.mean(summary["arms"]["random"]["mean"][1:])
    assert f"**{oracle / statistics.mean(floors):.1f}x**" in bench and f"+{oracle:.4f}" in bench
    assert all(not a["below_random_in_rounds"] for a in summary["arms"].values())
    assert "rounds-pilot-400.json" in bench and "active-learning-rounds-pilot.png" in bench


def test_the_large_pool_pilot_control_is_that_of_its_raw_results():
    """The large-pool pilot's control (issue 43), recomputed from its two JSONs over the control arms (the arms
    after them may hold fewer rounds: the JSON is written as rounds end)."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from active_learning import report_rounds

    quoted = ("random", "random:1", "oracle", "ppal")
    results = [{**r, "rounds": {a: h for a, h in r["rounds"].items() if a in quoted}}
               for s in (500, 501) for r in load(f"rounds-large-pilot-{s}.json")["results"]]
    summary = report_rounds(results)
    rows = {row.split("|")[1].strip(): row for row in places("docs/benchmarks.md") if "| 0.3351 |" in row}
    assert set(rows) == {"random (mean of 2 draws)", "oracle", "ppal (default)"}, rows
    for arm, row in rows.items():
        mean = summary["arms"][arm.split()[0]]["mean"]
        assert all(f"{m:.4f}" in row for m in mean), (arm, mean)
    floors = summary["floors"]
    oracle = statistics.mean(summary["arms"]["oracle"]["mean"][1:]) - statistics.mean(summary["arms"]["random"]["mean"][1:])
    place = "The control passes**: the oracle's gain averaged over the rounds"
    assert quoted_in_place("docs/benchmarks.md", place, f"+{oracle:.4f}, is **{oracle / statistics.mean(floors):.1f}x**")
    assert quoted_in_place("docs/benchmarks.md", place, f"({statistics.mean(floors):.4f}; per round "
                           f"{', '.join(f'{f:.4f}' for f in floors)})")
    assert oracle / statistics.mean(floors) >= 3
    savings = percent(summary["arms"]["oracle"]["label_savings"])
    assert quoted_in_place("docs/benchmarks.md", "The oracle reaches random's final mAP@0.5", f"{savings} fewer mined labels")
    ppal = summary["arms"]["ppal"]
    assert quoted_in_place("docs/benchmarks.md", "`ppal` reaches random's final mAP@0.5",
                           f"{percent(ppal['label_savings'])} fewer mined labels (per seed {per_seed_savings(summary, 'ppal')};")
    shares = summary["default_share_of_oracle"]
    assert quoted_in_place("docs/benchmarks.md", "ahead of random in every round on both seeds",
                           f"{min(shares):.2f} to {max(shares):.2f} of the oracle's gain")
    picks = {arm: [h["picks"] for r in results for h in r["rounds"][arm]] for arm in ("random", "random:1", "ppal")}
    dup = {arm: [p["duplicates"] for p in picks[arm]] for arm in picks}
    empty = {arm: [p["empty"] for p in picks[arm]] for arm in picks}
    rand_dup, rand_empty = dup["random"] + dup["random:1"], empty["random"] + empty["random:1"]
    assert quoted_in_place("docs/benchmarks.md", "Its picks hold",
                           f"{min(dup['ppal'])}-{max(dup['ppal'])} near-duplicates of 75 per round (random "
                           f"{min(rand_dup)}-{max(rand_dup)}) and no empty frame (random {min(rand_empty)}-{max(rand_empty)})")
    assert max(empty["ppal"]) == 0


def test_the_labelled_bank_pilot_figures_are_those_of_its_raw_results():
    """The labelled bank's pilot (issue 43, item 2): its arm beside the pilot's, merged as ``--report`` merges them;
    its copies of labelled scenes counted from the cached picks; the rule that removed it."""
    _, summary = large_pilot_with("bank-")
    gains = {}
    for arm, place in (("ppal", "| `ppal`, the pilot (b697599) |"), ("ppal@ba9b141", "| `ppal` with the bank (ba9b141) |")):
        cells, per_round = gain_cells(summary, arm)
        assert quoted_in_place("docs/benchmarks.md", place, cells), (arm, cells)
        gains[arm] = statistics.mean(per_round[1:])  # rounds 2-4
    place = "its gain over random averaged over rounds 2-4"
    assert quoted_in_place("docs/benchmarks.md", place, f"is {gains['ppal@ba9b141']:+.4f}, plain `ppal`'s {gains['ppal']:+.4f}")
    assert gains["ppal@ba9b141"] < gains["ppal"]  # the rule written before the run: not kept
    for arm, said in (("ppal@ba9b141", "with the bank"), ("ppal", "without")):
        assert quoted_in_place("docs/benchmarks.md", "Label savings to random's final mAP@0.5",
                               f"{percent(summary['arms'][arm]['label_savings'])} {said} (per seed {per_seed_savings(summary, arm)})")
    copies = load("labelled-copies-large-pilot.json")["copies"]

    def rounds_2_4(seed: str, commit: str, arm: str) -> list[int]:
        return [r["of_labelled_scenes"] for r in copies[seed][commit][arm][1:]]

    def both(commit: str, arm: str) -> str:
        return " and ".join(", ".join(map(str, rounds_2_4(seed, commit, arm))) for seed in ("500", "501"))

    place = "Fewer copies of labelled scenes"
    held = sum(sum(rounds_2_4(seed, "ba9b141", "ppal")) for seed in ("500", "501"))
    plain = sum(sum(rounds_2_4(seed, "b697599", "ppal")) for seed in ("500", "501"))
    with_bank = both("ba9b141", "ppal").replace(" and ", " (seed 500) and ", 1)
    assert quoted_in_place("docs/benchmarks.md", place, f"rounds 2-4, {with_bank} (seed 501)")
    assert quoted_in_place("docs/benchmarks.md", place, f"plain `ppal`'s {both('b697599', 'ppal')}")
    assert quoted_in_place("docs/benchmarks.md", place, f"(the oracle: {both('b697599', 'oracle')})")
    assert quoted_in_place("docs/benchmarks.md", place, f": {held} against {plain}.")
    assert quoted_in_place("docs/benchmarks.md", "copies it held back over both seeds", f"The {plain - held} copies")


def test_the_sampling_pilot_figures_are_those_of_its_raw_results():
    """Sampling by score (issue 43, item 2): its arm beside the pilot's, merged as ``--report`` merges them; the
    rule that removed it; the picks' digits, near-duplicates and empty frames per round."""
    results, summary = large_pilot_with("sampling-")
    gains = {}
    for arm, place in (("ppal", "| `ppal`, the pilot (b697599) |"), ("ppal@e2048d0", "| `ppal` sampled by score (e2048d0) |")):
        cells, per_round = gain_cells(summary, arm)
        assert quoted_in_place("docs/benchmarks.md", place, cells), (arm, cells)
        gains[arm] = statistics.mean(per_round)
    place = "Less gain in every round"
    assert quoted_in_place("docs/benchmarks.md", place, f"{gains['ppal@e2048d0']:+.4f} over random against plain `ppal`'s "
                                                        f"{gains['ppal']:+.4f}")
    assert gains["ppal@e2048d0"] < gains["ppal"]  # the rule written before the run: not kept
    for arm, said in (("ppal@e2048d0", "sampled"), ("ppal", "plain")):
        assert quoted_in_place("docs/benchmarks.md", "Label savings to random's final mAP@0.5",
                               f"{percent(summary['arms'][arm]['label_savings'])} {said} (per seed {per_seed_savings(summary, arm)})")

    def spread(arms: tuple[str, ...], key: str) -> str:
        values = [h["picks"][key] for r in results for a in arms for h in r["rounds"][a]]
        return f"{min(values)}-{max(values)}"

    place = "Why, as the picks show it"
    randoms = ("random", "random:1")
    assert quoted_in_place("docs/benchmarks.md", place, f"{spread(('ppal@e2048d0',), 'digits')} digits sampled against plain "
                                                        f"`ppal`'s {spread(('ppal',), 'digits')} (random {spread(randoms, 'digits')})")
    assert quoted_in_place("docs/benchmarks.md", place, f"{spread(('ppal@e2048d0',), 'duplicates')} near-duplicates against "
                                                        f"{spread(('ppal',), 'duplicates')} (random {spread(randoms, 'duplicates')})")
    assert quoted_in_place("docs/benchmarks.md", place, f"{spread(('ppal@e2048d0',), 'empty')} empty frames against none "
                                                        f"(random {spread(randoms, 'empty')})")
    assert spread(("ppal",), "empty") == "0-0"


def test_the_typical_first_pilot_figures_are_those_of_its_raw_results():
    """Typical images first (issue 43, item 2): both its runs beside the pilot's arms, merged as ``--report`` merges
    them; the rule that sends it to the full run; its picks; the cost of its stage 2."""
    results, summary = large_pilot_with("typical-", "typical2-")
    plain = summary["arms"]["ppal"]["mean"]
    plain_gain = statistics.mean(gain_cells(summary, "ppal")[1])
    gains = {}
    for arm, commit, named in (("ppal@103d6be", "103d6be", " typical first"), ("ppal@9fa9686", "9fa9686", "")):
        mean = summary["arms"][arm]["mean"]
        cells, per_round = gain_cells(summary, arm)
        assert quoted_in_place("docs/benchmarks.md", f"| `ppal`, typical first ({commit}) |", cells), (arm, cells)
        gains[arm] = statistics.mean(per_round)
        below = [p - m for m, p, floor in zip(mean[1:], plain[1:], summary["floors"], strict=True) if p - m > floor]
        assert gains[arm] > plain_gain and not below  # kept
        said = f"{percent(summary['arms'][arm]['label_savings'])}{named} (per seed {per_seed_savings(summary, arm)})"
        assert quoted_in_place("docs/benchmarks.md", "Label savings", said), (arm, said)
    assert quoted_in_place("docs/benchmarks.md", "More gain, in rounds 2 and 3 mostly", f"{gains['ppal@103d6be']:+.4f} over random")
    assert quoted_in_place("docs/benchmarks.md", "Averaged over rounds 1-4", f"{gains['ppal@9fa9686']:+.4f} over random")
    new, old = summary["arms"]["ppal@9fa9686"]["mean"], summary["arms"]["ppal@103d6be"]["mean"]
    assert quoted_in_place("docs/benchmarks.md", "in round 4 it is", f"{plain[4] - new[4]:.4f} below plain")
    assert quoted_in_place("docs/benchmarks.md", "in round 4 it is", f"noise floor ({summary['floors'][3]:.4f})")
    spread = max(abs(a - b) for a, b in zip(new[1:], old[1:], strict=True))
    assert quoted_in_place("docs/benchmarks.md", "Its two runs", f"differ by up to {spread:.4f} in a round")
    picks = [h["picks"] for r in results for h in r["rounds"]["ppal@9fa9686"]]
    dups, empty = [p["duplicates"] for p in picks], [p["empty"] for p in picks]
    assert quoted_in_place("docs/benchmarks.md", "Its picks hold", f"{min(dups)}-{max(dups)} near-duplicates of 75 per round")
    assert quoted_in_place("docs/benchmarks.md", "Its picks hold", f"and {min(empty)}-{max(empty)} empty frames")
    stage2 = load("ppal-stage2.json")
    five, twenty = stage2["runs"]
    place = "Its cost"
    assert quoted_in_place("docs/benchmarks.md", place, f"stage 2 took {five['stage2_s']:.1f} s")
    assert quoted_in_place("docs/benchmarks.md", place, f"and {twenty['stage2_s']:.1f} s with 20")
    assert quoted_in_place("docs/benchmarks.md", place, f"the typicality {five['typicality_share']:.0%} and "
                                                        f"{twenty['typicality_share']:.0%}".replace("%", " %"))


LARGE_SEEDS = range(500, 508)
LARGE_ARMS = {"random": "random (mean of 2 draws)", "oracle": "oracle", "ppal": "`ppal`, plain (aad09be)",
              "ppal@9fa9686": "`ppal`, typical first (9fa9686)"}
DIVERSITY_LABEL = "`diversity` (seeds 502-507)"


def large_full_names(seeds=LARGE_SEEDS) -> list[str]:
    """The large-pool full run's raw results: the pilot's seeds (500, 501, with their typical-first runs), then seeds
    502-507 (planned arms, typical first)."""
    return [name for s in seeds for name in (
        (f"rounds-large-pilot-{s}.json", f"rounds-large-typical2-pilot-{s}.json")
        if s < 502 else (f"rounds-large-full-{s}.json", f"rounds-large-full-typical-{s}.json"))]


def seed_gains(summary: dict, arm: str) -> list[list[float]]:
    """Per round (1 on), each seed's gain of ``arm`` over that seed's random mean."""
    found, rand = summary["arms"][arm], summary["arms"]["random"]
    return [[c[i] - b[i] for c, b in zip(found["per_seed"], rand["per_seed"], strict=True)] for i in range(1, len(found["mean"]))]


def mean_row(summary: dict, arm: str, label: str) -> str:
    """An arm's table row of mean mAP per labelled count, with (gain over the random mean, seeds ahead) after round 0."""
    mean = summary["arms"][arm]["mean"]
    cells = [f"{m:.4f}" if arm == "random" else f"{m:.4f} ({statistics.mean(g):+.4f}, {sum(x > 0 for x in g)}/{len(g)})"
             for m, g in zip(mean[1:], seed_gains(summary, arm), strict=True)]
    return f"| {label} | {mean[0]:.4f} | " + " | ".join(cells) + " |"


def large_rows(summary: dict, arm: str, label: str, rows: set[str]) -> None:
    """An arm's row of mean mAP (gain, seeds ahead) and its row of label savings are in the doc, it is ahead of
    random on every seed in every round, and never below random."""
    found = summary["arms"][arm]
    assert arm == "random" or all(g > 0 for gains in seed_gains(summary, arm) for g in gains)  # on every seed, every round
    assert mean_row(summary, arm, label) in rows, arm
    if arm == "random":
        return
    assert not found["below_random_in_rounds"]
    low, high = found["savings_interval_90"]
    seeds = found["per_seed_savings"]
    row = (f"| {label} | {percent(found['label_savings'])} | {found['label_savings'] * 300:.0f} "
           f"({found['label_savings'] * 4:.1f}) | {percent(low)} to {percent(high)} | "
           + ", ".join(f"{100 * v:.0f}" for v in seeds) + f" | {100 * min(seeds):.0f}-{percent(max(seeds))} |")
    assert row in rows, row


def picks_row(label: str, kinds: dict) -> str:
    return f"| {label} | " + " | ".join(", ".join(f"{statistics.mean(v):.1f} ({min(v)}-{max(v)})" for v in kinds[k])
                                         for k in ("duplicates", "empty")) + " |"


def test_the_large_pool_full_run_is_quoted_from_its_raw_results():
    """Issue 43, item 1: per arm and round the mean mAP, gain and seeds ahead; the control; the label savings with
    their interval and per-seed values; the near-duplicates and empty frames of each round's picks; no arm below
    random. All recomputed from the raw results (8 seeds; `diversity` on 502-507), each figure in its own row or
    sentence."""
    results, summary = merged_summary(large_full_names(), ("diversity",))
    _, six = merged_summary(large_full_names(range(502, 508)))
    arms, rand = summary["arms"], summary["arms"]["random"]
    assert sorted(r["seed"] for r in results) == list(LARGE_SEEDS) and set(arms) == set(LARGE_ARMS)
    rows = set(places("docs/benchmarks.md"))
    for arm, label in LARGE_ARMS.items():
        large_rows(summary, arm, label, rows)
    large_rows(six, "diversity", DIVERSITY_LABEL, rows)
    for arm, kinds in summary["picks"].items():
        assert picks_row(LARGE_ARMS.get(arm, arm) if arm not in ("random", "random:1") else arm, kinds) in rows, arm
    assert picks_row(DIVERSITY_LABEL, six["picks"]["diversity"]) in rows
    place = "The control passes"
    headroom = ", ".join(f"{h:.1f}x" for h in summary["oracle_headroom_in_floors"])
    assert quoted_in_place("docs/benchmarks.md", place, f"the oracle's gain is {headroom} the noise floor")
    assert quoted_in_place("docs/benchmarks.md", place, "(the floor " + ", ".join(f"{f:.4f}" for f in summary["floors"]))
    assert quoted_in_place("docs/benchmarks.md", "**Label savings**", f"final mean mAP@0.5 ({rand['mean'][-1]:.4f} after 300")
    bench = read_doc("docs/benchmarks.md")
    for name in large_full_names():
        assert name in bench and load(name)["commit"] in bench, name
    typical, plain, oracle = arms["ppal@9fa9686"], arms["ppal"], arms["oracle"]
    gains = {arm: gain_cells(summary, arm)[1] for arm in ("ppal", "ppal@9fa9686")}
    leads = [t - p for t, p in zip(gains["ppal@9fa9686"], gains["ppal"], strict=True)]
    assert statistics.mean(leads) > 0 and all(lead > -f for lead, f in zip(leads, summary["floors"], strict=True))  # its rule
    place = "**Typical first holds on the 8 seeds**"
    assert quoted_in_place("docs/benchmarks.md", place, f"is {statistics.mean(gains['ppal@9fa9686']):+.4f} against plain "
                           f"`ppal`'s {statistics.mean(gains['ppal']):+.4f}")
    assert all(lead > 0 for lead in leads)  # "ahead of plain `ppal` in every round"
    assert quoted_in_place("docs/benchmarks.md", place, "ahead of plain `ppal` in every round (" +
                           ", ".join(f"{lead:+.4f}" for lead in leads) + ")")
    assert all(lead < f for lead, f in zip(leads, summary["floors"], strict=True))  # "under that round's noise floor"
    points = round(100 * typical["label_savings"]) - round(100 * plain["label_savings"])
    assert quoted_in_place("docs/benchmarks.md", "Each round's lead is under that round's noise floor", f"differ by {points} point")
    low, high = typical["savings_interval_90"]
    assert quoted_in_place("docs/benchmarks.md", "target 35 %: not met",
                           f"{percent(typical['label_savings'])} (interval {percent(low)} to {percent(high)})")
    assert quoted_in_place("docs/benchmarks.md", "The oracle, which takes one image per scene",
                           f"saves {percent(oracle['label_savings'])}")
    # README's mining section: the default in rounds (at the measured step) and per cent, the regime, the picks
    place, seeds = "`ppal`, the default, is after 3 rounds", typical["per_seed_savings"]
    reached = sum(c[3] >= b[4] for c, b in zip(typical["per_seed"], rand["per_seed"], strict=True))
    assert typical["mean"][3] >= rand["mean"][4]  # "after 3 rounds where random is after 4"
    assert quoted_in_place("README.md", place, f"(test mAP@0.5 {typical['mean'][3]:.4f} against {rand['mean'][4]:.4f}, "
                                               f"on {reached} of 8 seeds)")
    assert quoted_in_place("README.md", "**about one round in four, ",
                           f"{percent(typical['label_savings'])} fewer mined labels** (linear within a round; 90 % interval "
                           f"over seeds: {percent(low)} to {percent(high)}; per seed {100 * min(seeds):.0f}-{percent(max(seeds))})")
    assert quoted_in_place("README.md", "**about one round in four, ", f"the oracle {percent(oracle['label_savings'])}, plain "
                           f"`ppal` (before typical first) {percent(plain['label_savings'])}.")
    picks = summary["picks"]  # per arm and kind: per round, each seed's count
    dup, empty = ({arm: [n for per_round in picks[arm][kind] for n in per_round] for arm in picks} for kind in ("duplicates", "empty"))
    rand_dup, rand_empty = dup["random"] + dup["random:1"], empty["random"] + empty["random:1"]
    assert quoted_in_place("README.md", "the default's picks per round", (
        f"{span(dup['ppal@9fa9686'])} near-duplicates of 75 (random {span(rand_dup)}), "
        f"{span(empty['ppal@9fa9686'])} empty frames (random {span(rand_empty)})"))
    assert (ROOT / "docs/active-learning-rounds-large.png").exists()
    means = {arm: [statistics.mean(r) for r in picks[arm]["duplicates"]] for arm in ("random", "random:1", "ppal@9fa9686")}
    assert all(t < min(a, b) for t, a, b in zip(means["ppal@9fa9686"], means["random"], means["random:1"], strict=True))
    assert quoted_in_place("docs/benchmarks.md", "near-duplicates per round at most random's: met",
                           "in every round its mean is below either random draw's")
    assert quoted_in_place("docs/benchmarks.md", "| 5. active learning", f"`ppal` typical first (the default) "
                           f"{percent(typical['label_savings'])} fewer mined labels (90 % interval {percent(low)} to "
                           f"{percent(high)}), the oracle {percent(oracle['label_savings'])}, no arm below random in any round")


ROUNDS_FULL = ["rounds-pilot-400.json", "rounds-pilot-401.json", "rounds-full-402-403.json", "rounds-full-404-405.json"]


def test_the_rounds_full_run_figures_are_those_of_its_raw_results():
    """Issue 35's full run (seeds 400-405): the README's label savings of the default with its bootstrap interval,
    the arms it names as below random, the oracle's control and the budget curve, recomputed from the JSONs."""
    summary = rounds_summary(ROUNDS_FULL)
    bench, readme = read_doc("docs/benchmarks.md"), read_doc("README.md")
    assert len(summary["arms"]["ppal"]["per_seed"]) == 6 and summary["counts"] == [50, 150, 250, 350, 450]
    for arm in ("ppal", "diversity", "oracle"):
        found = summary["arms"][arm]
        low, high = (percent(v) for v in found["savings_interval_90"])
        saved = percent(found["label_savings"])
        assert f"**{saved}** fewer mined labels (90 % bootstrap over seeds: {low} to {high})" in bench, arm
    ppal = summary["arms"]["ppal"]
    low, high = (percent(v) for v in ppal["savings_interval_90"])
    assert f"{percent(ppal['label_savings'])} fewer mined labels (90 % interval over seeds: {low} to {high})" in readme
    per_seed = ppal["per_seed_savings"]
    assert quoted_in_place("README.md", "a 600-image pool", f"per seed {100 * min(per_seed):.0f}-{percent(max(per_seed))}")
    below = [arm for arm, found in summary["arms"].items() if found["below_random_in_rounds"]]
    for arm in below:
        assert f"`{arm}` falls below random" in readme, arm
    if not below:
        assert "no arm below random in any round" in readme
    shares = ", ".join(f"{s:.2f}" for s in summary["default_share_of_oracle"][:-1]) + " and "
    shares += f"{summary['default_share_of_oracle'][-1]:.2f} of the oracle's"
    assert shares in bench and summary["default_fades"] == ("lead does not fade" not in readme), shares
    floors = summary["floors"]
    oracle = statistics.mean(summary["arms"]["oracle"]["mean"][1:]) - statistics.mean(summary["arms"]["random"]["mean"][1:])
    assert f"**{oracle / statistics.mean(floors):.1f}x**" in bench and f"+{oracle:.4f}" in bench
    for name in ROUNDS_FULL[2:]:
        assert name in bench and load(name)["commit"] in bench
    assert "active-learning-rounds.png" in bench and (ROOT / "docs/active-learning-rounds.png").exists()


OFFERED_SEEDS = range(504, 510)
OFFERED_ARMS = {"random": "random (mean of 2 draws)", "entropy": "`entropy`", "aldd": "`aldd`", "cald": "`cald`",
                "diversity": "`diversity`"}


def offered_names(seeds=OFFERED_SEEDS) -> list[str]:
    """The offered algorithms' raw results: on 504-507 beside the full run's (the same seed models), 508 and 509 alone."""
    return [name for s in seeds for name in ((f"rounds-large-full-{s}.json", f"rounds-large-full-typical-{s}.json")
                                             if s < 508 else ()) + (f"rounds-large-offered-{s}.json",)]


def offered_rows(summary: dict, arm: str, label: str) -> tuple[str, str | None]:
    """An arm's row of mean mAP (gain over the random mean, seeds ahead) and its row of label savings ("never"
    where a seed's arm does not reach random's final mAP@0.5)."""
    found = summary["arms"][arm]
    if arm == "random":
        return mean_row(summary, arm, label), None
    saved, seeds = found["label_savings"], found["per_seed_savings"]
    low, high = found["savings_interval_90"]
    reached = [v for v in seeds if v is not None]
    shown = "never" if saved is None else percent(saved)
    span_ = (f"{100 * min(reached):.0f}-{percent(max(reached))}" if reached else "never") + (
        f", never on {seeds.count(None)}" if None in seeds and reached else "")
    return (mean_row(summary, arm, label),
            f"| {label} | {shown} | {percent(low)} to {percent(high)} | "
            + ", ".join("never" if v is None else f"{100 * v:.0f}" for v in seeds) + f" | {span_} |")


def test_every_offered_algorithm_over_rounds_is_quoted_from_its_raw_results():
    """Issue 43's target "no offered algorithm below random in any round", for the algorithms the full run did not
    run: per arm and round the mean mAP, gain and seeds ahead, the noise floor, the label savings and the picks on
    seeds 504-509; `diversity` on 502-509; the warning aldd logs (its ``caveat``) says what these results say."""
    import sys

    sys.path.insert(0, str(ROOT / "app"))
    from executor.mining import algorithms

    results, summary = merged_summary(offered_names(), only=list(OFFERED_ARMS) + ["random:1"])
    assert sorted(r["seed"] for r in results) == list(OFFERED_SEEDS)
    rows = set(places("docs/benchmarks.md"))
    for arm, label in OFFERED_ARMS.items():
        for row in offered_rows(summary, arm, label):
            assert row is None or row in rows, row
    for arm, kinds in summary["picks"].items():
        assert picks_row(OFFERED_ARMS.get(arm, arm) if arm != "random" else "random", kinds) in rows, arm
    floors = ", ".join(f"{f:.4f}" for f in summary["floors"])
    assert quoted_in_place("docs/benchmarks.md", "The noise floor", f"per round {floors}")
    below = {arm: found["below_random_in_rounds"] for arm, found in summary["arms"].items() if found["below_random_in_rounds"]}
    assert below == {"aldd": [1, 2, 3, 4]}  # what the docs, README, template and aldd's caveat say
    place = "**`aldd` is below random in every round**"
    assert quoted_in_place("docs/benchmarks.md", place, "(" + ", ".join(f"{g:+.4f}" for g in gain_cells(summary, "aldd")[1]) + ")")
    behind = [sum(g < 0 for g in gains) for gains in seed_gains(summary, "aldd")]
    assert quoted_in_place("docs/benchmarks.md", place, f"behind random on {', '.join(map(str, behind[:-1]))} and "
                                                        f"{behind[-1]} of the 6 seeds")
    assert summary["arms"]["aldd"]["label_savings"] is None  # "it never reaches random's final mAP@0.5"
    copies = load("labelled-copies-offered.json")["copies"]

    def copied(arm: str) -> int:
        """Over rounds 2-4 of the 6 seeds, the picks that copy a scene labelled in an earlier round."""
        return sum(r["of_labelled_scenes"] for seed in copies.values() for runs in seed.values() if arm in runs
                   for r in runs[arm][1:4])

    assert sorted(copies) == [str(s) for s in OFFERED_SEEDS]
    assert quoted_in_place("docs/benchmarks.md", "Over rounds 2-4 of the 6 seeds", (
        f"`aldd`'s picks hold {copied('aldd')} copies of a scene labelled in an earlier round, against "
        f"{copied('random')} and {copied('random:1')} in the two random draws, {copied('entropy')} in `entropy`'s, "
        f"{copied('cald')} in `cald`'s and {copied('diversity')} in `diversity`'s"))
    assert copied("aldd") > max(copied(arm) for arm in ("random", "random:1", "entropy", "cald", "diversity"))
    average = {arm: statistics.mean(gain_cells(summary, arm)[1]) for arm in ("entropy", "cald", "diversity")}
    first = gain_cells(summary, "entropy")[1][0]
    ahead = sum(g > 0 for g in seed_gains(summary, "entropy")[0])
    assert -summary["floors"][0] < first < 0  # "behind random in round 1 ... within that round's floor"
    assert quoted_in_place("docs/benchmarks.md", "gain less than `diversity`", f"`entropy` is behind random in round 1 "
                           f"({first:+.4f}, ahead on {ahead} of the 6 seeds), within that round's floor ({summary['floors'][0]:.4f})")
    assert min(gain_cells(summary, "cald")[1]) > 0 and min(gain_cells(summary, "entropy")[1][1:]) > 0
    assert quoted_in_place("docs/benchmarks.md", "gain less than `diversity`", (
        f"averaged over rounds 1-4, `entropy` gains {average['entropy']:+.4f} and `cald` {average['cald']:+.4f} over "
        f"random, where `diversity` gains {average['diversity']:+.4f} on these seeds"))
    assert "picked worse than random in every round" in algorithms()["aldd"].caveat
    assert not any(m.caveat for name, m in algorithms().items() if name != "aldd")
    _, eight = merged_summary(large_full_names(range(502, 508)) + offered_names(range(508, 510)),
                      only=["random", "random:1", "diversity"])
    found = eight["arms"]["diversity"]
    low, high = found["savings_interval_90"]
    seeds = found["per_seed_savings"]
    assert len(seeds) == 8 and not found["below_random_in_rounds"]
    assert quoted_in_place("docs/benchmarks.md", "**`diversity` on 8 seeds (502-509)**",
                           f"{percent(found['label_savings'])} fewer mined labels (90 % interval {percent(low)} to "
                           f"{percent(high)}; per seed {100 * min(seeds):.0f}-{percent(max(seeds))})")
    bench = read_doc("docs/benchmarks.md")
    for name in offered_names():
        assert name in bench and load(name)["commit"] in bench, name


def test_the_readme_table_of_algorithms_is_that_of_the_rounds_at_users_proportions():
    """README's "Which mining algorithm" table: each offered algorithm's gain over random after each round and
    label savings from its rounds run at users' proportions (the default and the oracle from the full run,
    `diversity` on 502-509, the others on 504-509), its cost from the 640 px mining-cost runs; and the template's
    comment on ``mining_algorithm`` quotes the same savings."""
    with_oracle = merged_summary(large_full_names(), ("diversity",))[1]
    offered = merged_summary(offered_names(), only=list(OFFERED_ARMS) + ["random:1"])[1]
    eight = merged_summary(large_full_names(range(502, 508)) + offered_names(range(508, 510)),
                      only=["random", "random:1", "diversity"])[1]
    cost = load("mining-cost-photos-96-640px-cpu.json")["vs_infer_alone"]
    cost["mining ppal + infer"] = load("mining-cost-photos-96-640px-cpu-ppal-typical.json")["vs_infer_alone"]["mining ppal + infer"]
    rows = set(places("README.md"))
    template = (ROOT / "mining-template.yaml").read_text().split("mining_algorithm:")[1].splitlines()[0]
    for label, summary, arm, seeds, name in (
            ("`ppal` (the default)", with_oracle, "ppal@9fa9686", "500-507", "ppal"),
            ("`diversity`", eight, "diversity", "502-509", "diversity"), ("`cald`", offered, "cald", "504-509", "cald"),
            ("`entropy`", offered, "entropy", "504-509", "entropy"), ("`aldd`", offered, "aldd", "504-509", "aldd")):
        _, gains = gain_cells(summary, arm)
        saved = summary["arms"][arm]["label_savings"]
        shown = "never" if saved is None else percent(saved)
        row = (f"| {label} | " + ", ".join(f"{g:+.3f}" for g in gains) + f" | {shown} | {seeds} | "
               f"{cost[f'mining {name} + infer']:.2f}x |")
        assert row in rows, row
        if name != "aldd":
            assert f"{name} {shown}" in template, name
    random_cost = f"(random {cost['mining random + infer']:.2f}x;"
    assert quoted_in_place("README.md", "Cost: mining + infer against infer alone at 640 px", random_cost)
    assert f"an oracle: {percent(with_oracle['arms']['oracle']['label_savings'])}" in template
    assert "aldd below random in every round" in template
    zh = read_doc("README.zh-CN.md")
    assert f"`diversity` {percent(eight['arms']['diversity']['label_savings'])}（8 个种子）" in zh
    assert (f"`cald` 少 {percent(offered['arms']['cald']['label_savings'])}、`entropy` 少 "
            f"{percent(offered['arms']['entropy']['label_savings'])}，而 `aldd` 每一轮都低于随机") in zh
