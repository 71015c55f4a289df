"""fer_lib.data.load_fer2013 on small fixtures written to tmp_path: every form, every bad input, the cache."""

from __future__ import annotations

import os
import time
import warnings

import cv2
import numpy as np
import pytest
import torch

from fer_lib import EMOTIONS
from fer_lib.data import FERDataError, load_fer2013, split_by_name
from fer_lib.data.bench import format_table, run_data_bench

USAGES = ("Training", "PublicTest", "PrivateTest")


def _faces(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n)


def write_csv(path, n=21, seed=0, icml=False, bad_rows=None):
    """A challenge-style CSV with all three usages; ``bad_rows`` maps a data row index to a replacement line."""
    images, labels = _faces(n, seed)
    usage = [USAGES[i % 3] for i in range(n)]
    sep = ", " if icml else ","
    lines = [sep.join(["emotion", "Usage", "pixels"] if icml else ["emotion", "pixels", "Usage"])]
    for i in range(n):
        px = " ".join(map(str, images[i].ravel()))
        cells = [str(labels[i]), usage[i], px] if icml else [str(labels[i]), px, usage[i]]
        lines.append((bad_rows or {}).get(i, sep.join(cells)))
    path.write_text("\n".join(lines) + "\n")
    return images, labels, usage


def write_folders(root, per_class=2, prefixes=True, class_names=EMOTIONS, seed=0, ext=".png"):
    """Kaggle layout; with ``prefixes`` test/ mixes PublicTest_ and PrivateTest_ files. Returns {relpath: (img, label)}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split in ("train", "test"):
        for label, cname in enumerate(class_names):
            d = root / split / cname
            d.mkdir(parents=True)
            for k in range(per_class):
                if prefixes:
                    prefix = "Training" if split == "train" else ("PublicTest", "PrivateTest")[k % 2]
                    name = f"{prefix}_{label}{k}{ext}"
                else:
                    name = f"im{label}{k}{ext}"
                img = rng.integers(0, 256, (48, 48), dtype=np.uint8)
                assert cv2.imwrite(str(d / name), img)
                written[f"{split}/{cname}/{name}"] = (img, label)
    return written


def check_folders(data, written):
    seen = 0
    for split in data.splits.values():
        for img, label, rel in zip(split.images, split.labels, split.ids):
            ref_img, ref_label = written[rel]
            assert int(label) == ref_label, rel
            assert torch.equal(img, torch.from_numpy(ref_img)), rel
            seen += 1
    assert seen == len(written)


# ------------------------------------------------------------------------------------------------ forms

def test_csv_all_three_usages(tmp_path):
    images, labels, usage = write_csv(tmp_path / "fer2013.csv")
    data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    assert data.form == "csv" and not data.synthetic and not data.from_cache
    assert list(data.splits) == list(USAGES)
    for name in USAGES:
        rows = [i for i, u in enumerate(usage) if u == name]
        sp = data[name]
        assert sp.images.dtype == torch.uint8 and sp.images.shape == (len(rows), 48, 48)
        assert sp.labels.dtype == torch.int64
        assert torch.equal(sp.images, torch.from_numpy(images[rows]))
        assert sp.labels.tolist() == labels[rows].tolist()
        assert sp.ids == [f"fer2013.csv:{i + 2}" for i in rows]  # file line numbers (header is line 1)


def test_icml_header_variant_and_direct_file(tmp_path):
    images, labels, usage = write_csv(tmp_path / "icml_face_data.csv", icml=True)
    data = load_fer2013(tmp_path / "icml_face_data.csv", cache_dir=tmp_path / "cache")
    assert data.form == "icml_csv"
    rows = [i for i, u in enumerate(usage) if u == "PublicTest"]
    assert torch.equal(data["PublicTest"].images, torch.from_numpy(images[rows]))
    assert data["PublicTest"].labels.tolist() == labels[rows].tolist()


def test_parent_folder_is_searched(tmp_path):
    write_csv(_mk(tmp_path / "a" / "fer2013" / "fer2013.csv"))
    assert load_fer2013(tmp_path, cache_dir=tmp_path / "c").form == "csv"
    written = write_folders(tmp_path / "b" / "x" / "fer2013")
    data = load_fer2013(tmp_path / "b", cache_dir=tmp_path / "c")
    assert data.form == "folders"
    check_folders(data, written)


def _mk(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_folders_with_prefixes_split_public_private(tmp_path):
    written = write_folders(tmp_path, per_class=4, ext=".jpg")
    data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    assert data.form == "folders"
    assert list(data.splits) == ["Training", "PublicTest", "PrivateTest"]
    assert [len(s) for s in data.splits.values()] == [28, 14, 14]
    assert all(i.split("/")[-1].startswith("PrivateTest_") for i in data["private"].ids)
    for split in data.splits.values():  # labels come from folder names; JPEG is lossy so compare loosely
        for img, label, rel in zip(split.images, split.labels, split.ids):
            assert int(label) == EMOTIONS.index(rel.split("/")[1])
            assert (img.float() - torch.from_numpy(written[rel][0]).float()).abs().mean() < 40


def test_folders_without_prefixes_give_test_split_with_note(tmp_path):
    written = write_folders(tmp_path, prefixes=False)
    data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    assert list(data.splits) == ["Training", "Test"]
    assert any("'Test'" in n for n in data.notes)
    assert split_by_name(data, "test") is data["Test"]
    check_folders(data, written)


def test_class_folders_any_case_map_by_name_not_order(tmp_path):
    names = ["ANGRY", "Disgust", "fear", "Happy", "SAD", "Surprise", "neutral"]
    written = write_folders(tmp_path, class_names=names)
    data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    check_folders(data, written)  # labels are the index in EMOTIONS, e.g. SAD -> 4 although "neutral" sorts first
    assert data["train"].counts() == [2] * 7


def test_split_aliases_and_missing_split(tmp_path):
    write_csv(tmp_path / "fer2013.csv")
    data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    assert data["train"] is data["Training"] and data["VAL"] is data["PublicTest"]
    assert split_by_name(data, "private_test") is data["PrivateTest"]
    write_folders(tmp_path / "f", prefixes=True)
    only = load_fer2013(tmp_path / "f", cache_dir=tmp_path / "cache")
    del only.splits["PrivateTest"]
    with pytest.raises(KeyError, match="splits present: Training, PublicTest"):
        only["test"]


def test_subset_is_stratified_and_seeded(tmp_path):
    write_folders(tmp_path, per_class=10)
    sp = load_fer2013(tmp_path, cache_dir=tmp_path / "c")["train"]
    sub = sp.subset(35, seed=1)
    assert len(sub) == 35 and sub.counts() == [5] * 7
    assert sub.ids == sp.subset(35, seed=1).ids != sp.subset(35, seed=2).ids
    assert set(sub.ids) <= set(sp.ids)


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("bad_line, message", [
    ("3,1 2 3,Training", "pixels has 3 values, expected 2304"),
    ("9," + " ".join(["0"] * 2304) + ",Training", "emotion 9 is outside 0-6"),
    ("2," + " ".join(["0"] * 2304) + ",Validation", "unknown Usage 'Validation'"),
    ("2," + " ".join(["x"] * 2304) + ",Training", "pixel value 'x' is not an integer 0-255"),
    ("2,12.7 " + " ".join(["0"] * 2303) + ",Training", "pixel value '12.7' is not an integer 0-255"),
    ("2," + " ".join(["300"] * 2304) + ",Training", "0-255"),
])
def test_bad_csv_rows_raise_naming_the_line_or_skip_and_count(tmp_path, bad_line, message):
    write_csv(tmp_path / "fer2013.csv", n=10, bad_rows={4: bad_line})
    with pytest.raises(FERDataError, match=message) as e:
        load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    assert "fer2013.csv:6" in str(e.value) and "on_error='skip'" in str(e.value)
    with pytest.warns(UserWarning, match="skipped 1"):
        data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache", on_error="skip")
    assert sum(len(s) for s in data.splits.values()) == 9
    assert len(data.skipped) == 1 and data.skipped[0].startswith("fer2013.csv:6")


def test_unreadable_image_raises_or_is_skipped(tmp_path):
    write_folders(tmp_path)
    (tmp_path / "train" / "happy" / "Training_broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FERDataError, match="Training_broken.jpg: unreadable"):
        load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match="skipped 1"):
        data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache", on_error="skip")
    assert len(data["train"]) == 14 and data.skipped == ["train/happy/Training_broken.jpg: unreadable (not a valid image file)"]


def test_empty_csv_and_empty_image_are_named_as_empty(tmp_path):
    empty = tmp_path / "fer2013.csv"
    empty.write_bytes(b"")
    with pytest.raises(FERDataError, match=r"fer2013\.csv is empty \(0 bytes\)"):
        load_fer2013(empty, cache_dir=tmp_path / "cache")
    root = tmp_path / "kaggle"
    write_folders(root)
    (root / "train" / "happy" / "Training_empty.jpg").write_bytes(b"")
    with pytest.raises(FERDataError, match=r"Training_empty\.jpg: empty file \(0 bytes\)") as e:
        load_fer2013(root, cache_dir=tmp_path / "cache")
    assert "Assertion" not in str(e.value) and "buf.empty" not in str(e.value)


def test_transparent_pixels_are_white_in_the_loader_as_in_predict(tmp_path):
    """One rule for RGBA images: composited on white, then grayscale (as fer_lib.faces.load_image does)."""
    from PIL import Image

    from fer_lib.faces import load_image, to_gray

    write_folders(tmp_path)
    rgba = np.zeros((48, 48, 4), np.uint8)
    rgba[:, :24] = (200, 40, 10, 255)     # left half opaque orange-red
    rgba[:, 24:] = (0, 0, 0, 0)           # right half fully transparent (black underneath)
    rgba[:8, :8, 3] = 128                 # a half-transparent corner
    path = tmp_path / "train" / "angry" / "Training_rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    img = data["train"].images[data["train"].ids.index("train/angry/Training_rgba.png")].numpy()
    assert (img[:, 24:] == 255).all()  # transparent -> white, not OpenCV's black
    expected = to_gray(load_image(path))
    assert np.abs(img.astype(int) - expected.astype(int)).max() <= 1


def test_not_48x48_is_resized_with_warning_and_note(tmp_path):
    write_folders(tmp_path)
    big = np.full((96, 96), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "train" / "sad" / "Training_big.png"), big)
    with pytest.warns(UserWarning, match="resized 1 image"):
        data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    i = data["train"].ids.index("train/sad/Training_big.png")
    assert torch.equal(data["train"].images[i], torch.full((48, 48), 200, dtype=torch.uint8))
    assert any("96x96" in n for n in data.notes)


def test_unknown_class_folder(tmp_path):
    write_folders(tmp_path)
    (tmp_path / "train" / "contempt").mkdir()
    with pytest.raises(FERDataError, match="unknown class folder 'contempt'.*angry, disgust"):
        load_fer2013(tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("make", ["missing", "empty", "empty_csv_header"])
def test_missing_or_empty_root_explains_how_to_get_fer2013(tmp_path, make):
    root = tmp_path / "nothing"
    if make == "empty":
        root.mkdir()
    elif make == "empty_csv_header":
        root = tmp_path / "x.csv"
        root.write_text("a,b,c\n")
    with pytest.raises(FERDataError) as e:
        load_fer2013(root, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert str(root) in msg
    for needle in ("msambare/fer2013", "kagglehub.dataset_download", "fer2013.csv", "FER2013_DIR", "../shared/fer2013",
                   "data/fer2013"):
        assert needle in msg


def test_non_image_files_are_noted_not_silently_dropped(tmp_path):
    write_folders(tmp_path)
    (tmp_path / "train" / "happy" / "notes.txt").write_text("hi")
    data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    assert any("notes.txt" in n for n in data.notes)


# ------------------------------------------------------------------------------------------------ cache

def test_cache_miss_hit_and_rebuild_on_change(tmp_path):
    written = write_folders(tmp_path / "data")
    cache = tmp_path / "cache"
    first = load_fer2013(tmp_path / "data", cache_dir=cache)
    second = load_fer2013(tmp_path / "data", cache_dir=cache)
    assert not first.from_cache and second.from_cache
    assert len(list(cache.glob("*.pt"))) == 1
    assert second.fingerprint == first.fingerprint
    for name in first.splits:
        assert torch.equal(first[name].images, second[name].images) and first[name].ids == second[name].ids
    # change one image's content (and its mtime): rebuilt, new pixels, stale cache file replaced
    rel = next(k for k in written if k.startswith("train/angry"))
    new = np.zeros((48, 48), np.uint8)
    cv2.imwrite(str(tmp_path / "data" / rel), new)
    st = os.stat(tmp_path / "data" / rel)
    os.utime(tmp_path / "data" / rel, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_fer2013(tmp_path / "data", cache_dir=cache)
    assert not third.from_cache and third.fingerprint != first.fingerprint
    assert torch.equal(third["train"].images[third["train"].ids.index(rel)], torch.from_numpy(new))
    assert len(list(cache.glob("*.pt"))) == 1
    # touching the CSV (mtime only) also rebuilds
    write_csv(_mk(tmp_path / "csv" / "fer2013.csv"))
    assert not load_fer2013(tmp_path / "csv", cache_dir=cache).from_cache
    assert load_fer2013(tmp_path / "csv", cache_dir=cache).from_cache
    os.utime(tmp_path / "csv" / "fer2013.csv", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert not load_fer2013(tmp_path / "csv", cache_dir=cache).from_cache
    assert not load_fer2013(tmp_path / "csv", cache_dir=cache, use_cache=False).from_cache


def test_read_only_data_folder_is_never_written(tmp_path):
    write_folders(tmp_path / "data")
    write_csv(tmp_path / "data" / "extra.csv")  # a CSV beside folders: CSV wins, the folders are noted
    before = sorted((str(p), p.stat().st_mtime_ns) for p in (tmp_path / "data").rglob("*"))
    for p in [tmp_path / "data", *(tmp_path / "data").rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        data = load_fer2013(tmp_path / "data", cache_dir=tmp_path / "cache")
        assert data.form == "csv" and any("folders" in n for n in data.notes)
        assert load_fer2013(tmp_path / "data", cache_dir=tmp_path / "cache").from_cache
    finally:
        for p in [tmp_path / "data", *(tmp_path / "data").rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert sorted((str(p), p.stat().st_mtime_ns) for p in (tmp_path / "data").rglob("*")) == before


def test_unwritable_cache_warns_and_still_loads(tmp_path):
    write_csv(tmp_path / "fer2013.csv")
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # a cache dir below a regular file cannot be created, even by root
    with pytest.warns(UserWarning, match="cannot write the decode cache"):
        data = load_fer2013(tmp_path, cache_dir=blocker / "cache")
    assert len(data["train"]) == 7 and not data.from_cache


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    write_csv(tmp_path / "fer2013.csv")
    load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    (cf,) = (tmp_path / "cache").glob("*.pt")
    cf.write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        data = load_fer2013(tmp_path, cache_dir=tmp_path / "cache")
    assert not data.from_cache and any("unreadable cache file" in str(x.message) for x in w)
    assert load_fer2013(tmp_path, cache_dir=tmp_path / "cache").from_cache


# ------------------------------------------------------------------------------------------------ benchmark

def test_data_bench_rows_on_a_tiny_folder(tmp_path):
    """``python -m fer_lib bench --data`` on a 28-image Kaggle folder: every row is there (timings are not checked)."""
    write_folders(tmp_path / "fer", per_class=2)  # 14 Training + 14 test/ images
    header = []
    rows = run_data_bench(tmp_path / "fer", batch_size=4, iters=2, log=header.append)
    assert len(header) == 1 and header[0].startswith("# fer_lib.data bench:")
    assert [what for what, _, _ in rows] == [
        "load FER2013 cold (decode 28 images, empty cache)", "load FER2013 warm (from cache, best of 3)",
        "make_synthetic_faces(5000)", "Augment(AugmentConfig()) + normalize, batch 4",
        "Augment(AugmentConfig()) + normalize + mixup_cutmix, batch 4", "TensorBatches over 14 images, batch 4"]
    assert all(t and rate.endswith("img/s") for _, t, rate in rows)
    table = format_table(rows).splitlines()
    assert table[:2] == ["| what | time | throughput |", "| --- | --- | --- |"] and len(table) == 2 + len(rows)

