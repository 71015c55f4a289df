"""Attention modules and the SOTAResEmote model family (see ``docs/DESIGN.md``).

Create models by name with :func:`create_model`; :func:`list_models` lists the names. The building blocks
(:class:`CBAM`, :class:`RegionAttention`, :class:`AnchorAttention`, :class:`TransformerRefine`, :class:`GeM`,
:class:`StageFusion`, :class:`AuxHead`) can be used on their own; :func:`create_attn` makes one by name.
"""

from fer_lib.models.anchor_attention import FER_ANCHORS, AnchorAttention
from fer_lib.models.cbam import CBAM, ChannelAttention, SpatialAttention
from fer_lib.models.factory import attn_names, create_attn
from fer_lib.models.fusion import StageFusion
from fer_lib.models.gem import GeM
from fer_lib.models.heads import AuxHead, ClassifierHead
from fer_lib.models.region_attention import FER_REGIONS, RegionAttention
from fer_lib.models.registry import (
    GRADCAM_TARGETS,
    build_model,
    count_parameters,
    create_model,
    gradcam_target_layer,
    list_models,
    model_config,
)
from fer_lib.models.sota_resemote import PRESETS, ModelOutput, SOTAResEmote, SOTAResEmoteConfig
from fer_lib.models.transformer_refine import TransformerRefine

__all__ = [
    "CBAM", "FER_ANCHORS", "FER_REGIONS", "GRADCAM_TARGETS", "PRESETS", "AnchorAttention", "AuxHead",
    "ChannelAttention", "ClassifierHead", "GeM", "ModelOutput", "RegionAttention", "SOTAResEmote",
    "SOTAResEmoteConfig", "SpatialAttention", "StageFusion", "TransformerRefine", "attn_names", "build_model",
    "count_parameters", "create_attn", "create_model", "gradcam_target_layer", "list_models", "model_config",
]
