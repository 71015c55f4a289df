"""The face-detection benchmark (``python -m fer_lib bench --faces``): its scenes, its scoring by hand, and a small
run through the CLI on scikit-image's LFW faces (the full table is docs/results/faces.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_lib.bench.faces import (
    CONDITIONS,
    face_pool,
    format_faces_table,
    iou,
    make_scene,
    match,
    run_faces_bench,
)
from fer_lib.cli import main
from fer_lib.detect import available_backends

pytest.importorskip("skimage.data")


def test_iou_and_matching_by_hand():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    truth = [(0, 0, 100, 100), (200, 0, 100, 100)]
    # one box on the first face, one too small on the second (a miss, not a false alarm), one on nothing
    found = [(5, 5, 90, 90), (240, 40, 20, 20), (500, 500, 50, 50)]
    assert match(found, truth) == (1, 1)
    assert match([(280, 0, 40, 40)], truth) == (0, 0)  # half of it on the second face: a miss
    assert match([(290, 0, 40, 40)], truth) == (0, 1)  # a quarter on it: a false alarm
    # each true face takes one box only: two boxes on one face are one hit and no false alarm (it touches a face)
    assert match([(0, 0, 100, 100), (10, 10, 90, 90)], truth[:1]) == (1, 0)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_condition_makes_an_image_with_its_faces_inside(condition):
    faces, _ = face_pool(4, source="lfw", seed=1)
    scene = make_scene(faces[0], condition, np.random.default_rng(0), others=faces[1:])
    h, w = scene.image.shape
    assert scene.image.dtype == np.uint8 and len(scene.faces) == (4 if condition == "several" else 1)
    for x, y, bw, bh in scene.faces:
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw > 0 and bh > 0
    if condition.startswith("tight"):
        assert scene.faces == [(0, 0, w, h)]  # the face fills the image
    if condition == "dark":
        assert scene.image.mean() < 60
    if condition == "small":
        assert scene.faces[0][2] == 64 and (w, h) == (1280, 960)


def test_an_unknown_condition_and_source_are_named():
    faces, _ = face_pool(1, source="lfw")
    with pytest.raises(ValueError, match="unknown condition"):
        make_scene(faces[0], "upside down", np.random.default_rng(0))
    with pytest.raises(ValueError, match="source="):
        face_pool(1, source="imagenet")


@pytest.mark.slow
@pytest.mark.skipif("opencv-haar" not in available_backends(), reason="OpenCV's Haar cascades missing")
def test_a_small_run_counts_every_image(capsys):
    rows, source = run_faces_bench(["opencv-haar"], per_condition=2, source="lfw", conditions=("plain", "several"),
                                   crops=0)
    assert "LFW" in source
    by = {r["condition"]: r for r in rows}
    assert set(by) == {"plain", "several", "no face"}
    assert by["plain"]["faces"] == 2 and by["several"]["faces"] == 8 and by["several"]["images"] == 2
    assert by["no face"]["faces"] == 0 and by["no face"]["images"] == 23  # 13 photos, 3 flat, 2 noisy, 5 drawn
    for r in rows:
        assert 0 <= r["found"] <= r["faces"] and r["ms_per_image"] > 0
    table = format_faces_table(rows).splitlines()
    assert table[0] == "| condition | opencv-haar |" and len(table) == 2 + 3 + 1  # head, 3 conditions, timing
    plain = by["plain"]
    assert table[2] == (f"| plain | {plain['found']}/2 ({plain['found'] / 2:.0%}), {plain['false_boxes']} false |")
    assert table[4].startswith(f"| no face | {by['no face']['images_flagged']}/23 images flagged")
    assert main(["bench", "--faces", "--faces-args", "--per-condition 1 --backends opencv-haar --source lfw "
                 "--conditions tight dark --crops 0", "--json", "-"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {r["condition"] for r in printed} == {"tight", "dark", "no face"}
    assert main(["bench", "--faces", "--faces-args", "--conditions sideways"]) == 2
    assert "unknown condition" in capsys.readouterr().err
