"""Do the maps of a *trained* model point at the expression? On synthetic faces, where we know the answer.

The synthetic faces differ between classes only in the brows, eyes and mouth (``make_synthetic_faces(...,
return_masks=True)`` marks those pixels), so a model that learned the task must rely on them. A small CNN
(three conv blocks, a 6x6 last map like SOTAResEmote's ``feature_map``) is trained with ``fer_lib.train`` for
3 epochs on 3,000 faces (about 50 s on one shared CPU core), then:

* Grad-CAM mass inside the expression mask dilated by 2 px must be at least **2x** the mask's share of the
  image (the mask covers ~11% of the pixels after dilation). Measured when this test was written: 2.55x
  for the trained model on the 140 held-out faces; the same architecture untrained gives 1.00x (asserted
  below as a control, < 1.5x), so the threshold is not met by chance.
* Deleting the pixels Grad-CAM ranks highest must hurt accuracy more than deleting random pixels (a smaller
  area under the deletion curve).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from fer_lib.data import load_synthetic, make_synthetic_faces
from fer_lib.explain import compute_cam, deletion_curve

pytestmark = pytest.mark.slow

MASS_RATIO_MIN = 2.0  # CAM mass inside the dilated mask / the dilated mask's area fraction


def _block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                         nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """48x48 -> 24 -> 12 -> 6x6x64 ``feature_map`` (the Grad-CAM target by fer_lib's fallback) -> linear."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(_block(1, width), nn.MaxPool2d(2), _block(width, 2 * width), nn.MaxPool2d(2),
                                      _block(2 * width, 4 * width), nn.MaxPool2d(2))
        self.feature_map = nn.Identity()
        self.head = nn.Linear(4 * width, 7)

    def forward(self, x):
        return self.head(self.feature_map(self.features(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from fer_lib.train import TrainConfig, train

    torch.manual_seed(0)
    cfg = TrainConfig(name="explain_small", data="synthetic", epochs=3, batch_size=64, lr=3e-3, weight_decay=1e-4,
                      warmup_epochs=0.1, label_smoothing=0.0, aux_weight=0.0, augment=False, ema=False,
                      channels_last=False, device="cpu", num_threads=1, out_dir=str(tmp_path_factory.mktemp("runs")))
    result = train(cfg, data=load_synthetic(n_train=3000, n_val=300, seed=0), progress=False, model=SmallCNN())
    assert result.history[-1]["val_acc"] > 0.7, "the model must have learned the task for the maps to mean much"
    return result.model.eval()


@pytest.fixture(scope="module")
def held_out():
    images, labels, masks = make_synthetic_faces(140, seed=7, return_masks=True)
    dilated = np.stack([ndimage.binary_dilation(m, iterations=2) for m in masks.numpy()])
    return images, labels, dilated


def _mass_ratio(model, images, labels, masks, method="gradcam"):
    cams = compute_cam(model, images, target=labels.tolist(), method=method)
    inside = (cams * masks).sum((1, 2)) / np.maximum(cams.sum((1, 2)), 1e-8)
    return float((inside / masks.mean((1, 2))).mean())


def test_gradcam_mass_lies_on_brows_eyes_mouth(trained, held_out):
    images, labels, masks = held_out
    ratio = _mass_ratio(trained, images, labels, masks)
    torch.manual_seed(0)
    control = _mass_ratio(SmallCNN().eval(), images, labels, masks)
    print(f"Grad-CAM mass / mask area: trained {ratio:.2f}x, untrained {control:.2f}x")
    assert ratio > MASS_RATIO_MIN
    assert control < 1.5  # the threshold is not met by a model that has learned nothing
    assert _mass_ratio(trained, images, labels, masks, method="gradcam++") > MASS_RATIO_MIN


def test_deleting_gradcam_pixels_hurts_more_than_random(trained, held_out):
    images, labels, _ = held_out
    res = deletion_curve(trained, images, labels, saliency="gradcam", steps=6, fill="mean")
    print(res.summary())
    assert res.accuracy["saliency"][0] == res.accuracy["random"][0] > 0.7
    assert res.auc["saliency"] < res.auc["random"]
