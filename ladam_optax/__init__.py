"""LAdam, LAdamW, LAdaGrad and LRMSProp as Optax gradient transformations."""

from ladam_optax._alias import ladagrad, ladam, ladamw, lrmsprop, wave_ladam, wave_ladamw
from ladam_optax._auto import analyze_params, auto_configure, suggest_c2
from ladam_optax._diagnostics import SmoothingEffect, smoothing_effect
from ladam_optax._folds import FoldSpec, Stacked, stacked, torch_folds
from ladam_optax._laplacian import Fold, laplacian
from ladam_optax._reorder import compute_neuron_order, reorder_dense
from ladam_optax._schedules import chi_anneal_schedule
from ladam_optax._smoothing import laplacian_smoothing
from ladam_optax._transform import (
    ScaleByLAdaGradState,
    ScaleByLAdamState,
    ScaleByLRMSPropState,
    ScaleByWaveLAdamState,
    add_weight_diffusion,
    scale_by_ladagrad,
    scale_by_ladam,
    scale_by_lrmsprop,
    scale_by_wave_ladam,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    """``ladam_optax.nn`` on first use: the Flax layers, imported only when asked for."""
    if name == "nn":
        try:
            import flax  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "ladam_optax.nn needs flax: pip install 'ladam-optax[flax]' (or pip install flax)"
            ) from error
        import importlib

        return importlib.import_module("ladam_optax.nn")
    raise AttributeError(f"module 'ladam_optax' has no attribute {name!r}")


__all__ = [
    "Fold",
    "FoldSpec",
    "ScaleByLAdaGradState",
    "ScaleByLAdamState",
    "ScaleByLRMSPropState",
    "ScaleByWaveLAdamState",
    "SmoothingEffect",
    "Stacked",
    "__version__",
    "add_weight_diffusion",
    "analyze_params",
    "auto_configure",
    "chi_anneal_schedule",
    "compute_neuron_order",
    "ladagrad",
    "ladam",
    "ladamw",
    "laplacian",
    "laplacian_smoothing",
    "lrmsprop",
    "reorder_dense",
    "scale_by_ladagrad",
    "scale_by_ladam",
    "scale_by_lrmsprop",
    "scale_by_wave_ladam",
    "smoothing_effect",
    "stacked",
    "suggest_c2",
    "torch_folds",
    "wave_ladam",
    "wave_ladamw",
]
