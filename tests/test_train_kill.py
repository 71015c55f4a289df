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
