"""fer_lib's MTCNN (:mod:`fer_lib.mtcnn`), the default face detector: its pieces by hand, and the whole cascade box
for box against facenet-pytorch's, whose converted weights it ships (skipped where facenet-pytorch is missing)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_lib.mtcnn import MTCNN, WEIGHTS, ONet, PNet, RNet, _nms_min, _square

skdata = pytest.importorskip("skimage.data")


def test_the_three_nets_give_the_published_shapes():
    reg, probs = PNet()(torch.zeros(1, 3, 12, 12))
    assert reg.shape == (1, 4, 1, 1) and probs.shape == (1, 2, 1, 1)  # a 12x12 window is one cell
    reg, probs = RNet()(torch.zeros(5, 3, 24, 24))
    assert reg.shape == (5, 4) and probs.shape == (5, 2)
    reg, marks, probs = ONet()(torch.zeros(2, 3, 48, 48))
    assert reg.shape == (2, 4) and marks.shape == (2, 10) and probs.shape == (2, 2)


def test_the_pyramid_squares_and_suppression_by_hand():
    m = MTCNN(min_face_size=24)
    # a face of 24 px must fill P-Net's 12 px window: the first scale is 0.5, then x0.709 while the side stays >= 12
    scales = m.scales(100, 200)
    assert scales[0] == pytest.approx(0.5) and min(100 * s for s in scales) >= 12 > 100 * scales[-1] * 0.709
    sq = _square(torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.9]]))  # 20 wide, 40 tall -> a 40 square, same centre
    assert sq[0, :4].tolist() == [0.0, 20.0, 40.0, 60.0] and sq[0, 4] == pytest.approx(0.9)
    boxes = np.array([[0, 0, 99, 99], [10, 10, 49, 49], [200, 200, 249, 249]], np.float32)
    # the small box lies inside the large, better one: overlap over the smaller area is 1 -> suppressed
    assert _nms_min(boxes, np.array([0.9, 0.8, 0.7]), 0.7) == [0, 2]
    with pytest.raises(ValueError, match="12 or more"):
        MTCNN(min_face_size=8)


def test_the_astronaut_is_found_with_a_sure_probability():
    boxes, probs = MTCNN().detect(skdata.astronaut())
    assert len(boxes) == 1 and probs[0] > 0.99
    x1, y1, x2, y2 = boxes[0]
    assert 160 < x1 < 200 and 40 < y1 < 90 and 250 < x2 < 290 and 150 < y2 < 200  # her face, not the badge


def _images():
    from fer_lib.bench.faces import face_pool, make_scenes

    faces, _ = face_pool(2, source="lfw", seed=3)
    scenes = make_scenes(faces, seed=3, crops=0)
    return [skdata.astronaut()] + [np.repeat(s.image[:, :, None], 3, axis=2) for s in scenes[::3]]


def test_the_cascade_matches_facenet_pytorch_box_for_box(tmp_path):
    """micrograd style: the same weights in fp32 give facenet-pytorch's boxes to 0.01 px; the fp16 file that ships
    finds the same faces, its boxes within 3 px."""
    facenet = pytest.importorskip("facenet_pytorch", reason="facenet-pytorch (the reference) is not installed")
    from pathlib import Path

    from safetensors.torch import save_file

    data = Path(facenet.__file__).parent / "data"
    fp32 = {f"{n}.{k}": v.contiguous() for n in ("pnet", "rnet", "onet")
            for k, v in torch.load(data / f"{n}.pt", map_location="cpu", weights_only=True).items()}
    save_file(fp32, str(tmp_path / "fp32.safetensors"))
    ref = facenet.MTCNN(min_face_size=24, keep_all=True, device="cpu")
    exact, shipped = MTCNN(min_face_size=24, weights=tmp_path / "fp32.safetensors"), MTCNN(min_face_size=24)
    faces = 0
    for image in _images():
        rb, rp = ref.detect(image)
        rb = np.zeros((0, 4)) if rb is None else np.asarray(rb, np.float32)
        rp = np.zeros(0) if rp is None else np.asarray(rp, np.float32)
        order = np.argsort(-rp)
        for ours, tol in ((exact, 0.01), (shipped, 3.0)):
            b, p = ours.detect(image)
            assert len(b) == len(rb)
            if len(b):
                assert np.abs(b[np.argsort(-p)] - rb[order]).max() <= tol
        faces += len(rb)
    assert faces >= 5  # the comparison saw faces, not only empty images


def test_the_weights_file_says_where_it_comes_from():
    from safetensors import safe_open

    with safe_open(str(WEIGHTS), "pt") as f:
        meta = f.metadata()
        assert {k.split(".")[0] for k in f.keys()} == {"pnet", "rnet", "onet"}
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    assert "facenet-pytorch" in meta["source"] and "MIT" in meta["licence"] and "1604.02878" in meta["model"]
