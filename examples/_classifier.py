"""What the NNX classification examples share: the loss, a jitted train step, evaluation."""

import jax.numpy as jnp
import optax
from flax import nnx


def loss_fn(model, x, y):
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit
def train_step(model, optimizer, x, y):
    """One step of ``nnx.Optimizer`` (any optax transformation, ladam included)."""
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def evaluate(model, x, y):
    """(loss, accuracy) of ``model`` on ``x, y``."""
    loss, logits = loss_fn(model, x, y)
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)
