"""Check cells for the notebooks' exercises: compare a learner's answer with the value the library computes.

Each exercise whose answer is a number or a tensor ends with a check cell::

    answer = None  # your answer: a number, or the tensor your code built
    check(answer, expected, exercise="02.1")

``expected`` is computed in the cell from the library (never typed in), so the check stays true when the code
changes. With ``answer = None`` (how the notebooks are stored and tested) the cell only says that nothing was
answered yet; a wrong answer prints what differs and never raises, so a learner can keep running the notebook.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _as_array(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def check(answer, expected, *, exercise: str, rtol: float = 1e-3, atol: float = 1e-6, quiet: bool = False
          ) -> bool | None:
    """Say whether ``answer`` matches ``expected`` (numbers, sequences, numpy arrays or tensors; or strings).

    Args:
        answer: the learner's value; ``None`` means "not answered yet".
        expected: the value the library computes (same kind as ``answer``).
        exercise: the exercise's label as the notebook numbers it, e.g. ``"02.1"`` (printed).
        rtol, atol: the tolerance of :func:`numpy.allclose` for numbers and tensors.
        quiet: return the result without printing.

    Returns:
        ``None`` when not answered, else ``True`` / ``False``. One line is printed: not answered yet, correct,
        or what differs (the shapes, or the largest difference and where).
    """
    if answer is None:
        result, line = None, f"Exercise {exercise}: not answered yet (set `answer` above, then run this cell again)."
    elif isinstance(expected, str) or isinstance(answer, str):
        result = str(answer).strip().lower() == str(expected).strip().lower()
        line = (f"Exercise {exercise}: correct." if result
                else f"Exercise {exercise}: not quite: {answer!r} is not the answer; open the hint above.")
    else:
        try:
            a, e = _as_array(answer), _as_array(expected)
        except (TypeError, ValueError) as err:
            result, line = False, f"Exercise {exercise}: the answer is not a number or a tensor ({err})."
        else:
            if a.shape != e.shape:
                result = False
                line = f"Exercise {exercise}: the shape is {tuple(a.shape)}, expected {tuple(e.shape)}."
            elif np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=False):
                result, line = True, f"Exercise {exercise}: correct."
            else:
                result = False
                diff = np.abs(a - e)
                diff = np.where(np.isnan(diff), np.inf, diff)
                where = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
                worst = float(diff[where]) if diff.ndim else float(diff)
                at = f" at index {tuple(int(i) for i in where)}" if diff.ndim else ""
                shown = (f"you gave {float(a):.6g}" if a.ndim == 0 else f"largest difference {worst:.3g}{at}")
                if not math.isfinite(worst):
                    shown = f"non-finite values{at}"
                line = f"Exercise {exercise}: not quite ({shown}); open the hint above."
    if not quiet:
        print(line)
    return result


__all__ = ["check"]
