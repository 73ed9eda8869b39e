"""Choosing c2 for a model: by architecture name, or per parameter from a Flax model's paths."""

from __future__ import annotations

import functools
import math
import re
import warnings
from typing import Any, cast

import jax
import optax

from ladam_optax import _checks
from ladam_optax._alias import ladamw
from ladam_optax._folds import (
    FoldSpec,
    attention_layers,
    check_fold_spec,
    resolve_folds,
    torch_folds,
)
from ladam_optax._schedules import chi_anneal_schedule
from ladam_optax._tree import NamedLeaf, is_masked, named_leaves

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

    Measured here (``examples/c2_sweep.py``: an MLP and a CNN on the digits with 10 seeds, a
    short wave-equation PINN with 5): at these values the smoothing changes the steps by about
    c2 relative (:func:`smoothing_effect`) and LAdam is indistinguishable from Adam; so is
    every c2 below the stability limit of 0.3, after a Holm correction over the grid. At the
    limit the PINN's error is larger than Adam's; above it training breaks (c2 = 0.5: chance
    accuracy on both digits models).

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


# What ``ladam.auto`` recommends per parameter category (its 64-experiment benchmark): only dense
# (linear) kernels profit from the Laplacian; attention was harmful (GPT-2), the rest neutral.
_C2_BY_CATEGORY = {
    "linear": 1e-5,
    "conv": 0.0,
    "attention": 0.0,
    "norm": 0.0,
    "embedding": 0.0,
    "bias": 0.0,
    "other": 0.0,
}

_ATTENTION_NAMES = frozenset(
    {"self_attn", "multihead_attn", "attention", "attn", "q_proj", "k_proj", "v_proj", "out_proj"}
    | {"query", "key", "value", "o_proj"}
)
_NORM_NAME = re.compile(r"norm|^(ln|bn|gn)(_?\d+|_[a-z0-9]+)?$")
_RNN_NAME = re.compile(r"rnn|lstm|gru|mgu|cell")


def _named_leaves(params: Any) -> list[NamedLeaf]:
    """:func:`ladam_optax._tree.named_leaves` of ``params``: (lower-cased path names, shape)
    of every leaf, the shape ``None`` where it is not trained; a whole ``nnx.state(model)`` or
    the model itself works. Raises ``ValueError`` when no leaf is trained."""
    with_paths, _, named = named_leaves(params)
    # Leaf for leaf as jax.tree flattens params: a bare MaskedNode is no leaf there.
    named = [n for (_, x), n in zip(with_paths, named, strict=True) if not is_masked(x)]
    if all(leaf.shape is None for leaf in named):
        raise ValueError("params has no array leaves to analyze")
    return named


def _classify(names: tuple[str, ...], shape: tuple[int, ...]) -> str:
    """One of linear, conv, attention, norm, embedding, bias, other (``ladam.auto``'s categories),
    from the Flax path and the shape."""
    leaf = names[-1] if names else ""
    modules = names[:-1]
    if leaf == "scale" or any(_NORM_NAME.search(m) for m in modules):
        return "norm"
    if len(shape) <= 1:
        return "bias"
    if any(n in _ATTENTION_NAMES for n in names):
        return "attention"
    if "embed" in leaf or any("embed" in m for m in modules):
        return "embedding"
    if any("conv" in m for m in modules):
        return "conv"
    return "conv" if len(shape) >= 3 else "linear"


def _layers(params: Any, fold: FoldSpec) -> tuple[list[NamedLeaf], list[int]]:
    """The named leaves with each stacked leaf's shape as one of its layers holds it (the batch
    axes of its fold removed), and how many layers (fields) each leaf holds."""
    named = _named_leaves(params)
    if fold is None:
        return named, [1] * len(named)
    with warnings.catch_warnings():  # the optimizer given the same spec says it
        warnings.simplefilter("ignore", UserWarning)
        folds = resolve_folds(fold, params)
    layers, counts = [], []
    for leaf, leaf_fold in zip(named, folds, strict=True):
        if leaf.shape is None or leaf_fold is None or not leaf_fold.batch:
            layers.append(leaf)
            counts.append(1)
            continue
        batch = leaf_fold.batch
        layers.append(
            NamedLeaf(leaf.names, tuple(n for a, n in enumerate(leaf.shape) if a not in batch))
        )
        counts.append(math.prod(leaf.shape[a] for a in batch))
    return layers, counts


def _categories(params: Any, fold: FoldSpec = None) -> tuple[list[str | None], list]:
    """The category of every leaf (``None`` for one that is not trained) and the named leaves,
    a stacked leaf classified by the shape one of its layers has (``fold``'s batch axes)."""
    named, _ = _layers(params, fold)
    # Flax's MultiHeadAttention names its projections query/key/value/out: an ``out`` sibling
    # of ``query`` is the attention output projection, not a generic output layer.
    attention = attention_layers(named)
    # A ``bias`` next to a ``scale`` belongs to a norm layer, whatever the layer is called.
    scaled = {
        names[:-1] for names, shape in named if shape is not None and names[-1:] == ("scale",)
    }
    categories = []
    for names, shape in named:
        if shape is None:
            categories.append(None)
        elif names[-1:] == ("bias",) and names[:-1] in scaled:
            categories.append("norm")
        elif len(names) >= 2 and names[-2] == "out" and names[:-2] in attention:
            categories.append("attention" if len(shape) > 1 else "bias")
        else:
            categories.append(_classify(names, shape))
    return categories, named


def _architecture(categories: list[str], named: list) -> str:
    module_names = {m for names, shape in named if shape is not None for m in names[:-1]}
    if "attention" in categories or any(
        "attention" in m or "transformer" in m for m in module_names
    ):
        return "transformer"
    if any(_RNN_NAME.search(m) for m in module_names):
        return "rnn"
    if "conv" in categories:
        return "cnn"
    return "mlp"


def analyze_params(params: Any, *, fold: FoldSpec = None) -> dict[str, Any]:
    """Classifies every parameter of a Flax model and reports where LAdam's Laplacian helps.

    Each leaf is put in one of ``ladam.auto``'s categories from its path and shape:

    - ``norm``: a ``scale`` leaf and the ``bias`` beside it, or any leaf under a module named
      like a norm (``LayerNorm_0``, ``norm1``, ``ln_f``, ``bn``, ...);
    - ``bias``: any other leaf with at most one dimension;
    - ``attention``: under ``query``/``key``/``value``/``out`` of a ``MultiHeadAttention`` or a
      path part named ``attention``, ``attn``, ``self_attn``, ``q_proj``, ... ;
    - ``embedding``: ``Embed``'s ``embedding`` (or any ``*embed*`` name);
    - ``conv``: under a module named ``*conv*``, or any leaf with 3 or more dimensions;
    - ``linear``: the remaining 2-D leaves (``Linear``/``Dense`` kernels).

    The reference classifies by PyTorch module type and calls 1-D norm weights ``bias``; here
    they are ``norm``. Both get ``c2 = 0``, so the optimizer is the same.

    Args:
      params: the parameters, e.g. ``nnx.state(model, nnx.Param)`` or a Linen
        ``variables["params"]`` dict (pass only the trainable collection).
      fold: the fold spec the optimizer is given, for scanned or stacked layers
        (:func:`stacked`): a stacked leaf is classified by the path and shape of one of its
        layers and counts once per layer, as the same layers unrolled would. ``None`` (the
        default) classifies every leaf as it is.

    Returns:
      A dict with ``architecture`` (``"transformer"``, ``"rnn"``, ``"cnn"`` or ``"mlp"``),
      ``total_params``, ``layer_counts`` (per category; a stacked leaf counts its layers)
      and ``layer_params`` (per category),
      ``recommendation`` (a sentence) and ``c2_map`` (the recommended c2 of each category
      present: 1e-5 for ``linear``, 0.0 for the others).

    Examples:
      >>> import jax.numpy as jnp
      >>> from ladam_optax import analyze_params
      >>> params = {"Dense_0": {"kernel": jnp.zeros((64, 32)), "bias": jnp.zeros(32)}}
      >>> report = analyze_params(params)
      >>> report["architecture"], report["layer_counts"], report["c2_map"]
      ('mlp', {'bias': 1, 'linear': 1}, {'linear': 1e-05, 'bias': 0.0})

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``ladam.auto.analyze_model``.
    """
    check_fold_spec(fold)
    categories, named = _categories(params, fold)
    _, counts = _layers(params, fold)
    layer_counts: dict[str, int] = {}
    layer_params: dict[str, int] = {}
    for category, (_, shape), count in zip(categories, named, counts, strict=True):
        if category is None:
            continue
        layer_counts[category] = layer_counts.get(category, 0) + count
        layer_params[category] = layer_params.get(category, 0) + count * math.prod(shape)
    architecture = _architecture([c for c in categories if c is not None], named)
    total = sum(layer_params.values())
    active = [c for c, v in _C2_BY_CATEGORY.items() if v > 0 and c in layer_counts]
    active_params = sum(layer_params[c] for c in active)
    percent = 100.0 * active_params / total if total > 0 else 0.0
    if not active:
        recommendation = (
            f"Architecture '{architecture}' has no layer types where LAdamW's Laplacian "
            "provides measured benefit. Consider using standard AdamW."
        )
    elif percent < 10:
        recommendation = (
            f"Only {percent:.1f}% of parameters ({active_params:,} / {total:,}) benefit from "
            "Laplacian coupling. Mixed optimizer recommended."
        )
    else:
        recommendation = (
            f"{percent:.1f}% of parameters ({active_params:,} / {total:,}) are in layer types "
            "where LAdamW showed gains. Good candidate for LAdamW."
        )
    return {
        "architecture": architecture,
        "total_params": total,
        "layer_counts": dict(sorted(layer_counts.items())),
        "layer_params": dict(sorted(layer_params.items())),
        "recommendation": recommendation,
        "c2_map": {c: v for c, v in _C2_BY_CATEGORY.items() if c in layer_counts},
    }


def _group_label(c2: float) -> str:
    return f"c2={c2!r}"


def _c2_labels(params: Any, fold: FoldSpec = None) -> Any:
    """The ``optax.partition`` label (``"c2=1e-05"`` or ``"c2=0.0"``) of every leaf, a stacked
    leaf's (``fold``'s batch axes) from one of its layers."""
    categories, _ = _categories(params, fold)
    labels = [_group_label(0.0 if c is None else _C2_BY_CATEGORY.get(c, 0.0)) for c in categories]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), labels)


def auto_configure(
    params: Any,
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    total_steps: int | None = None,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    fold: FoldSpec = torch_folds,
) -> optax.GradientTransformationExtraArgs:
    """LAdamW with the recommended c2 per parameter category, as ``ladam.auto.auto_configure``.

    The leaves are classified as in :func:`analyze_params`; each group of equal recommended c2
    (1e-5 for dense kernels, 0 for everything else) gets its own :func:`ladamw` through
    ``optax.partition``. With ``total_steps``, the learning rate follows
    :func:`chi_anneal_schedule` peaking at ``learning_rate``, as the reference's
    ``ChiAnnealScheduler`` up to ``total_steps`` and held at 0 after it (the reference's climbs
    back to the peak; for its rate at every step pass
    ``learning_rate=chi_anneal_schedule(lr, T, repeat=True)`` and ``total_steps=None``). The
    grouping is recomputed from the tree given to ``init``, so
    ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` works unchanged.

    Args:
      params: the parameters to configure for (see :func:`analyze_params`); used to check
        that there is something to optimize, the labels come from the tree given to ``init``.
      learning_rate: the peak learning rate when ``total_steps`` is given, otherwise a float
        or an optax schedule.
      total_steps: the length of training for the chi-anneal schedule, or ``None`` for none.
      weight_decay: decoupled weight decay, applied to every leaf as in the reference.
      fold: the per-leaf fields (see :func:`ladam`); by default :func:`torch_folds`, so that
        each Flax layer is smoothed on the field PyTorch's LAdam gives the same layer.
        ``None`` keeps the reference's ``(shape[0], -1)`` rule for every leaf. For scanned
        layers pass :func:`stacked` (``stacked({"layers": 0}, torch_folds)``): each layer is
        smoothed as its own field and classified as one of its layers, as unrolled.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``params``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ladam_optax import auto_configure
      >>> params = {"Dense_0": {"kernel": jnp.ones((64, 32)), "bias": jnp.ones(32)}}
      >>> tx = auto_configure(params, 1e-3, total_steps=1000)
      >>> state = tx.init(params)
      >>> sorted(state.inner_states)
      ['c2=0.0', 'c2=1e-05']

    References:
      G. Partin, `ladam` (PyTorch) 0.4.1, ``ladam.auto.auto_configure``.
    """
    _named_leaves(params)
    check_fold_spec(fold)
    _checks.non_negative("weight_decay", weight_decay)
    if total_steps is not None:
        if callable(learning_rate):
            raise ValueError(
                "learning_rate must be a number (the peak of the chi-anneal schedule) when "
                "total_steps is given; pass total_steps=None to use your own schedule"
            )
        learning_rate = chi_anneal_schedule(cast(float, learning_rate), total_steps)
    transforms: dict[Any, optax.GradientTransformation] = {
        _group_label(c2): ladamw(learning_rate, weight_decay=weight_decay, c2=c2, fold=fold)
        for c2 in sorted(set(_C2_BY_CATEGORY.values()))
    }
    return optax.partition(transforms, functools.partial(_c2_labels, fold=fold))
