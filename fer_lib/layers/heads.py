"""Classification heads: the final head and the auxiliary (deep-supervision) heads.

Auxiliary heads on intermediate stages (deep supervision, Lee et al., https://arxiv.org/abs/1409.5185; the
auxiliary classifiers of GoogLeNet, https://arxiv.org/abs/1409.4842) give the early stages a direct gradient
from the labels. They are used only in training: the trainer (``fer_lib.train``, ``TrainConfig.aux_weight``)
gets them from ``model.forward_train(x)`` and adds ``aux_weight * mean_i CE(aux_logits_i, y)`` to the loss;
``forward`` returns only the main logits, in either mode.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """Dropout then a linear layer: ``[B, F] -> [B, num_classes]``."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x))


class AuxHead(nn.Module):
    """Auxiliary head on a stage map: global average pooling then a linear layer.

    Shapes:
        ``[B, C, h, w]`` -> ``[B, num_classes]``.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.head = ClassifierHead(in_channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))
