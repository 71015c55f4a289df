"""Write ``fer_lib/weights/detector/mtcnn.safetensors`` (fp16) from the MTCNN weights in the ``facenet-pytorch`` wheel:
``pip install --no-deps facenet-pytorch==2.6.0 && python scripts/convert_mtcnn.py``.

The weights are the original MTCNN authors', converted to PyTorch by facenet-pytorch (MIT licence, Copyright (c)
2019 Timothy Esler; the licence text is kept in the file's metadata and in fer_lib/weights/MODEL_CARD.md). The
state dicts are read with ``weights_only=True`` (no pickled code runs).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[1] / "fer_lib" / "weights" / "detector" / "mtcnn.safetensors"


def main() -> int:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        print("error: facenet-pytorch is not installed: pip install --no-deps facenet-pytorch==2.6.0", file=sys.stderr)
        return 1
    data = Path(spec.submodule_search_locations[0]) / "data"
    licence = (Path(spec.origin).parents[1] / "facenet_pytorch-2.6.0.dist-info" / "LICENSE.md")
    tensors = {}
    for net in ("pnet", "rnet", "onet"):
        state = torch.load(data / f"{net}.pt", map_location="cpu", weights_only=True)
        tensors.update({f"{net}.{k}": v.to(torch.float16).contiguous() for k, v in state.items()})
    meta = {"source": "facenet-pytorch 2.6.0 (https://github.com/timesler/facenet-pytorch), data/{p,r,o}net.pt",
            "model": "MTCNN, Zhang et al. 2016, https://arxiv.org/abs/1604.02878", "dtype": "float16",
            "licence": licence.read_text() if licence.is_file() else "MIT, Copyright (c) 2019 Timothy Esler"}
    save_file(tensors, str(OUT), metadata=meta)
    print(f"wrote {OUT.relative_to(OUT.parents[3])}: {len(tensors)} tensors, {OUT.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
