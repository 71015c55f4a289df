"""String factory for the attention modules: ``create_attn('cbam', channels)``.

Like timm's ``create_attn``, it lets a config name a module. Names: ``"cbam"``, ``"channel"``, ``"spatial"``,
``"region"``, ``"anchor"``, ``"gem"``; ``None``, ``""`` or ``"none"`` give ``None`` (no module).
"""

from __future__ import annotations

from torch import nn

from fer_lib.layers.anchor_attention import AnchorAttention
from fer_lib.layers.cbam import CBAM, ChannelAttention, SpatialAttention
from fer_lib.layers.gem import GeM
from fer_lib.layers.region_attention import RegionAttention

_ATTN = {
    "cbam": lambda c, **kw: CBAM(c, **kw),
    "channel": lambda c, **kw: ChannelAttention(c, **kw),
    "spatial": lambda c, **kw: SpatialAttention(**kw),
    "region": lambda c, **kw: RegionAttention(c, **kw),
    "anchor": lambda c, **kw: AnchorAttention(c, **kw),
    "gem": lambda c, **kw: GeM(**kw),
}


def attn_names() -> list[str]:
    """The names :func:`create_attn` accepts (besides ``"none"``)."""
    return sorted(_ATTN)


def create_attn(name: str | None, channels: int, **kwargs) -> nn.Module | None:
    """Create an attention / pooling module by name.

    Args:
        name: one of :func:`attn_names`, case-insensitive; ``None``/``""``/``"none"`` returns ``None``.
        channels: channels of the map the module will see (ignored by ``"spatial"`` and ``"gem"``).
        **kwargs: passed to the module (e.g. ``reduction=8`` for CBAM, ``p=3.0`` for GeM).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name is None or name.strip().lower() in ("", "none"):
        return None
    key = name.strip().lower()
    if key not in _ATTN:
        raise ValueError(f"create_attn: unknown attention {name!r}; choose one of {attn_names()} or 'none'")
    return _ATTN[key](channels, **kwargs)
