"""MTCNN, the face detector ``fer_lib.detect`` uses by default: three small CNNs in a cascade, run by torch.

Zhang, Zhang, Li & Qiao, *Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks*,
IEEE Signal Processing Letters 2016, https://arxiv.org/abs/1604.02878.

* **P-Net** slides over an image pyramid (a fully convolutional net; each output cell is a 12x12 window, stride 2)
  and proposes windows with a face probability and a box correction;
* **R-Net** looks again at each proposal, cropped and resized to 24x24, and rejects most;
* **O-Net** looks at the survivors at 48x48 and gives the final probability, box and five landmarks.

Between the stages: non-maximum suppression, the box corrections, and squaring the boxes. The weights are those of
the original authors, as converted to PyTorch by the ``facenet-pytorch`` project (MIT licence, Copyright (c) 2019
Timothy Esler), stored in ``fer_lib/weights/detector/mtcnn.safetensors`` in fp16 (``scripts/convert_mtcnn.py`` made it; the
card: ``fer_lib/weights/MODEL_CARD.md``), so fer_lib needs no other package to find faces. The cascade here follows
the published algorithm and is tested box for box against facenet-pytorch's (``tests/test_mtcnn.py``).

Shapes: :meth:`MTCNN.detect` takes ``uint8 RGB [H, W, 3]`` and returns ``boxes float [N, 4]`` as
``(x1, y1, x2, y2)`` in the image's pixels and ``probs float [N]``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchvision.ops import nms

WEIGHTS = Path(__file__).with_name("weights") / "detector" / "mtcnn.safetensors"
"""The three networks' weights (fp16; keys ``pnet.*``, ``rnet.*``, ``onet.*``)."""


class PNet(nn.Module):
    """Proposal net: fully convolutional; ``[B, 3, H, W]`` -> box corrections ``[B, 4, h, w]`` and face
    probabilities ``[B, 2, h, w]`` (one cell per 12x12 window, stride 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    # the converted weights expect the feature map transposed (the original models saw images with x and y swapped)
    return x.permute(0, 3, 2, 1).reshape(len(x), -1)


class RNet(nn.Module):
    """Refinement net: ``[B, 3, 24, 24]`` -> box corrections ``[B, 4]``, probabilities ``[B, 2]``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net: ``[B, 3, 48, 48]`` -> box corrections ``[B, 4]``, landmarks ``[B, 10]``, probabilities
    ``[B, 2]``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125  # to about [-1, 1], as the networks were trained


def _proposals(reg: torch.Tensor, probs: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    """P-Net's cells above ``threshold`` as rows ``(x1, y1, x2, y2, score, 4 corrections)`` in the image's pixels
    (each cell is a 12x12 window of the scaled image, stride 2)."""
    keep = probs >= threshold  # [h, w]
    yx = keep.nonzero()
    score = probs[keep]
    corrections = reg[:, keep].T  # [K, 4]
    xy = yx.flip(1).to(reg.dtype)
    top_left = ((2 * xy + 1) / scale).floor()
    bottom_right = ((2 * xy + 12) / scale).floor()
    return torch.cat([top_left, bottom_right, score[:, None], corrections], dim=1)


def _apply_corrections(boxes: torch.Tensor, corrections: torch.Tensor, plus_one: bool) -> torch.Tensor:
    """Move each box's edges by its corrections (fractions of its width and height)."""
    w = boxes[:, 2] - boxes[:, 0] + (1 if plus_one else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if plus_one else 0)
    out = boxes.clone()
    out[:, 0:4] = boxes[:, 0:4] + corrections * torch.stack([w, h, w, h], dim=1)
    return out


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Each box grown to a square around its centre (side: its longer side)."""
    out = boxes.clone()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side[:, None]
    return out


def _crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``[K, 3, size, size]``: each box cut from ``image`` ``[3, H, W]`` (boxes leaving the image are cut at its
    border, as the original code does) and resized with area interpolation."""
    H, W = image.shape[1:]
    b = boxes[:, :4].trunc().int().tolist()
    out = []
    for x1, y1, x2, y2 in b:
        x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, W), min(y2, H)
        if x2 > x1 - 1 and y2 > y1 - 1:
            out.append(F.interpolate(image[None, :, y1 - 1:y2, x1 - 1:x2], size=(size, size), mode="area"))
        else:  # nothing of the box is inside the image: a blank crop, rejected by the next stage
            out.append(torch.zeros(1, 3, size, size, dtype=image.dtype))
    return torch.cat(out)


def _nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Non-maximum suppression where overlap is the intersection over the *smaller* box's area (MTCNN's last
    step: a small box inside a larger, better one goes)."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = list(np.argsort(scores))
    pick = []
    while order:
        i = order.pop()
        pick.append(i)
        rest = np.array(order, dtype=int)
        if not len(rest):
            break
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        overlap = w * h / np.minimum(area[i], area[rest])
        order = [int(j) for j, o in zip(rest, overlap) if o <= threshold]
    return pick


@functools.lru_cache(maxsize=4)
def _networks(weights: str) -> tuple[PNet, RNet, ONet]:
    """The three networks with their weights from ``weights``, read once per file and shared by every
    :class:`MTCNN` (they only run under ``no_grad``, in eval mode)."""
    state = {k: v.float() for k, v in load_file(weights).items()}
    nets = PNet().eval(), RNet().eval(), ONet().eval()
    for name, net in zip(("pnet", "rnet", "onet"), nets):
        prefix = name + "."
        net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return nets


class MTCNN:
    """The three networks and the cascade between them.

    Args:
        min_face_size: the smallest face side (pixels) looked for; the pyramid starts at ``12 / min_face_size``.
        thresholds: the face probability each stage needs (P-Net, R-Net, O-Net); the paper's values.
        factor: the pyramid's scale step.
        weights: the safetensors file (default :data:`WEIGHTS`).
    """

    def __init__(self, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7), factor: float = 0.709,
                 weights: str | Path = WEIGHTS):
        if min_face_size < 12:
            raise ValueError(f"MTCNN: min_face_size={min_face_size}; P-Net's window is 12 pixels, ask for 12 or more")
        self.min_face_size, self.thresholds, self.factor = min_face_size, tuple(thresholds), factor
        self.pnet, self.rnet, self.onet = _networks(str(weights))

    def scales(self, h: int, w: int) -> list[float]:
        """The pyramid: scales at which a face of ``min_face_size`` pixels fills P-Net's 12-pixel window, then
        smaller by ``factor`` until the shorter side is under 12 pixels."""
        scale = 12.0 / self.min_face_size
        side = min(h, w) * scale
        out = []
        while side >= 12:
            out.append(scale)
            scale *= self.factor
            side *= self.factor
        return out

    @torch.no_grad()
    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes float32 [N, 4] as (x1, y1, x2, y2), probs float32 [N])`` of the faces in ``uint8 [H, W, 3]``."""
        image = torch.as_tensor(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()
        h, w = image.shape[1:]
        t1, t2, t3 = self.thresholds
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        # 1. P-Net over the pyramid: proposals, suppressed within each scale, then across scales
        found = []
        for scale in self.scales(h, w):
            scaled = F.interpolate(image[None], size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
            reg, probs = self.pnet(_normalise(scaled))
            rows = _proposals(reg[0], probs[0, 1], scale, t1)
            found.append(rows[nms(rows[:, :4], rows[:, 4], 0.5)])
        boxes = torch.cat(found) if found else torch.zeros(0, 9)
        if not len(boxes):
            return empty
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        boxes = _square(_apply_corrections(boxes[:, :5], boxes[:, 5:9], plus_one=False))
        # 2. R-Net on 24x24 crops
        reg, probs = self.rnet(_normalise(_crops(image, boxes, 24)))
        keep = probs[:, 1] > t2
        boxes = torch.cat([boxes[keep, :4], probs[keep, 1:2]], dim=1)
        reg = reg[keep]
        if not len(boxes):
            return empty
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _square(_apply_corrections(boxes[pick], reg[pick], plus_one=True))
        # 3. O-Net on 48x48 crops
        reg, _landmarks, probs = self.onet(_normalise(_crops(image, boxes, 48)))
        keep = probs[:, 1] > t3
        boxes = torch.cat([boxes[keep, :4], probs[keep, 1:2]], dim=1)
        if not len(boxes):
            return empty
        boxes = _apply_corrections(boxes, reg[keep], plus_one=True).numpy()
        pick = _nms_min(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = boxes[pick]
        return boxes[:, :4].astype(np.float32), boxes[:, 4].astype(np.float32)
