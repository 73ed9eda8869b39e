"""Choosing c2 for a model."""

from __future__ import annotations

_C2_BY_ARCHITECTURE = {
    "pinn": 1e-5,
    "transformer": 1e-4,
    "mlp": 1e-5,
    "cnn": 0.0,
    "auto": 1e-4,
}


def suggest_c2(architecture: str = "auto") -> float:
    """The c2 the PyTorch ``ladam`` package recommends for an architecture.

    ``pinn`` 1e-5, ``transformer`` 1e-4, ``mlp`` 1e-5, ``cnn`` 0.0 (no benefit measured, the
    Laplacian is skipped) and ``auto`` 1e-4 (a safe general default), from the reference's sweeps.

    Args:
      architecture: one of ``"pinn"``, ``"transformer"``, ``"mlp"``, ``"cnn"``, ``"auto"``;
        case-insensitive.

    Returns:
      The recommended ``c2``.

    Examples:
      >>> from ladam_optax import suggest_c2
      >>> suggest_c2("PINN")
      1e-05

    References:
      G. Partin, `ladam` (PyTorch) 0.2.0, ``suggest_c2``.
    """
    if not isinstance(architecture, str):
        raise TypeError(f"architecture must be a string, got {type(architecture).__name__}")
    key = architecture.lower()
    if key not in _C2_BY_ARCHITECTURE:
        allowed = ", ".join(repr(k) for k in _C2_BY_ARCHITECTURE)
        raise ValueError(f"architecture must be one of {allowed}, got {architecture!r}")
    return _C2_BY_ARCHITECTURE[key]
