"""Shared test configuration.

- Warnings raised from our own package become errors, so a deprecation in our code fails fast.
- ``strict_dtypes``: strict dtype promotion around our own transformations, so an implicit
  upcast (bf16 * f32, f32 * f64) in our code raises instead of silently changing a state leaf's
  dtype. (Not global: optax's own MultiSteps, SAM and schedules rely on standard promotion.)
"""

import jax
import pytest


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "error::Warning:ladam_optax.*")


@pytest.fixture
def strict_dtypes():
    with jax.numpy_dtype_promotion("strict"):
        yield


@pytest.fixture
def x64():
    """Runs a test with float64 enabled, restoring the previous setting afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)
