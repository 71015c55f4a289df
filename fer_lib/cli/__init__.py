"""``python -m fer_lib {train,evaluate,predict,camera,bench,demo,models,export,ablation}``: the command line.

All argument parsing lives in this package: each command is a module here that exposes
``add_arguments(parser)`` and ``run(args) -> int`` and calls the library (``fer_lib.train``, ``fer_lib.evaluate``,
``fer_lib.faces``, ...), which holds no argparse. The module is imported only when its command is used, so ``python -m fer_lib --help`` starts in a fraction of a second and a
missing module gives one clear error. Every error ends the process with one line ``error: ...`` on stderr and
a non-zero exit code (set ``FER_DEBUG=1`` to see the traceback instead); a data error adds the indented lines of
its how-to-get-FER2013 hint below that line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

#: command -> (module, one-line help); every module is in this package and defines add_arguments() and run()
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("fer_lib.cli.train", "train a model (presets: demo, cpu, gpu); torchrun for several GPUs"),
    "evaluate": ("fer_lib.cli.evaluate", "evaluate the bundled model or a checkpoint on any split (metrics, TTA, JSON)"),
    "predict": ("fer_lib.cli.predict", "predict the emotion of faces in photos (the bundled model by default)"),
    "bench": ("fer_lib.cli.bench", "benchmark model speed against the plain backbone (or the data pipeline)"),
    "demo": ("fer_lib.cli.demo", "train, evaluate and explain in one go (what `make demo` runs)"),
    "models": ("fer_lib.cli.models", "list the bundled trained models by name, with their measured accuracy"),
    "export": ("fer_lib.cli.export", "export a model to TorchScript and ONNX and time batch-1 latency"),
    "ablation": ("fer_lib.cli.ablation", "equal-budget ablation: baseline vs full model vs full minus one module"),
    "camera": ("fer_lib.cli.camera", "emotions live on a webcam or a video file; can write the annotated video"),
}

EPILOG = """examples:
  python -m fer_lib predict photo.jpg --cam          # the trained model that ships with fer_lib
  python -m fer_lib evaluate --split PublicTest       # the same model on FER2013 PublicTest
  python -m fer_lib models                            # the bundled models by name, with their accuracy
  python -m fer_lib predict photo.jpg --checkpoint ensemble
  python -m fer_lib camera --source clip.mp4 --out clip_fer.mp4 --no-show
  python -m fer_lib bench --faces                     # the face detectors, side by side
  python -m fer_lib demo --preset demo
  python -m fer_lib train --preset cpu --data-root ../shared/fer2013
  torchrun --nproc_per_node 2 -m fer_lib train --preset gpu
  python -m fer_lib evaluate --checkpoint runs/cpu/best.pt --split PrivateTest --tta flip
"""


class CommandUnavailable(RuntimeError):
    """The module behind a command cannot be imported."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line too (``error: ...`` and exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def load_command(name: str):
    """Import the module behind command ``name`` (it must define ``add_arguments`` and ``run``)."""
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (e.name == module_name or module_name.startswith(e.name + ".")):
            raise CommandUnavailable(f"command {name!r} is not available: module {module_name} is missing "
                                     "from this installation") from e
        raise
    for attr in ("add_arguments", "run"):
        if not hasattr(module, attr):
            raise CommandUnavailable(f"command {name!r}: {module_name} does not define {attr}()")
    return module


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top parser; only ``command``'s module is imported to add its arguments."""
    parser = _Parser(prog="python -m fer_lib", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Facial emotion recognition on FER2013: train, evaluate, predict, benchmark, demo, "
                     "export, ablation.")
    from fer_lib import __version__

    parser.add_argument("--version", action="version", version=f"fer_lib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = load_command(name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, KeyError):  # str(KeyError) adds quotes
        msg = " ".join(str(e.args[0]).split()) if e.args else msg
    return msg


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def one_line_warnings():
    """Inside it, a warning raised in fer_lib's own code prints as ``warning: <message>`` on one line.

    Python's default form names the source file by its absolute path and repeats the source line (for example
    ``/home/me/fer_lib/train/engine.py:288: UserWarning: ...`` then ``precision = ...``), which says nothing to
    someone running the command and puts the machine's paths into run logs. Warnings from other packages keep
    Python's form: there the file says where to look. Filters (``-W``, ``PYTHONWARNINGS``) apply as usual, and so
    does anything that records warnings (``pytest.warns``, ``catch_warnings(record=True)``): only the text a printed
    warning gets changes (``warnings.formatwarning``), not where warnings go.
    """
    default = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):
        if os.path.abspath(filename or "").startswith(_PACKAGE_DIR + os.sep):
            return f"warning: {' '.join(str(message).split())}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = default


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fer_lib`` and the ``fer-lib`` script; returns the exit code."""
    with one_line_warnings():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command if command in COMMANDS else None)
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version, usage errors (already printed as one line)
            return int(e.code or 0)
        if args.command is None:
            parser.print_help()
            return 2
        args.argv = argv[argv.index(args.command) + 1:]  # the command's own flags, as typed (for reports)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI turns every failure into one line
        if type(e).__name__ == "TrainingStopped":  # SIGTERM: a clean stop at a step boundary, not a failure
            print(f"stopped: {_one_line(e)}", file=sys.stderr)
            return 143  # 128 + SIGTERM, as a shell reports a process ended by it
        if os.environ.get("FER_DEBUG"):
            raise
        known = ("CommandUnavailable", "FERDataError", "CheckpointError", "FloatingPointError", "ValueError",
                 "FileNotFoundError", "KeyError")
        prefix = "" if type(e).__name__ in known else f"{type(e).__name__}: "
        if type(e).__name__ == "FERDataError" and "\n" in str(e).strip():
            # one line that says what is wrong, then the how-to-get-FER2013 hint as it was written, line by line
            first, _, hint = str(e).strip().partition("\n")
            print(f"error: {' '.join(first.split())}", file=sys.stderr)
            print("\n".join("  " + line for line in hint.splitlines()), file=sys.stderr)
        else:
            print(f"error: {prefix}{_one_line(e)}", file=sys.stderr)
        return 1

