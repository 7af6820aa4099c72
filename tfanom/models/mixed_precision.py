"""Mixed precision for the accelerator fast path.

`--mixed_precision=bfloat16|float16` builds the model under Keras' mixed policy: convolutions and
activations compute in 16 bits, every variable stays float32 (so checkpoints keep their dtypes and
order and load into a float32 model), batch normalisation computes in float32 (`TaskBatchNorm`) and
the class and auxiliary heads output float32 logits, so losses and scores are float32.
"""

import contextlib

import keras

from tfanom.config import check_train_setting


@contextlib.contextmanager
def precision_scope(name: str):
  """Layers constructed inside compute in `name` (float32: unchanged); the global policy is restored
  on exit, so models built elsewhere in the process are not affected."""
  check_train_setting('mixed_precision', name)
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy('float32' if name == 'float32' else f'mixed_{name}')
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def make_optimizer(optimizer: keras.optimizers.Optimizer, precision: str):
  """float16 gradients underflow without loss scaling; bfloat16 has float32's exponent range."""
  return keras.optimizers.LossScaleOptimizer(optimizer) if precision == 'float16' else optimizer
