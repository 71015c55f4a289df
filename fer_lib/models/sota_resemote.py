"""SOTAResEmote: a timm ResNet with switchable attention modules for 48x48 facial-expression images.

Data flow (``h x w`` is the fusion grid; shapes for the first design, ``sota_resemote_small_v1``, on a
``[B, 1, 48, 48]`` input; the course's ``sota_resemote_small`` differs as its config table below says)::

    x [B,1,48,48] -(resize to input_size)-> ResNet stem + stages (features_only, last three stages)
      stages: [B,128,12,12], [B,256,6,6], [B,512,3,3]      --aux--> two AuxHeads (forward_train only)
      --fusion--> [B,256,6,6] --cbam--> [B,256,6,6] = feature_map        (forward_features ends here)
      feature_map --gem/avg--> [B,256]
                  --region--> [B,4,256]  --anchor--> [B,12,256]
                  --transformer(map tokens + region + anchor tokens)--> class token [B,256]
      head: dropout -> linear on concat(pooled map, class token)  -> logits [B,7]

With the transformer off, the region and anchor features are flattened into the head instead. With every
switch off the model *is* the baseline: backbone last stage -> average pooling -> (dropout) -> linear.

Resolution choice (measured in ``docs/results/models.md``): a stock ResNet reduces 48x48 by 32 to a 2x2 last
stage, too small for spatial attention. Dropping the stem max-pool (``stem="no_maxpool"``) reduces by 16 instead,
giving 12x12 / 6x6 / 3x3 stage maps at the native 48x48 input -- the same maps as upsampling to 96x96 with
the stock stem, at a lower cost (the 7x7 stem conv runs on 48x48 instead of 96x96) and with no interpolated
pixels. Fusion then works on the middle stage's 6x6 grid (``fusion_grid="middle"``), so every attention module
sees 36 cells. Baselines use the same stem and input size, so comparisons are fair.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import timm
import torch
import torch.nn.functional as F
from torch import nn

from fer_lib.layers.anchor_attention import AnchorAttention
from fer_lib.layers.cbam import CBAM
from fer_lib.layers.fusion import StageFusion
from fer_lib.layers.gem import GeM
from fer_lib.layers.heads import AuxHead, ClassifierHead
from fer_lib.layers.region_attention import RegionAttention
from fer_lib.layers.transformer_refine import TransformerRefine

HUB_HELP = "no internet / HF hub unreachable; use pretrained=False or set HF_HUB_OFFLINE with a cached copy"
STEMS = ("default", "no_maxpool")
FUSION_GRIDS = ("last", "middle", "first")
CBAM_PLACES = ("map", "blocks", "both")


def _type_name(obj) -> str:
    """``numpy.ndarray``, ``PIL.Image.Image``, ``list``: the type of a wrong model input, for its error message."""
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class ModelOutput(NamedTuple):
    """What :meth:`SOTAResEmote.forward_train` returns (``forward`` itself always returns logits).

    Attributes:
        logits: ``[B, num_classes]``.
        aux_logits: one ``[B, num_classes]`` per auxiliary head (an empty tuple when ``aux`` is off).
    """

    logits: torch.Tensor
    aux_logits: tuple[torch.Tensor, ...]


@dataclass
class SOTAResEmoteConfig:
    """Everything that defines a SOTAResEmote model; an ablation is a config.

    Registered presets (``fer_lib.models.registry.MODELS``; the switches are fusion, cbam, region, anchor,
    transformer, gem, aux)::

        name                    backbone  switches  fusion_dim  transformer dim/depth  drop_path  dropout
        sota_resemote_small     resnet18  all on    256         128 / 1 (no map tokens) 0.0       0.0
        sota_resemote_small_v1  resnet18  all on    256         256 / 2                0.05       0.2
        sota_resemote_medium    resnet34  all on    256         256 / 2                0.1        0.3
        sota_resemote_large     resnet50  all on    384         384 / 3                0.1        0.3
        baseline_resnetXX       same      all off   -           -                      0.0        0.0

    All variants take ``[B, in_chans, 48, 48]``. ``sota_resemote_small`` (the course's model) resizes to
    ``input_size=64`` with the stock stem, puts CBAM inside the residual blocks (``cbam_where="blocks"``) and fuses
    on layer2's 8x8 grid (``fusion_grid="first"``); the others use ``input_size=48, stem="no_maxpool"``.
    Measured on resnet18 (``docs/results/models.md``, shared 2-core CPU, 1 thread): 48 + stock stem gives
    6/3/2 stage grids (0.19 GFLOPs/image); 48 + ``no_maxpool`` gives 12/6/3 (0.63 GFLOPs); upsampling to 96
    with the stock stem gives the same 12/6/3 maps for 0.64 GFLOPs and ~8% fewer training images per CPU-second;
    96 + ``no_maxpool`` gives 24/12/6 at 2.5 GFLOPs (~4x the cost).
    """

    backbone: str = "resnet18"  # timm model name, built with features_only=True (last three stages)
    num_classes: int = 7  # output logits
    in_chans: int = 1  # 1 = grayscale (default), 3 = gray repeated; timm adapts pretrained stem weights
    input_size: int = 48  # the model resizes its input to input_size x input_size first (48 = no resize)
    stem: str = "no_maxpool"  # "default" (stride 4, 48 -> 2x2 last stage) | "no_maxpool" (stride 2, -> 3x3)
    drop_path_rate: float = 0.05  # stochastic depth in the backbone's residual blocks (timm)
    fusion: bool = True  # fuse the last three stages (1x1 conv+BN+ReLU each, weighted sum)
    fusion_dim: int = 256  # common width D of the fused map
    fusion_grid: str = "middle"  # grid of the fused map: "last" (3x3 at 48), "middle" (6x6) or "first" (12x12)
    cbam: bool = True  # CBAM channel + spatial attention (where: cbam_where)
    cbam_where: str = "map"  # "map": once, on the (fused) map; "blocks": in the blocks of layer2-4; "both"
    cbam_reduction: int = 16  # CBAM channel-MLP reduction ratio
    cbam_kernel: int = 7  # CBAM spatial conv size
    region: bool = True  # facial-region attention (eyes+brows, nose, mouth, face)
    anchor: bool = True  # learnable landmark anchors (12 points)
    anchor_sigma: float = 0.12  # initial anchor width in image units
    transformer: bool = True  # transformer over map + region + anchor tokens with a class token
    transformer_dim: int = 256  # token width E
    transformer_depth: int = 2  # encoder layers
    transformer_heads: int = 4  # attention heads
    transformer_map_tokens: bool = True  # map cells are tokens too (off: only class, region and anchor tokens)
    gem: bool = True  # GeM pooling of the map (off: average pooling)
    gem_p: float = 3.0  # initial GeM exponent
    aux: bool = True  # auxiliary heads on the two earlier stages (read by forward_train, i.e. training only)
    dropout: float = 0.2  # dropout before the final linear layer

    SWITCHES = ("fusion", "cbam", "region", "anchor", "transformer", "gem", "aux")

    def __post_init__(self):
        if self.stem not in STEMS:
            raise ValueError(f"SOTAResEmoteConfig.stem={self.stem!r}; choose one of {STEMS}")
        if self.cbam_where not in CBAM_PLACES:
            raise ValueError(f"SOTAResEmoteConfig.cbam_where={self.cbam_where!r}; choose one of {CBAM_PLACES}")
        if self.fusion_grid not in FUSION_GRIDS:
            raise ValueError(f"SOTAResEmoteConfig.fusion_grid={self.fusion_grid!r}; choose one of {FUSION_GRIDS}")
        if self.in_chans not in (1, 3):
            raise ValueError(f"SOTAResEmoteConfig.in_chans={self.in_chans}; use 1 (grayscale) or 3 (gray x3)")
        if self.input_size < 32:
            raise ValueError(f"SOTAResEmoteConfig.input_size={self.input_size} is too small; use 48 or more")

    def to_dict(self) -> dict:
        """Plain ``dict`` of the fields (safe for ``torch.save`` + ``torch.load(weights_only=True)``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SOTAResEmoteConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"SOTAResEmoteConfig: unknown field(s) {unknown}; valid fields are {sorted(names)}")
        return cls(**d)


def add_block_cbam(backbone: nn.Module, cfg: SOTAResEmoteConfig) -> int:
    """Put a :class:`CBAM` into every residual block of the three stages the model reads (``layer2``-``layer4``
    of a ResNet); returns how many.

    timm's ResNet blocks apply their ``se`` module (``None`` unless an attention layer is configured) after the
    block's last BatchNorm and before the residual sum: exactly where the CBAM paper puts its module (Fig. 3 of
    https://arxiv.org/abs/1807.06521). The first stage (16x16 maps at 64 px) is left out: it would cost about
    half of all the blocks' attention time for the least semantic features (``docs/results/models.md``).
    """
    count = 0
    for stage in ("layer2", "layer3", "layer4"):
        for block in getattr(backbone, stage, ()):
            if not hasattr(block, "se"):
                raise ValueError(f"cbam_where={cfg.cbam_where!r} needs timm ResNet blocks; {cfg.backbone!r} has none")
            last_bn = getattr(block, "bn3", None) or block.bn2
            block.se = CBAM(last_bn.num_features, reduction=cfg.cbam_reduction, kernel_size=cfg.cbam_kernel)
            count += 1
    if count == 0:
        raise ValueError(f"cbam_where={cfg.cbam_where!r} found no residual stages in backbone {cfg.backbone!r}")
    return count


def create_backbone(cfg: SOTAResEmoteConfig, pretrained: bool = False) -> nn.Module:
    """timm ``features_only`` backbone returning its last three stages, with the configured stem."""
    if not timm.is_model(cfg.backbone):
        raise ValueError(f"unknown timm backbone {cfg.backbone!r}; use e.g. 'resnet18', 'resnet34', 'resnet50'")
    kwargs = dict(features_only=True, out_indices=(-3, -2, -1), in_chans=cfg.in_chans,
                  drop_path_rate=cfg.drop_path_rate)
    try:
        backbone = timm.create_model(cfg.backbone, pretrained=pretrained, **kwargs)
    except Exception as e:  # noqa: BLE001 - any download / cache failure gets the same actionable message
        if not pretrained:
            raise
        raise RuntimeError(f"could not load pretrained {cfg.backbone!r} weights: {HUB_HELP} ({e})") from e
    if cfg.stem == "no_maxpool":
        if not hasattr(backbone, "maxpool"):
            raise ValueError(f"stem='no_maxpool' needs a ResNet-like backbone with .maxpool; {cfg.backbone!r} has none")
        backbone.maxpool = nn.Identity()
    if cfg.cbam and cfg.cbam_where in ("blocks", "both"):
        add_block_cbam(backbone, cfg)
    return backbone


class SOTAResEmote(nn.Module):
    """ResNet + (fusion, CBAM, region attention, anchor attention, transformer, GeM, aux heads), each switchable.

    Args:
        config: a :class:`SOTAResEmoteConfig`.
        model_name: the registry name (stored for checkpoints and Grad-CAM lookup).
        pretrained: load timm's ImageNet weights for the backbone (needs the HF hub or a cached copy).

    Shapes:
        ``forward(x [B, in_chans, 48, 48])`` -> logits ``[B, num_classes]`` (train and eval mode);
        ``forward_train(x)`` (or ``forward(x, return_aux=True)``) -> :class:`ModelOutput` with the auxiliary logits.
        ``forward_features(x)`` -> ``feature_map [B, D, h, w]``; ``forward_head(feature_map)`` -> logits.
    """

    def __init__(self, config: SOTAResEmoteConfig, model_name: str = "sota_resemote_custom", pretrained=False):
        super().__init__()
        cfg = self.config = config
        self.model_name = model_name
        self.backbone = create_backbone(cfg, pretrained)
        chans = self.backbone.feature_info.channels()
        grids = self._stage_grids()
        self.aux_heads = nn.ModuleList(AuxHead(c, cfg.num_classes) for c in chans[:-1]) if cfg.aux else None
        if cfg.fusion:
            target = {"last": -1, "middle": -2, "first": -3}[cfg.fusion_grid]
            self.fusion = StageFusion(tuple(chans), cfg.fusion_dim, target_index=target)
            dim, self.grid = cfg.fusion_dim, grids[target]
        else:
            self.fusion, dim, self.grid = None, chans[-1], grids[-1]
        self.num_features = dim
        self.cbam = CBAM(dim, cfg.cbam_reduction, cfg.cbam_kernel) if cfg.cbam and cfg.cbam_where != "blocks" else None
        self.feature_map = nn.Identity()  # the final conv map: Grad-CAM target (see registry.MODELS)
        self.region = RegionAttention(dim) if cfg.region else None
        self.anchor = AnchorAttention(dim, sigma=cfg.anchor_sigma) if cfg.anchor else None
        n_extra = (len(self.region.region_names) if self.region else 0) + (
            len(self.anchor.anchor_names) if self.anchor else 0)
        self.transformer = None
        if cfg.transformer:
            self.transformer = TransformerRefine(dim, self.grid, cfg.transformer_dim, cfg.transformer_depth,
                                                 cfg.transformer_heads, num_extra=n_extra,
                                                 map_tokens=cfg.transformer_map_tokens)
        self.pool = GeM(cfg.gem_p) if cfg.gem else None
        head_in = dim + (cfg.transformer_dim if cfg.transformer else n_extra * dim)
        self.head = ClassifierHead(head_in, cfg.num_classes, cfg.dropout)

    @torch.no_grad()
    def _stage_grids(self) -> list[tuple[int, int]]:
        was_training = self.backbone.training
        self.backbone.eval()
        size = self.config.input_size
        feats = self.backbone(torch.zeros(1, self.config.in_chans, size, size))
        self.backbone.train(was_training)
        return [tuple(f.shape[-2:]) for f in feats]

    # ---- pieces -------------------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        # raw pixels (a uint8 tensor, a numpy array) would fail deep inside the first conv with a message about
        # "unsigned char" or "numpy.ndarray"; say here what the input must be. A type and a dtype test per forward
        # (nothing beside one conv); torch.jit.trace and the ONNX export record no operation for them.
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else f"a {_type_name(x)}"
            raise TypeError(
                f"{self.model_name}: got {got}, but a model takes float input [B, {self.config.in_chans}, 48, 48] "
                "normalised as in training; turn uint8 faces into it with "
                f"fer_lib.data.preprocess(images, channels={self.config.in_chans}), or get class probabilities "
                "straight from the faces with fer_lib.inference.predict_proba(model, images)"
            )
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(
                f"{self.model_name}: expected input [B, {self.config.in_chans}, 48, 48], got {list(x.shape)}; "
                "use fer_lib.data.preprocess(images, channels=model.config.in_chans)"
            )
        if x.shape[-2] == 0 or x.shape[-1] == 0:
            raise ValueError(
                f"{self.model_name}: expected input [B, {self.config.in_chans}, 48, 48], got {list(x.shape)}: images "
                "without pixels (a height or width of 0); did a crop or a slice select nothing?"
            )
        s = self.config.input_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        return x

    def _features(self, x: torch.Tensor, maps: dict | None = None):
        stages = self.backbone(self._check_input(x))
        fmap = self.fusion(stages) if self.fusion is not None else stages[-1]
        if self.cbam is not None:
            fmap, where = self.cbam.forward_with_map(fmap)
            if maps is not None:
                maps["cbam"] = [where]
        return self.feature_map(fmap), stages

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, in_chans, 48, 48]`` -> the final conv map ``[B, D, h, w]`` (after fusion and CBAM)."""
        return self._features(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False, maps: dict | None = None) -> torch.Tensor:
        """``feature_map [B, D, h, w]`` -> logits ``[B, num_classes]`` (or the head input when ``pre_logits``)."""
        pooled = self.pool(x) if self.pool is not None else x.mean(dim=(2, 3))
        extra = []
        if self.region is not None:
            feats, rmaps = self.region(x)
            extra.append(feats)
            if maps is not None:
                maps["regions"], maps["region_names"] = rmaps, list(self.region.region_names)
        if self.anchor is not None:
            feats, amaps = self.anchor(x)
            extra.append(feats)
            if maps is not None:
                maps["anchor_maps"] = amaps
                maps["anchors"] = self.anchor.anchor_positions().detach()
                maps["anchor_names"] = list(self.anchor.anchor_names)
        if self.transformer is not None:
            cls, attn = self.transformer(x, torch.cat(extra, dim=1) if extra else None)
            parts = [pooled, cls]
            if maps is not None:
                maps["transformer"] = attn
        else:
            parts = [pooled] + [e.flatten(1) for e in extra]
        feats = torch.cat(parts, dim=1) if len(parts) > 1 else pooled
        return feats if pre_logits else self.head(feats)

    def forward_train(self, x: torch.Tensor) -> ModelOutput:
        """``x [B, in_chans, 48, 48]`` -> :class:`ModelOutput`: the logits and one ``[B, num_classes]`` per
        auxiliary head (an empty tuple when ``aux`` is off). What the training loss needs; any mode."""
        fmap, stages = self._features(x)
        logits = self.forward_head(fmap)
        aux = tuple(h(s) for h, s in zip(self.aux_heads, stages[:-1])) if self.aux_heads is not None else ()
        return ModelOutput(logits, aux)

    def forward(self, x: torch.Tensor, return_aux: bool = False) -> torch.Tensor | ModelOutput:
        """``x [B, in_chans, 48, 48]`` -> logits ``[B, num_classes]``, in training and in eval mode alike.

        ``return_aux=True`` returns :meth:`forward_train`'s :class:`ModelOutput` instead: the trainer asks for it
        through ``forward`` because ``DistributedDataParallel`` synchronises gradients only for ``forward`` calls.

        Raises:
            TypeError: raw pixels (a ``uint8`` tensor, a numpy array): ``fer_lib.data.preprocess`` them first.
            ValueError: the wrong number of channels, or images without pixels.
        """
        if return_aux:
            return self.forward_train(x)
        return self.forward_head(self._features(x)[0])

    def attention_maps(self, x: torch.Tensor) -> dict:
        """Run ``x [B, in_chans, 48, 48]`` and collect the maps of the modules that are on.

        Returns:
            dict with ``"logits"`` ``[B, num_classes]``, ``"token_grid"`` ``(h, w)`` (the grid every map is on)
            and, only for modules switched on: ``"cbam"`` (list of ``[B, 1, h, w]`` spatial gates: the blocks'
            first, in depth order and each on its own stage's grid, then the one on the fused map),
            ``"regions"`` ``[B, R, h, w]`` + ``"region_names"``, ``"anchors"`` ``[K, 2]`` (x, y) in ``[0, 1]``
            image coordinates + ``"anchor_names"`` + ``"anchor_maps"`` ``[B, K, h, w]``, ``"transformer"`` (list
            of ``[B, heads, T, T]``, token 0 is the class token, then the ``h*w`` map cells row by row unless
            ``transformer_map_tokens`` is off, then regions, then anchors).
            Call it under ``torch.no_grad()`` for plotting; the model's train/eval mode is left as it is.
        """
        maps: dict = {"token_grid": tuple(self.grid)}
        gates: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda mod, inp, out: gates.append(mod.spatial.gate(mod.channel(inp[0]))))
                 for m in self.block_cbams()]
        try:
            fmap, _ = self._features(x, maps)
        finally:
            for h in hooks:
                h.remove()
        if gates:  # blocks first (in depth order), then the map's CBAM, if any
            maps["cbam"] = gates + maps.get("cbam", [])
        maps["logits"] = self.forward_head(fmap, maps=maps)
        return maps

    def block_cbams(self) -> list[CBAM]:
        """The CBAMs inside the backbone's residual blocks (``cbam_where`` ``"blocks"`` / ``"both"``), in depth order."""
        return [m for name, m in self.backbone.named_modules() if isinstance(m, CBAM) and name.endswith(".se")]
