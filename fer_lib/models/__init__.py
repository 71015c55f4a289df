"""The SOTAResEmote model family: its config and assembly (``sota_resemote.py``) and one registry (``registry.py``).

Create models by name with :func:`create_model`; :func:`list_models` lists the names. The building blocks live
in :mod:`fer_lib.layers` (:class:`CBAM`, :class:`RegionAttention`, :class:`AnchorAttention`,
:class:`TransformerRefine`, :class:`GeM`, :class:`StageFusion`, :class:`AuxHead`) and are re-exported here.
"""

from fer_lib.layers import (
    CBAM,
    FER_ANCHORS,
    FER_REGIONS,
    AnchorAttention,
    AuxHead,
    ChannelAttention,
    ClassifierHead,
    GeM,
    RegionAttention,
    SpatialAttention,
    StageFusion,
    TransformerRefine,
)
from fer_lib.models.registry import (
    GRADCAM_TARGETS,
    MODELS,
    ModelSpec,
    build_model,
    count_parameters,
    create_model,
    gradcam_target_layer,
    list_models,
    model_config,
)
from fer_lib.models.sota_resemote import ModelOutput, SOTAResEmote, SOTAResEmoteConfig

__all__ = [
    "CBAM", "FER_ANCHORS", "FER_REGIONS", "GRADCAM_TARGETS", "MODELS", "AnchorAttention", "AuxHead",
    "ChannelAttention", "ClassifierHead", "GeM", "ModelOutput", "RegionAttention", "SOTAResEmote",
    "SOTAResEmoteConfig", "SpatialAttention", "StageFusion", "TransformerRefine", "build_model", "count_parameters",
    "create_model", "gradcam_target_layer", "list_models", "model_config", "ModelSpec",
]
