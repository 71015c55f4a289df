"""DistributedDataParallel on CPU: two gloo processes started by torchrun keep identical weights."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent('''
    import json, os, sys, torch
    from torch import nn
    from fer_lib.data import load_synthetic
    from fer_lib.train import TrainConfig, train
    from fer_lib.train import distributed as D
    torch.set_num_threads(1)
    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    torch.manual_seed(100 + rank)  # different initial weights on purpose: DDP must broadcast rank 0's
    model = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Dropout(0.2), nn.Linear(8, 7))
    cfg = TrainConfig(name="ddp", out_dir=out, epochs=2, batch_size=16, lr=1e-2, device="cpu", ema_decay=0.9,
                      mixup_alpha=0.2, mix_prob=0.5)
    res = train(cfg, load_synthetic(n_train=96, n_val=37), progress=False, model=model)
    torch.save({"model": model.state_dict(), "ema": res.model.state_dict()}, f"{out}/rank{rank}.pt")
    with open(f"{out}/history{rank}.json", "w") as f:
        json.dump(res.history, f)
    D.cleanup(D.init_distributed("cpu"))
''')


def test_two_gloo_ranks_keep_identical_weights(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for part in ("model", "ema"):
        for k, v in r0[part].items():
            torch.testing.assert_close(r1[part][k], v, rtol=0, atol=0, msg=f"{part}.{k}")
    h0 = json.loads((tmp_path / "history0.json").read_text())
    h1 = json.loads((tmp_path / "history1.json").read_text())
    for a, b in zip(h0, h1):  # metrics are reduced over both ranks: identical everywhere
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert a[key] == pytest.approx(b[key], rel=1e-9), key
    # each rank trained on its 48-image shard: 3 steps of 16 per epoch, and saw different images
    ck = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["scheduler"]["step_count"] == 2 * 3
    assert "device cpu x2" in proc.stdout and proc.stdout.count("epoch 2/2") == 1  # only rank 0 prints


AUX_SCRIPT = textwrap.dedent('''
    import os, sys, torch
    from torch import nn
    from fer_lib.data import load_synthetic
    from fer_lib.models import ModelOutput
    from fer_lib.train import TrainConfig, train
    from fer_lib.train import distributed as D
    torch.set_num_threads(1)
    out, aux_weight = sys.argv[1], float(sys.argv[2])
    calls = {"aux": 0}

    class WithAuxHeads(nn.Module):  # the SOTAResEmote contract: forward -> logits; forward_train -> ModelOutput
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
            self.head = nn.Linear(8, 7)
            self.aux_heads = nn.ModuleList([nn.Linear(8, 7)])

        def forward_train(self, x):
            z = self.body(x)
            calls["aux"] += 1
            return ModelOutput(self.head(z), tuple(h(z) for h in self.aux_heads))

        def forward(self, x, return_aux=False):
            return self.forward_train(x) if return_aux else self.head(self.body(x))

    torch.manual_seed(0)
    cfg = TrainConfig(name=f"aux{aux_weight}", out_dir=out, epochs=2, batch_size=16, lr=1e-2, device="cpu",
                      aux_weight=aux_weight, ema=False)
    train(cfg, load_synthetic(n_train=96, n_val=32), progress=False, model=WithAuxHeads())
    print(f"rank {os.environ['RANK']} aux calls {calls['aux']}", flush=True)
    D.cleanup(D.init_distributed("cpu"))
''')


@pytest.mark.parametrize("aux_weight", [0.0, 0.3])
def test_ddp_with_auxiliary_heads_and_any_aux_weight(tmp_path, aux_weight):
    """aux_weight 0: the heads are not run (their parameters get no gradient, and DDP is told so); else run."""
    script = tmp_path / "ddp_aux.py"
    script.write_text(AUX_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path), str(aux_weight)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    calls = [int(n) for n in re.findall(r"rank \d aux calls (\d+)", proc.stdout)]  # the ranks' lines may interleave
    assert len(calls) == 2 and all(c == (0 if aux_weight == 0 else 2 * 3) for c in calls), proc.stdout
