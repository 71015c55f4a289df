"""Deletion curve (Grad-CAM and EigenCAM vs random order) of a checkpoint on 500 PublicTest faces.

Usage: python scripts/deletion_fer2013.py [CHECKPOINT]   (default runs/cpu/best.pt; FER2013 found as usual)
"""
import sys
import time

import numpy as np

from fer_lib.data import load_fer2013
from fer_lib.explain import deletion_curve
from fer_lib.train import load_model

t = time.perf_counter()
model = load_model(sys.argv[1] if len(sys.argv) > 1 else "runs/cpu/best.pt")
sub = load_fer2013()["PublicTest"].subset(500, seed=0)
for method in ("gradcam", "eigencam"):
    r = deletion_curve(model, sub.images, sub.labels, saliency=method, steps=11, fill="mean")
    print(r.summary())
    for k, v in r.accuracy.items():
        print(f"  {k:>8} accuracy at 0,10,...,100% removed: {np.round(np.asarray(v), 3).tolist()}")
print(f"wall {time.perf_counter() - t:.1f} s")
