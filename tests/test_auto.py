"""suggest_c2: the reference's table, case-insensitive, with clear errors."""

import pytest
from helpers import load_reference

from ladam_optax import suggest_c2

ARCHITECTURES = ["pinn", "transformer", "mlp", "cnn", "auto"]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_matches_reference(architecture):
    reference = load_reference("0.2.0")
    assert suggest_c2(architecture) == reference.suggest_c2(architecture)
    assert suggest_c2(architecture.upper()) == reference.suggest_c2(architecture)


def test_values_and_default():
    assert suggest_c2() == 1e-4
    assert [suggest_c2(a) for a in ARCHITECTURES] == [1e-5, 1e-4, 1e-5, 0.0, 1e-4]


def test_unknown_architecture():
    with pytest.raises(ValueError, match=r"architecture must be one of 'pinn'.*got 'rnn'"):
        suggest_c2("rnn")
    with pytest.raises(TypeError, match="architecture must be a string"):
        suggest_c2(3)
