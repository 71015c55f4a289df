"""The CUDA path, checked on a CPU: no host-device synchronisation in the step, foreach EMA, fused AdamW where
available, strict determinism with cuBLAS's workspace setting, lean checkpoints, the packed data file and the
acceptance script (issue 20). Device capabilities are mocked where a GPU would be needed."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_lib.bench.overhead import OneLayer
from fer_lib.data import (
    Augment,
    AugmentConfig,
    FERData,
    FERDataError,
    FERSplit,
    load_fer2013,
    load_synthetic,
    mixup_cutmix,
)
from fer_lib.data import augment as augment_module
from fer_lib.data.packed import decode_images, encode_images, load_packed, pack_fer2013
from fer_lib.train import TrainConfig, train
from fer_lib.train.ema import ModelEMA
from fer_lib.train.setup import build_optimizer, configure_determinism
from fer_lib.train.stats import PendingSteps
from fer_lib.train.steps import optimizer_step

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------- no device reads


def test_augment_and_mixing_never_read_values_back_from_the_device():
    """On the meta device every value is unknown: any ``.item()``, ``.tolist()``, ``.nonzero()`` or data-dependent
    shape raises. Augmentation and both kinds of mixing run there, so on a GPU they never make the host wait."""
    x = torch.rand(16, 1, 48, 48, device="meta")
    y = torch.randint(0, 7, (16,), device="meta")
    cfg = AugmentConfig(flip_p=0.5, affine_p=0.5, color_p=0.5, erase_p=0.5)
    assert Augment(cfg)(x).shape == x.shape
    for mixup, cutmix in ((0.2, 0.0), (0.0, 1.0)):
        mixed, soft = mixup_cutmix(x, y, 7, mixup, cutmix, prob=1.0)
        assert mixed.shape == x.shape and soft.shape == (16, 7)


def test_elementwise_affine_grid_matches_torch():
    theta = torch.randn(32, 2, 3, generator=torch.Generator().manual_seed(0))
    for H, W in ((48, 48), (64, 40)):
        torch.testing.assert_close(augment_module.affine_grid(theta, H, W),
                                   F.affine_grid(theta, [32, 1, H, W], align_corners=False), rtol=0, atol=1e-6)


def test_warping_every_image_keeps_the_unselected_ones_unchanged():
    x = torch.rand(64, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    cfg = AugmentConfig(flip_p=0.0, affine_p=0.5, color_p=0.0, erase_p=0.0)
    out = Augment(cfg)(x, generator=torch.Generator().manual_seed(2))
    err = (out - x).abs().flatten(1).amax(1)
    same = err <= 4e-6  # the identity warp: bilinear weights of 1 - 1e-6 at the pixel centres
    assert 10 < int(same.sum()) < 54  # about half were warped ...
    assert (err[~same] > 1e-2).all()  # ... visibly; the others are their input up to float rounding


def test_one_warp_does_the_flip_then_the_affine():
    """The flip is folded into the affine's matrix: the same as flipping first, then warping each image alone."""
    x = torch.rand(16, 1, 48, 40, generator=torch.Generator().manual_seed(3))
    cfg = AugmentConfig(flip_p=0.5, affine_p=0.5, color_p=0.0, erase_p=0.0)
    out = Augment(cfg)(x, generator=torch.Generator().manual_seed(4))
    u = torch.rand(16, Augment._K, generator=torch.Generator().manual_seed(4))
    for i in range(16):
        img = x[i:i + 1].flip(-1) if u[i, 0] < cfg.flip_p else x[i:i + 1]
        if u[i, 1] < cfg.affine_p:
            a = torch.deg2rad(-cfg.rotate_deg + 2 * cfg.rotate_deg * u[i, 2])
            s = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[i, 3]
            tx, ty = (-2 * cfg.translate + 4 * cfg.translate * u[i, c] for c in (4, 5))
            theta = torch.tensor([[[a.cos() / s, -a.sin() / s, tx], [a.sin() / s, a.cos() / s, ty]]])
            img = F.grid_sample(img, F.affine_grid(theta, [1, 1, 48, 40], align_corners=False),
                                padding_mode="border", align_corners=False)
        torch.testing.assert_close(out[i:i + 1], img, rtol=0, atol=1e-5)


def _kernels(fn) -> list[str]:
    """The non-view aten ops ``fn()`` dispatches (on a GPU, about one kernel launch each)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    names = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view:
                names.append(func._schema.name.split("::")[-1])
            return func(*args, **(kwargs or {}))

    with Record():
        fn()
    return names


def test_augmentation_is_a_fixed_short_sequence_of_kernels():
    """Every per-image parameter comes from one index, addcmul, comparison and where; the rest does not depend on
    the batch's size or on which ops were selected (68 kernels before this layout, 41 with it)."""
    aug = Augment(AugmentConfig())
    counts = set()
    for B in (7, 64, 256):
        x = torch.rand(B, 1, 48, 48)
        aug(x)  # the tables are made on the first call for a size
        counts.add(len(_kernels(lambda x=x: aug(x))))
    assert len(counts) == 1 and counts.pop() <= 42
    # the same for a config with everything on
    on = Augment(AugmentConfig(flip_p=1.0, affine_p=1.0, color_p=1.0, erase_p=1.0))
    x = torch.rand(32, 1, 48, 48)
    on(x)
    assert len(_kernels(lambda: on(x))) <= 42


def test_erasing_a_non_square_image_stays_inside_it():
    x = torch.rand(64, 1, 30, 52, generator=torch.Generator().manual_seed(0))
    cfg = AugmentConfig.off(erase_p=1.0, erase_value=2.0, erase_area=(0.1, 0.4), erase_ratio=(0.2, 5.0))
    out = Augment(cfg)(x, generator=torch.Generator().manual_seed(1))  # filled with 2.0, clamped to 1.0
    for i in range(64):
        ys, xs = torch.nonzero(out[i, 0] != x[i, 0], as_tuple=True)
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        assert len(ys) == h * w and (out[i, 0, ys, xs] == 1.0).all()  # one full rectangle
        assert 1 <= h <= 30 and 1 <= w <= 52 and h * w >= 0.05 * 30 * 52


def test_the_step_reads_its_statistics_every_n_steps(tmp_path, monkeypatch):
    """96 images in batches of 16: 6 steps an epoch. ``log_every=0`` reads once an epoch (at its end), 4 reads after
    step 4 and at the end: never once per step."""
    reads = []
    original = PendingSteps.read

    def counting(self):
        reads.append(len(self.stats))
        return original(self)

    monkeypatch.setattr(PendingSteps, "read", counting)
    data = load_synthetic(n_train=96, n_val=32, seed=0)
    for log_every, expected in ((0, [6, 6]), (4, [4, 2, 4, 2])):
        reads.clear()
        cfg = TrainConfig(name=f"reads{log_every}", out_dir=str(tmp_path), epochs=2, batch_size=16, device="cpu",
                          log_every=log_every, augment=True, mixup_alpha=0.2, mix_prob=1.0)
        res = train(cfg, data, progress=False, model=OneLayer())
        assert reads == expected
        assert all(np.isfinite(r["train_loss"]) and 0 <= r["train_acc"] <= 1 for r in res.history)


# -------------------------------------------------------------------------------------------------------- EMA


def _reference_ema(avg: dict, model: nn.Module, d: float) -> None:
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            avg[k].mul_(d).add_(v.detach(), alpha=1 - d)
        else:
            avg[k].copy_(v)


def test_foreach_ema_matches_a_python_loop_over_the_state_dict():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    model(torch.randn(2, 1, 8, 8))
    ema = ModelEMA(model, decay=0.9, warmup=False)
    reference = copy.deepcopy(model.state_dict())
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 1, 8, 8))  # moves BatchNorm's running stats and its integer counter
        ema.update(model)
        _reference_ema(reference, model, 0.9)
    for k, v in ema.module.state_dict().items():
        torch.testing.assert_close(v, reference[k], rtol=1e-6, atol=1e-6, msg=k)
    assert int(ema.module[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 6
    first = ema._cache[1]
    ema.update(model)
    assert ema._cache[1] is first  # the tensor lists are built once per model


def test_ema_follows_a_model_moved_after_the_first_update():
    model = nn.Linear(3, 2)
    ema = ModelEMA(model, decay=0.5, warmup=False)
    ema.update(model)
    model.double()  # .to() swaps the parameters' data; the cached lists hold the parameters themselves
    ema.module.double()
    with torch.no_grad():
        model.weight.fill_(2.0)
    expected = 0.5 * ema.module.weight.detach() + 0.5 * 2.0
    ema.update(model)
    assert ema.module.weight.dtype == torch.float64
    torch.testing.assert_close(ema.module.weight.detach(), expected)


# ------------------------------------------------------------------------------------------ optimiser, determinism


def test_adamw_is_fused_only_on_cuda_parameters():
    cfg = TrainConfig(optimizer="adamw")
    cpu = build_optimizer(nn.Linear(4, 2), cfg)
    assert not cpu.defaults.get("fused")  # the CPU keeps torch's default AdamW and its exact numbers
    assert build_optimizer(nn.Linear(4, 2), cfg, fused=True).defaults["fused"] is True
    fake_cuda = nn.Linear(4, 2)
    monkey = pytest.MonkeyPatch()
    try:  # parameters that report a CUDA device turn the fused kernel on by default
        monkey.setattr(torch.Tensor, "device", property(lambda self: torch.device("cuda", 0)))
        decided = []
        monkey.setattr(torch.optim, "AdamW", lambda groups, **kw: decided.append(kw.get("fused")) or "opt")
        build_optimizer(fake_cuda, cfg)
    finally:
        monkey.undo()
    assert decided == [True]


def test_fp16_step_with_fused_adamw_skips_an_overflow_like_the_default_adamw():
    """A T4 trains in fp16 with a GradScaler, and on CUDA the loop's AdamW is fused: the scaler then hands the
    inf check to the kernel (``found_inf``) after the loop has already unscaled the gradients for clipping. The
    loop's own step (``fer_lib.train.steps.optimizer_step``) with a fused and with the default AdamW, both on the
    CPU (where torch has the fused kernel too): the same updates, and a step whose gradient overflowed is skipped
    by both (weights and AdamW's step count unchanged, the scale halved), not applied as inf/NaN."""
    from types import SimpleNamespace

    x, y = torch.randn(32, 8, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 3
    runs = {}
    for fused in (False, True):
        torch.manual_seed(0)
        model = nn.Linear(8, 3)
        cfg = TrainConfig(optimizer="adamw", lr=1e-2, grad_clip=1.0)
        run = SimpleNamespace(optimizer=build_optimizer(model, cfg, fused=fused), scaler=torch.amp.GradScaler("cpu"),
                              cfg=cfg, params=list(model.parameters()), ema=None, raw=model)
        assert bool(run.optimizer.defaults.get("fused")) is fused
        poison = {"on": False}
        model.weight.register_hook(lambda g, poison=poison: g.index_fill(1, torch.tensor([0]), float("inf"))
                                   if poison["on"] else g)
        log = []
        for step in range(4):
            poison["on"] = step == 2  # the backward of step 2 overflows
            before = model.weight.detach().clone()
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer_step(run, loss)
            log.append((not torch.equal(before, model.weight), run.scaler.get_scale(),
                        run.optimizer.state[model.weight]["step"].item()))
            assert torch.isfinite(model.weight).all()
        runs[fused] = (log, model.weight.detach().clone())
    assert runs[True][0] == runs[False][0] == [(True, 65536.0, 1), (True, 65536.0, 2), (False, 32768.0, 2),
                                                (True, 32768.0, 3)]
    torch.testing.assert_close(runs[True][1], runs[False][1], rtol=1e-5, atol=1e-6)


@pytest.fixture()
def restore_determinism():
    state = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.use_deterministic_algorithms(state[0], warn_only=state[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[2], state[3]
    if state[4] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = state[4]


def test_deterministic_on_cuda_is_strict_and_sets_cublas_workspace(monkeypatch, restore_determinism):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    configure_determinism(True, torch.device("cuda", 0))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()  # raises instead of warning
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_deterministic_warns_when_cuda_started_too_early(monkeypatch, restore_determinism):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.warns(UserWarning, match="CUBLAS_WORKSPACE_CONFIG"):
        configure_determinism(True, torch.device("cuda", 0))


def test_not_deterministic_on_cuda_turns_cudnn_autotuning_on(restore_determinism):
    torch.backends.cudnn.benchmark = False
    configure_determinism(False, torch.device("cuda", 0))
    assert torch.backends.cudnn.benchmark


# -------------------------------------------------------------------------------------------------- checkpoints


def test_best_pt_holds_the_weights_only_and_resume_points_at_last_pt(tmp_path):
    data = load_synthetic(n_train=64, n_val=32, seed=0)
    cfg = TrainConfig(name="lean", out_dir=str(tmp_path), epochs=1, batch_size=32, device="cpu",
                      model="baseline_resnet18")
    res = train(cfg, data, progress=False)
    best = torch.load(res.best_path, weights_only=True)
    last = torch.load(res.last_path, weights_only=True)
    assert not {"optimizer", "scheduler", "scaler", "rng"} & set(best)
    assert {"optimizer", "scheduler", "rng"} <= set(last)
    torch.testing.assert_close(best["ema"], last["ema"])
    # AdamW keeps two tensors per weight: best.pt (weights + EMA) is about half of last.pt
    assert res.best_path.stat().st_size < 0.6 * res.last_path.stat().st_size
    from fer_lib.inference import load_model

    assert not load_model(res.best_path).training
    with pytest.raises(ValueError, match="holds the weights only.*last.pt"):
        train(TrainConfig(**{**cfg.to_dict(), "epochs": 2}), data, progress=False, resume=res.best_path)


# ------------------------------------------------------------------------------------------------- packed data


def _fake_fer(n_train=70, n_val=21, seed=0) -> FERData:
    g = torch.Generator().manual_seed(seed)

    def split(name, n):
        images = torch.randint(0, 256, (n, 48, 48), dtype=torch.uint8, generator=g)
        images[0] = 0
        images[1] = 255  # the extremes survive the mod-256 residuals
        return FERSplit(name, images, torch.arange(n) % 7, [f"{name.lower()}/{i}.png" for i in range(n)])

    return FERData({"Training": split("Training", n_train), "PublicTest": split("PublicTest", n_val)},
                   form="folders", synthetic=False, source="fake")


def test_median_predictor_coding_is_lossless():
    images = _fake_fer().splits["Training"].images.numpy()
    smooth = np.cumsum(np.ones((5, 48, 48), dtype=np.uint8), axis=2).astype(np.uint8)  # ramps compress well
    for arr in (images, smooth):
        assert np.array_equal(decode_images(encode_images(arr), arr.shape), arr)
    assert len(encode_images(smooth)) < smooth.nbytes / 20


def test_a_packed_file_loads_as_fer2013_pixel_for_pixel(tmp_path):
    data = _fake_fer()
    path = pack_fer2013(data, tmp_path / "packed" / "fer.npz")
    for root in (path, tmp_path / "packed"):  # the file, or the folder holding it
        back = load_fer2013(root, use_cache=False)
        assert back.form == "packed" and not back.synthetic
        for name in ("Training", "PublicTest"):
            a, b = data.splits[name], back[name]
            assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.ids == b.ids


def test_packing_to_a_size_limit_keeps_validation_whole_and_says_so(tmp_path):
    data = _fake_fer(n_train=700, n_val=50)
    whole = pack_fer2013(data, tmp_path / "whole.npz").stat().st_size
    limit = (whole * 0.6) / 2**20
    path = pack_fer2013(data, tmp_path / "cut.npz", max_mib=limit)
    assert path.stat().st_size <= limit * 2**20
    back = load_packed(path)
    assert len(back["PublicTest"]) == 50 and 300 < len(back["Training"]) < 700
    assert back["Training"].ids == data.splits["Training"].subset(len(back["Training"])).ids
    assert any("stratified subset" in n and "of its 700" in n for n in back.notes)
    with pytest.raises(ValueError, match="alone take"):
        pack_fer2013(data, tmp_path / "tiny.npz", max_mib=0.001)


def test_a_broken_packed_file_names_the_problem(tmp_path):
    path = pack_fer2013(_fake_fer(), tmp_path / "fer.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FERDataError, match="pack it again"):
        load_packed(path)


# ---------------------------------------------------------------------------------------- the acceptance script


def _gpu_check():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return gpu_check


#: Packages fer_lib depends on that the lent GPU machines' image does not have (its package list, read 2026-11-17;
#: nothing can be installed there): the acceptance run must not need them.
LENT_MACHINE_LACKS = ("pytorch_grad_cam", "ttach", "ipywidgets", "IPython", "dlib", "kagglehub")


def test_gpu_check_dry_run_writes_one_json_summary(tmp_path):
    """The acceptance script's steps on a CPU with tiny synthetic data (compile and DDP are skipped here: DDP is
    tested in test_ddp.py, and compiling on a CPU takes minutes), in a Python where the packages the lent GPU
    machine lacks cannot be imported; without a "before" checkout the overhead step times this one alone and
    says so."""
    (tmp_path / "out").mkdir()
    argv = ["gpu_check.py", "--dry-run", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "runs"),
            "--skip", "compile", "ddp", "--minutes", "0.05", "--overhead-rounds", "1",
            "--before", str(tmp_path / "no_before")]
    code = ("import runpy, sys\n"
            f"sys.modules.update(dict.fromkeys({LENT_MACHINE_LACKS!r}))  # None: 'import X' fails, find_spec is None\n"
            f"sys.argv = {argv!r}\n"
            "runpy.run_path('scripts/gpu_check.py', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OUT": str(tmp_path / "out"), "PYTHONPATH": ""})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    code = proc.returncode
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert code == 0 and summary["ok"] and summary["finished"], summary
    assert summary == json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["env"]["amp"] == "fp32" and summary["data"]["synthetic"]
    main = summary["main"]
    assert main["epochs_run"] >= 1 and 0 <= main["best_val_acc"] <= 1 and main["train_images_per_sec"] > 0
    assert main["minutes_asked"] == 0.05 and main["max_minutes"] == 0.05
    history = json.loads((tmp_path / "out" / "gpu_main_history.json").read_text())
    assert len(history) == main["epochs_run"] and history[-1]["val_acc"] == main["last_val_acc"]
    over = summary["overhead"]
    assert [r["checkout"] for r in over["rows"]] == ["."] and over["rows"][0]["overhead_ms"] > 0
    assert over["before"] is None and "no_before" in over["note"] and "now_over_before" not in over
    cost = summary["cost"]  # the module-cost benchmark: the baseline first, ratios to it
    assert [r["label"] for r in cost["rows"]] == ["baseline_resnet18", "sota_resemote_small_v1"]
    assert cost["rows"][0]["train_x"] == 1.0 and cost["rows"][1]["gflops_x"] > 1 and cost["precision"] == "fp32-nhwc"
    assert "compile" not in summary and "ddp" not in summary


def test_gpu_check_keeps_to_its_deadline_and_writes_the_summary_after_every_step(tmp_path, monkeypatch):
    """A lent machine cuts a command at 10 minutes and returns only what its result folder holds: every finished
    step is on disk before the next starts (``finished`` false until the end), and the main run gets the deadline's
    rest -- none when too little is left, which fails the run with a reason instead of overrunning."""
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    gpu_check = _gpu_check()
    seen = {}

    def fake_train_once(data, out, name, device, **overrides):
        on_disk = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
        seen[name] = (sorted(k for k, v in on_disk.items() if isinstance(v, dict)), on_disk["finished"],
                      overrides["max_minutes"])
        return {"run_dir": str(tmp_path), "max_minutes": overrides["max_minutes"]}

    monkeypatch.setattr(gpu_check, "_train_once", fake_train_once)
    args = ["--dry-run", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "runs"),
            "--skip", "cost", "overhead", "ddp", "--minutes", "5"]
    (tmp_path / "history.json").write_text("[]")
    assert gpu_check.main([*args, "--deadline", "4"]) == 0
    assert seen["compile_smoke"] == (["data", "env"], False, pytest.approx(2.0, abs=0.1))  # 4 - 1 reserve - 1
    assert seen["gpu_main"][:2] == (["compile", "data", "env"], False)
    assert seen["gpu_main"][2] == pytest.approx(3.0, abs=0.1)  # the deadline's rest less the reserve, not 5

    seen.clear()
    assert gpu_check.main([*args, "--deadline", "1.1"]) == 1
    summary = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["finished"] and not summary["ok"] and "gpu_main" not in seen
    assert summary["main"]["error"].startswith("TimeoutError: the deadline (1.1 min) leaves")


def test_gpu_check_prepare_exports_the_before_checkout_and_sizes_what_travels(tmp_path, capsys):
    """``--prepare`` (the development machine's half): the pre-issue-20 package without its weights, the commit
    for a machine without .git, the size that travels and the exact call; packing is skipped when a file is there."""
    gpu_check = _gpu_check()
    ok = subprocess.run(["git", "cat-file", "-e", f"{gpu_check.BEFORE_COMMIT}^{{commit}}"], cwd=ROOT,
                        capture_output=True).returncode == 0
    if not ok:
        pytest.skip(f"this clone lacks commit {gpu_check.BEFORE_COMMIT} (shallow)")
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "fer.npz").write_bytes(b"\0" * 2**20)  # stands in for the packed data: only its size counts here
    code = gpu_check.main(["--prepare", "--data-root", str(packed), "--before", str(tmp_path / "dd" / "before")])
    out = capsys.readouterr().out
    assert code == 0, out
    before = tmp_path / "dd" / "before" / "fer_lib"
    assert (before / "__init__.py").is_file() and (before / "train" / "engine.py").is_file()
    assert not (before / "weights").exists()
    assert (tmp_path / "dd" / "commit.txt").read_text().strip()
    tree = gpu_check._travel_mib([])
    travels = float(out.split("travels: ")[1].split(" MiB")[0])
    assert tree + 1.0 < travels < tree + 4.0  # the tree, the 1 MiB file and an old fer_lib of ~1 MiB
    assert 'run(command="bash scripts/gpu_check.sh", timeout_s=600, carry=[' in out


def test_step_overhead_measures_the_loop_with_a_negligible_model():
    from fer_lib.bench.overhead import step_overhead

    r = step_overhead(steps=6, batch_size=16, epochs=2, count_ops=True)
    assert r["epochs_timed"] == 1 and r["step_ms"] > 0 and r["model_ms"] > 0
    assert r["overhead_ms"] == pytest.approx(r["step_ms"] - r["model_ms"])
    # counted: no host read in the loop's own code or in augmentation (mixup's host-drawn scalars and the CPU
    # optimiser's step counters are host-side), and the EMA of a ResNet18 in a few multi-tensor ops, not 123
    assert 50 < r["ops_per_step"] < 1000
    assert not [s for s in r["reads_by_source"] if s.startswith("fer_lib/train") or s.endswith(":__call__")]
    assert r["ema_tensors"] == 122 and r["ema_update_ops"] <= 4


def test_bench_step_overhead_times_each_checkout_in_its_own_process(tmp_path, capsys):
    """``compare_checkouts`` (``bench --step-overhead --overhead-args '--compare DIR'``) times another checkout's
    fer_lib (here: a copy of this one) alternated with this one, and names a folder without fer_lib/ instead of
    timing it (the CLI: one error line, exit 2, before timing anything)."""
    import shutil

    from fer_lib.bench.overhead import compare_checkouts
    from fer_lib.cli import main

    other = tmp_path / "other"
    shutil.copytree(ROOT / "fer_lib", other / "fer_lib", ignore=shutil.ignore_patterns("weights", "__pycache__"))
    rows = compare_checkouts([ROOT, other], rounds=1, steps=2, batch_size=8, epochs=2)
    assert [Path(r["fer_lib"]).parent.parent for r in rows] == [ROOT, other]  # each ran its own package
    assert all(r["overhead_ms"] == pytest.approx(r["step_ms"] - r["model_ms"]) for r in rows)
    with pytest.raises(FileNotFoundError, match="holds no fer_lib/ package"):
        compare_checkouts([tmp_path / "nothing"], steps=2, batch_size=8, epochs=2)
    code = main(["bench", "--step-overhead", "--overhead-args", f"--compare {tmp_path / 'nothing'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "holds no fer_lib/ package" in err


def test_overhead_table_pairs_each_round_with_the_first_checkout():
    from fer_lib.bench.overhead import format_overhead

    rows = []
    for r, (now, before) in enumerate([(5.0, 20.0), (10.0, 30.0), (6.0, 24.0)]):  # the machine drifts by round
        rows += [{"checkout": ".", "round": r, "step_ms": now + 1, "model_ms": 1.0, "overhead_ms": now},
                 {"checkout": "../before", "round": r, "step_ms": before + 1, "model_ms": 1.0, "overhead_ms": before}]
    table = format_overhead(rows)
    assert "| **.** median | | | | **6.00** (1.00x) |" in table
    assert "| **../before** median | | | | **24.00** (4.00x) |" in table
    assert "../before / ., round by round: median 4.00x (from 3.00x to 4.00x over 3 rounds)" in table


# ------------------------------------------------------------------ what the acceptance script takes from fer_lib


def test_environment_names_the_versions_the_gpus_and_the_presets_precision(monkeypatch):
    from types import SimpleNamespace

    from fer_lib.bench.record import environment, list_gpus

    env = environment("cpu")
    assert set(env) == {"python", "torch", "cuda", "cudnn", "device", "gpus", "cpu_threads", "amp"}
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["amp"] == "fp32"
    assert env["cpu_threads"] == torch.get_num_threads()
    json.dumps(env)  # goes into the JSON summary as it is
    # two GPUs, mocked: what a machine with an H100 and a T4 lists
    cards = [SimpleNamespace(name="NVIDIA H100 80GB HBM3", major=9, minor=0, total_memory=85_520_809_984),
             SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15_828_320_256)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: cards[i])
    assert list_gpus() == [{"name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "memory_gib": 79.6},
                           {"name": "Tesla T4", "capability": "7.5", "memory_gib": 14.7}]


def test_measure_training_reports_the_run_from_its_history(tmp_path):
    from fer_lib.bench.record import measure_training

    data = load_synthetic(n_train=64, n_val=32, seed=0)
    cfg = TrainConfig(name="measured", out_dir=str(tmp_path), epochs=3, batch_size=16, device="cpu", log_every=0)
    r = measure_training(cfg, data, model=OneLayer())
    history = json.loads((tmp_path / "measured" / "history.json").read_text())
    assert r["run_dir"] == tmp_path / "measured" and r["epochs_run"] == 3 == len(history)
    best = max(history, key=lambda h: h["val_acc"])
    assert (r["best_val_acc"], r["best_epoch"]) == (best["val_acc"], best["epoch"])
    assert r["last_val_acc"] == history[-1]["val_acc"] and r["first_epoch_s"] == history[0]["seconds"]
    # the first epoch holds the warm-up (cuDNN autotuning, compilation): throughput is the mean of the others
    steady = (history[1]["images_per_sec"] + history[2]["images_per_sec"]) / 2
    assert r["train_images_per_sec"] == pytest.approx(steady)
    assert r["peak_gpu_memory_gib"] is None and r["wall_s"] >= 0 and r["stop_reason"] is None
    assert (r["model"], r["batch_size"], r["lr"], r["val_split"]) == (cfg.model, 16, cfg.lr, cfg.val_split)


def test_precision_name_is_the_inverse_of_precisions():
    from fer_lib import bench

    for name, (dtype, nhwc) in bench.PRECISIONS.items():
        assert bench.precision_name(dtype, nhwc) == name
    assert bench.precision_name(None) == "fp32"
    assert bench.precision_name(torch.bfloat16, channels_last=True) == "bf16-nhwc"  # the gpu preset on an A100
    with pytest.raises(ValueError, match="no benchmark precision"):
        bench.precision_name(torch.float64)


def test_paired_ratios_divide_within_each_round():
    from fer_lib.bench.overhead import paired_ratios

    rows = [{"checkout": c, "round": r, "overhead_ms": ms}
            for r, pair in enumerate([(5.0, 20.0), (10.0, 30.0), (6.0, 24.0)]) for c, ms in zip((".", "../before"), pair)]
    assert paired_ratios(rows, "../before", ".") == [4.0, 3.0, 4.0]
    assert paired_ratios(rows, ".", "../before") == [0.25, 10.0 / 30.0, 0.25]
    assert paired_ratios(rows[:-1], "../before", ".") == [4.0, 3.0]  # a round that timed only one is left out
