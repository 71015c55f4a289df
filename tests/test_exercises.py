"""The notebooks' check cells: `fer_lib.exercises.check` says unanswered, correct or what differs, and never raises."""

import numpy as np
import torch

from fer_lib.exercises import check


def test_unanswered_is_none_and_says_so(capsys):
    assert check(None, 3.0, exercise="01.1") is None
    assert "01.1: not answered yet" in capsys.readouterr().out


def test_numbers_within_tolerance(capsys):
    assert check(0.3333, 1 / 3, exercise="a", rtol=1e-3) is True
    assert check(0.30, 1 / 3, exercise="b") is False
    out = capsys.readouterr().out
    assert "a: correct." in out and "b: not quite (you gave 0.3)" in out


def test_tensors_shape_and_values(capsys):
    e = torch.arange(6.0).reshape(2, 3)
    assert check(e.clone(), e, exercise="t") is True
    assert check(e.T, e, exercise="s") is False
    wrong = e.clone()
    wrong[1, 2] += 1
    assert check(wrong.numpy(), e, exercise="v") is False
    out = capsys.readouterr().out
    assert "s: the shape is (3, 2), expected (2, 3)" in out
    assert "largest difference 1 at index (1, 2)" in out


def test_nan_never_matches_and_strings_and_junk(capsys):
    assert check(float("nan"), 1.0, exercise="n") is False
    assert check(np.array([1.0, np.nan]), np.array([1.0, 2.0]), exercise="m") is False
    assert check(" Happy", "happy", exercise="w") is True
    assert check({"a": 1}, 1.0, exercise="j") is False
    out = capsys.readouterr().out
    assert "m: not quite (non-finite values at index (1,))" in out
    assert "j: the answer is not a number or a tensor" in out
