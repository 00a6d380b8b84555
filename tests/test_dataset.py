"""Dataset conversion: ark and voc, every per-item defect skipped and counted, the YOLO layout."""

from __future__ import annotations

import logging
import os

import pytest
import yaml
from executor import dataset
from executor.protocol import ErrorCode, YmirError
from PIL import Image

NAMES = ["dog", "cat"]


def image(path, size=(100, 80), exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, (90, 120, 150))
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, exif=exif)
    else:
        im.save(path)
    return str(path)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def labels(root, split="train"):
    out = {}
    for f in sorted((root / "labels" / split).glob("*.txt")):
        out[f.stem] = [line.split() for line in f.read_text().splitlines()]
    return out


def convert(tmp_path, train_lines, val_lines=None, fmt="ark:raw"):
    val_lines = val_lines if val_lines is not None else train_lines[:1]
    train = write(tmp_path / "train.tsv", "\n".join(train_lines) + "\n")
    val = write(tmp_path / "val.tsv", "\n".join(val_lines) + "\n")
    return dataset.convert(train, val, tmp_path / "yolo", fmt, NAMES)


def test_ark_defects_are_skipped_and_counted(tmp_path, caplog):
    import ultralytics  # noqa: F401 - as in a real run (cli imports it first); it patches PIL.Image.open

    a = tmp_path / "in"
    ok = image(a / "ok.jpg")
    lines = [
        f"{ok}\t" + write(a / "ok.txt", "0, 10, 10, 50, 40, -1.0, 0.0\n1,60,10,90,70\n 0 , 5 , 5 , 20 , 20 \n"),
        f"{image(a / 'neg.jpg')}\t{a / 'missing.txt'}",  # negative: annotation file does not exist
        f"{image(a / 'empty.jpg')}\t" + write(a / "empty.txt", ""),
        f"{image(a / 'bad.jpg')}\t" + write(a / "bad.txt", "zero, 1, 2, 3, 4\n0, 1, 2\n0, 10, 10, 30, 30\n"),
        f"{image(a / 'cls.jpg')}\t" + write(a / "cls.txt", "7, 1, 1, 30, 30\n-1, 1, 1, 30, 30\n1, 1, 1, 30, 30\n"),
        f"{image(a / 'out.jpg')}\t" + write(a / "out.txt", "0, -20, -20, 50, 500\n0, 200, 200, 300, 300\n0, 40, 10, 10, 40\n"),
        f"{write(a / 'notimage.jpg', 'hello')}\t{a / 'x.txt'}",
        f"{a / 'absent.jpg'}\t{a / 'x.txt'}",
        f"{write(a / 'zero.jpg', '')}\t{a / 'x.txt'}",
    ]
    with caplog.at_level(logging.INFO, logger="executor"):
        data_yaml = convert(tmp_path, lines)
    root = tmp_path / "yolo"
    got = labels(root)
    assert len(got) == 6
    assert got["ok"][0] == ["0", "0.300000", "0.312500", "0.400000", "0.375000"]
    assert len(got["ok"]) == 3 and got["neg"] == [] and got["empty"] == []
    assert len(got["bad"]) == 1 and len(got["cls"]) == 1 and got["cls"][0][0] == "1"
    # clipped to the image, outside box dropped, swapped corners reordered
    assert got["out"][0] == ["0", "0.250000", "0.500000", "0.500000", "1.000000"]
    assert len(got["out"]) == 2
    summary = [r.message for r in caplog.records if "dataset (ark)" in r.message][0]
    for words in ("unreadable images skipped: 3", "malformed annotation lines: 2", "boxes with unknown class: 2",
                  "degenerate boxes dropped: 1", "boxes clipped to the image: 1", "negatives", "train images without objects"):
        assert words in summary, summary
    data = yaml.safe_load(open(data_yaml))
    assert data["names"] == {0: "dog", 1: "cat"}
    link = root / "images" / "train" / "ok.jpg"
    assert link.is_symlink() and os.readlink(link) == ok, "linked, not copied"


def test_voc_by_name_floats_unknown_names_and_missing_size(tmp_path):
    a = tmp_path / "in"
    xml = ("<annotation><object><name>cat</name><bndbox><xmin>10.5</xmin><ymin>10</ymin><xmax>50.5</xmax>"
           "<ymax>40</ymax></bndbox><difficult>1</difficult></object>"
           "<object><name>horse</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
           "<object><name>dog</name></object></annotation>")
    lines = [f"{image(a / 'v.jpg')}\t" + write(a / "v.xml", xml),
             f"{image(a / 'w.jpg')}\t" + write(a / "w.xml", "<annotation><object>")]
    convert(tmp_path, lines, fmt="")  # empty export_format means voc:raw
    got = labels(tmp_path / "yolo")
    assert got["v"] == [["1", "0.305000", "0.312500", "0.400000", "0.375000"]]
    assert got["w"] == []


def test_exif_rotated_image_uses_display_frame(tmp_path):
    a = tmp_path / "in"
    rotated = image(a / "r.jpg", size=(100, 80), exif_orientation=6)  # displayed as 80 x 100
    assert dataset.image_size(rotated) == (80, 100)
    convert(tmp_path, [f"{rotated}\t" + write(a / "r.txt", "0, 0, 0, 40, 50\n")])
    assert labels(tmp_path / "yolo")["r"] == [["0", "0.250000", "0.250000", "0.500000", "0.500000"]]


def test_duplicate_basenames_are_kept_apart(tmp_path):
    a = tmp_path / "in"
    one, two = image(a / "x" / "same.jpg"), image(a / "y" / "same.jpg", size=(50, 50))
    ann = write(a / "s.txt", "0, 1, 1, 20, 20\n")
    convert(tmp_path, [f"{one}\t{ann}", f"{two}\t{ann}"])
    assert set(labels(tmp_path / "yolo")) == {"same", "same_1"}


def test_many_repeats_of_a_name_and_a_clash_with_a_made_up_name(tmp_path):
    a = tmp_path / "in"
    ann = write(a / "s.txt", "0, 1, 1, 20, 20\n")
    paths = [image(a / "x" / "same.jpg"), image(a / "y" / "same.jpg"), image(a / "z" / "same_1.jpg"),
             image(a / "w" / "same.jpg")]
    convert(tmp_path, [f"{p}\t{ann}" for p in paths])
    assert set(labels(tmp_path / "yolo")) == {"same", "same_1", "same_1_1", "same_2"}


@pytest.mark.parametrize("fmt", ["seg-coco:raw", "coco:raw", "ark:compressed"])
def test_unsupported_formats_fail_clearly(fmt):
    with pytest.raises(YmirError) as info:
        dataset.annotation_format(fmt)
    assert info.value.code == ErrorCode.DATASET and "ark:raw or voc:raw" in info.value.message


@pytest.mark.parametrize("fmt, expected", [(None, "voc"), ("", "voc"), ("ark:raw", "ark"), ("det-ark:raw", "ark"),
                                           ("voc:raw", "voc"), ("det-voc:raw", "voc"), ("ark", "ark")])
def test_formats(fmt, expected):
    assert dataset.annotation_format(fmt) == expected


def test_nothing_usable_fails_with_dataset_code(tmp_path):
    a = tmp_path / "in"
    with pytest.raises(YmirError) as info:
        convert(tmp_path, [f"{write(a / 'bad.jpg', 'x')}\t{a / 'x.txt'}"])
    assert info.value.code == ErrorCode.DATASET and "no usable training data" in info.value.message


def test_empty_validation_set_fails(tmp_path):
    a = tmp_path / "in"
    with pytest.raises(YmirError) as info:
        convert(tmp_path, [f"{image(a / 'ok.jpg')}\t" + write(a / "ok.txt", "0, 1, 1, 20, 20\n")], val_lines=[])
    assert info.value.code == ErrorCode.DATASET and "validation" in info.value.message


def test_missing_index_fails(tmp_path):
    with pytest.raises(YmirError) as info:
        dataset.convert(str(tmp_path / "nope.tsv"), str(tmp_path / "nope.tsv"), tmp_path / "y", "ark:raw", NAMES)
    assert info.value.code == ErrorCode.DATASET


def test_conversion_of_many_lines_sharing_a_few_images(tmp_path):
    """2,000 lines sharing 4 images each get a label file of their own (speed is bench/conversion.py's job)."""
    a = tmp_path / "in"
    imgs = [image(a / f"{i}.jpg") for i in range(4)]
    ann = write(a / "a.txt", "0, 1, 1, 20, 20\n1, 30, 30, 60, 60\n")
    lines = [f"{imgs[i % 4]}\t{ann}" for i in range(2000)]
    convert(tmp_path, lines)
    labels = list((tmp_path / "yolo" / "labels" / "train").iterdir())
    assert len(labels) == len({p.stem for p in labels}) == 2000


def test_a_200_megapixel_image_is_converted_not_refused(tmp_path):
    """PIL refuses to open images over 179 MP (a decompression-bomb guard, for strangers' uploads); the
    executor lifts it (``runtime.allow_large_images``), or a 200 MP orthophoto ended the conversion with an
    error. The file: a small JPEG whose header says 15000 x 14000 (PIL's header read is all conversion does)."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = (14000).to_bytes(2, "big") + (15000).to_bytes(2, "big")
    huge = tmp_path / "assets" / "huge.jpg"
    huge.parent.mkdir(parents=True)
    huge.write_bytes(bytes(data))
    note = write(tmp_path / "ann" / "huge.txt", "0,1500,1400,3000,2800\n")
    root = tmp_path / "yolo"
    convert(tmp_path, [f"{huge}\t{note}"])
    assert labels(root)["huge"] == [["0", "0.150000", "0.150000", "0.100000", "0.100000"]]
