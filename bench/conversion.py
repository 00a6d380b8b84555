"""Conversion speed: index lines per second for ark and voc (benchmark issue, item 4).

Usage: python bench/conversion.py [--lines 100000] [--images 200]
Lines reuse a pool of distinct image files (the cost per line is the header read,
the annotation parse, the symlink and the label write, not the pixel count), each line
through a symlink of its own name, since YMIR names every asset by its content hash.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import sample, save_result
from executor import dataset


def build(root: Path, fmt: str, lines: int, images: int) -> Path:
    import random

    rng = random.Random(0)
    split = sample.make_split(root, "pool", images, rng, fmt, 0.0)
    names = root / "names"
    names.mkdir()
    index = root / f"{fmt}.tsv"
    with open(index, "w") as fp:
        for i in range(lines):
            image, annotation = split[i % len(split)].split("\t")
            unique = names / f"{i:08d}{Path(image).suffix}"
            unique.symlink_to(image)
            fp.write(f"{unique}\t{annotation}\n")
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    print("| format | lines | seconds | lines/s |\n| --- | --- | --- | --- |")
    seconds_by_format = {}
    for fmt in ("ark", "voc"):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            index = build(root, fmt, args.lines, args.images)
            val = root / "val.tsv"
            val.write_text(index.read_text().splitlines()[0] + "\n")
            start = time.perf_counter()
            dataset.convert(str(index), str(val), root / "yolo", f"{fmt}:raw", sample.CLASS_NAMES)
            seconds = time.perf_counter() - start
            print(f"| {fmt} | {args.lines} | {seconds:.1f} | {args.lines / seconds:,.0f} |")
            seconds_by_format[fmt] = seconds
    save_result(f"conversion-{args.lines}", {"lines": args.lines, "images": args.images, "seconds": seconds_by_format})


if __name__ == "__main__":
    main()
