"""``python -m fer_lib models``: the bundled models by name, with what was measured on each (PublicTest).

Any name it lists is accepted by ``--checkpoint`` on ``predict``, ``camera``, ``evaluate`` and ``export``, by the
widgets and by ``fer_lib.pretrained(name)``; :func:`load_for_command` loads what ``--checkpoint`` names for a command; ``--json`` prints the same rows as :func:`fer_lib.inference.list_pretrained`.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m fer_lib models``."""
    parser.add_argument("--json", action="store_true", help="one JSON array instead of the table")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def run(args: argparse.Namespace) -> int:
    from fer_lib.inference import list_pretrained

    rows = list_pretrained()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("bundled models (PublicTest accuracy, the split they were selected on; fer_lib/weights/MODEL_CARD.md):")
    print(f"  {'name':<30} {'architecture':<22} {'1 pass':>8} {'flip':>8} {'10-crop':>8} {'MB':>5}")
    for r in rows:
        arch = f"average of {len(r['members'])}" if r["members"] else r["model_name"]
        mark = "  (default)" if r["default"] else ""
        print(f"  {r['name']:<30} {arch:<22} {_pct(r['accuracy']):>8} {_pct(r['accuracy_flip']):>8} "
              f"{_pct(r['accuracy_tencrop']):>8} {r['megabytes']:>5}{mark}")
    print("use a name with --checkpoint NAME (predict, evaluate, export) or fer_lib.pretrained(NAME)")
    return 0


def load_for_command(checkpoint):
    """The model ``--checkpoint`` names (a bundled name, a checkpoint or a ``.safetensors`` file; ``None``: the most
    accurate bundled model), said on stderr as ``model: ...``; ``None`` after one ``error:`` line when it cannot be
    loaded (the command then exits 1)."""
    from fer_lib.inference import CheckpointError, describe_model, load_model

    try:
        model = load_model(checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    print(f"model: {describe_model(model)}", file=sys.stderr)
    return model
