"""The attention layers and heads that SOTAResEmote is assembled from, one concept per file.

Each imports only ``torch`` (and ``timm``, none today), never the rest of ``fer_lib``, so it can be read, tested
and reused on its own (``tests/test_imports.py`` enforces that):

============================  ==========================================================================
``cbam.py``                   :class:`CBAM` (channel then spatial gate; Woo et al. 2018)
``region_attention.py``       :class:`RegionAttention` (soft masks for eyes+brows, nose, mouth, face)
``anchor_attention.py``       :class:`AnchorAttention` (learnable landmark points)
``transformer_refine.py``     :class:`TransformerRefine` (a few pre-norm encoder layers over tokens)
``gem.py``                    :class:`GeM` (generalised-mean pooling)
``fusion.py``                 :class:`StageFusion` (three backbone stages on one grid)
``heads.py``                  :class:`ClassifierHead`, :class:`AuxHead` (deep supervision)
============================  ==========================================================================
"""

from fer_lib.layers.anchor_attention import FER_ANCHORS, AnchorAttention
from fer_lib.layers.cbam import CBAM, ChannelAttention, SpatialAttention
from fer_lib.layers.fusion import StageFusion
from fer_lib.layers.gem import GeM
from fer_lib.layers.heads import AuxHead, ClassifierHead
from fer_lib.layers.region_attention import FER_REGIONS, RegionAttention
from fer_lib.layers.transformer_refine import TransformerRefine

__all__ = [
    "CBAM", "FER_ANCHORS", "FER_REGIONS", "AnchorAttention", "AuxHead", "ChannelAttention", "ClassifierHead", "GeM",
    "RegionAttention", "SpatialAttention", "StageFusion", "TransformerRefine",
]
