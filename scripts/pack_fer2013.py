"""Pack FER2013's Training and PublicTest splits into one small .npz that travels with the checkout.

    python scripts/pack_fer2013.py                                   # ../shared/fer2013 -> data/packed/...npz
    python scripts/pack_fer2013.py --root /path/to/fer2013 --max-mib 0   # everything (~52 MiB), no size limit

The pixels are stored losslessly (fer_lib/data/packed.py). ``--max-mib`` (default 36: a lent GPU machine takes a
working tree of at most 64 MiB, and the repository is ~24 MiB of it) keeps all of PublicTest and a stratified
subset of Training that fits (about 18,000 of its 28,709 images at 36 MiB); the file and the loaded data say so.

Reads any form ``fer_lib.data.load_fer2013`` reads (Kaggle folders, fer2013.csv, ...), writes
``fer_lib.data.packed.pack_fer2013``'s file (uint8 images, labels, split names; see fer_lib/data/packed.py), reads
it back and checks that it holds the same pixels and labels, then prints one JSON line (path, bytes, counts,
fingerprints). ``data/packed/`` is git-ignored: the file is FER2013 itself and is never committed.
``python -m fer_lib train --data-root data/packed/fer2013_train_publictest.npz`` (or ``scripts/gpu_check.sh``) then
trains from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULT_OUT = "data/packed/fer2013_train_publictest.npz"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="FER2013 (default: FER2013_DIR, then ../shared/fer2013)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"the .npz to write (default {DEFAULT_OUT})")
    parser.add_argument("--splits", nargs="+", default=["Training", "PublicTest"],
                        help="splits to pack; the first is cut to fit --max-mib, the others are kept whole")
    parser.add_argument("--max-mib", type=float, default=36.0, help="size limit of the file in MiB (0: none)")
    args = parser.parse_args(argv)

    import torch

    from fer_lib.data import load_fer2013
    from fer_lib.data.packed import load_packed, pack_fer2013
    from fer_lib.paths import find_fer2013

    root = find_fer2013(args.root)
    if root is None:
        print("FER2013 not found: pass --root or set FER2013_DIR", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    data = load_fer2013(root)
    out = pack_fer2013(data, args.out, args.splits, max_mib=args.max_mib or None)
    back = load_packed(out)
    for name in args.splits:  # the packed file holds exactly what was loaded (the same subset, pixel for pixel)
        b = back[name]
        a = data[name].subset(len(b))
        if not (torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.ids == b.ids):
            print(f"packed {name} differs from the source after reading it back", file=sys.stderr)
            return 1
    print(json.dumps({
        "file": str(out), "bytes": Path(out).stat().st_size, "mib": round(Path(out).stat().st_size / 2**20, 2),
        "splits": {s.name: len(s) for s in back.splits.values()}, "source_form": data.form, "notes": back.notes,
        "fingerprint_packed": back.fingerprint, "fingerprint_source_all_splits": data.fingerprint,
        "seconds": round(time.perf_counter() - t0, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
