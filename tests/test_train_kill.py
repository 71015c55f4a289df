"""A training process killed with SIGKILL mid-run leaves only complete checkpoints and resumes exactly."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from fer_lib.train import load_checkpoint

SCRIPT = textwrap.dedent('''
    import sys, torch
    from torch import nn
    from fer_lib.data import load_synthetic
    from fer_lib.train import TrainConfig, train
    torch.set_num_threads(1)
    out, name, resume = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(32, 7))
    cfg = TrainConfig(name=name, out_dir=out, epochs=6, batch_size=32, lr=3e-3, device="cpu", ema_decay=0.9)
    train(cfg, load_synthetic(n_train=1500, n_val=100), progress=False, model=model, resume=resume)
''')


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    last = tmp_path / "killed" / "last.pt"
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), "killed"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while not last.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(0.4)  # into the next epoch (or into the next checkpoint write)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    ckpt = torch.load(last, weights_only=True)  # complete, loadable
    done = ckpt["epoch"]
    assert 1 <= done < 6 and len(ckpt["history"]) == done
    best = tmp_path / "killed" / "best.pt"
    assert load_checkpoint(best)["epoch"] <= done

    subprocess.run([sys.executable, str(script), str(tmp_path), "killed", str(last)], check=True, timeout=300,
                   capture_output=True)
    subprocess.run([sys.executable, str(script), str(tmp_path), "straight"], check=True, timeout=300,
                   capture_output=True)
    resumed = load_checkpoint(last)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == 6
    for key in ("model",):
        for k, v in straight[key].items():
            torch.testing.assert_close(resumed[key][k], v, rtol=0, atol=0, msg=k)
    for k, v in straight["ema"]["module"].items():
        torch.testing.assert_close(resumed["ema"]["module"][k], v, rtol=0, atol=0, msg=k)
    assert list((tmp_path / "killed").glob(".*.tmp-*")) == []


# SCRIPT with its last line (the train() call) wrapped: the stop's one line is printed, the exit code is the CLI's
TRAIN_CALL = "train(cfg, load_synthetic(n_train=1500, n_val=100), progress=False, model=model, resume=resume)"
assert TRAIN_CALL in SCRIPT
TERM_SCRIPT = SCRIPT.replace(TRAIN_CALL, textwrap.dedent(f'''
    from fer_lib.train import TrainingStopped
    try:
        {TRAIN_CALL}
    except TrainingStopped as e:
        print("STOPPED", e, flush=True)
        sys.exit(143)
'''))


def _start_and_wait_for(script, tmp_path, name, path):
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), name], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_sigterm_stops_at_a_step_boundary_and_resumes_exactly(tmp_path):
    """SIGTERM (Colab, Slurm, Kubernetes) stops at the next step with one line; last.pt resumes exactly."""
    script = tmp_path / "run.py"
    script.write_text(TERM_SCRIPT)
    last = tmp_path / "termed" / "last.pt"
    proc = _start_and_wait_for(script, tmp_path, "termed", last)
    try:
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    line = next(x for x in out.splitlines() if x.startswith("STOPPED"))
    assert "SIGTERM" in line and "last.pt" in line and "--resume" in line
    done = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= done < 6 and f"holds epoch {done}" in line
    subprocess.run([sys.executable, str(script), str(tmp_path), "termed", str(last)], check=True, timeout=300,
                   capture_output=True)
    subprocess.run([sys.executable, str(script), str(tmp_path), "straight"], check=True, timeout=300,
                   capture_output=True)
    resumed, straight = load_checkpoint(last), load_checkpoint(tmp_path / "straight" / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == 6
    for k, v in straight["model"].items():
        torch.testing.assert_close(resumed["model"][k], v, rtol=0, atol=0, msg=k)


def test_a_second_run_with_the_same_name_refuses_and_leaves_the_first_untouched(tmp_path):
    from fer_lib.data import load_synthetic
    from fer_lib.train import TrainConfig, train

    data = load_synthetic(n_train=96, n_val=32)
    cfg = TrainConfig(name="first", out_dir=str(tmp_path), model="baseline_resnet18", epochs=1, batch_size=32,
                      device="cpu", model_overrides={"stem": "default"})
    train(cfg, data, progress=False)
    run_dir = tmp_path / "first"
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    assert {"best.pt", "last.pt", "history.json", "config.json"} <= set(before)
    with pytest.raises(ValueError, match=r"already holds best\.pt and last\.pt.*--resume.*--overwrite"):
        train(cfg.replace(lr=1e-2), data, progress=False)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # byte-identical, nothing added
    result = train(cfg.replace(lr=1e-2, overwrite=True), data, progress=False)  # explicitly asked: replaced
    assert result.history and load_checkpoint(run_dir / "last.pt")["train_config"]["lr"] == 1e-2
