"""tf.distribute strategies by name, which process of a multi-worker run writes files, and the
TF_CONFIG of a multi-worker run on one machine."""

import functools
import json
import os
import socket

import tensorflow as tf

from tfanom.errors import UsageError

def make_strategy(name: str) -> tf.distribute.Strategy:
  """The named strategy (`auto` as `strategy_name` resolves it); create it before any other
  TensorFlow work (multi-worker needs that).

  One instance per name and process: separate instances over the same devices would issue
  collectives with clashing keys, and multi-worker and TPU set-up may run only once.
  """
  return _make_strategy(strategy_name(name))


def strategy_name(name: str) -> str:
  """`name`, or for `auto` the strategy it runs on this machine's devices."""
  if name != 'auto':
    return name
  return auto_strategy_name(tf.config.list_logical_devices('GPU')
                            or tf.config.list_logical_devices('CPU'))


def auto_strategy_name(devices) -> str:
  """What `--strategy=auto` runs over the local `devices` (the GPUs, else the CPUs): `mirrored`
  over two or more, else `default`.

  Over one device MirroredStrategy (and OneDeviceStrategy) compute the same weights as the
  default strategy, bit for bit (digits, 2 epochs, with rotation and dropout), but trained a
  WRN-16-2 at batch 128 at 55-72 images/s against 112-123 on the 2-core AMD EPYC machine. Once
  their distributed input iterator exists, 11 training steps cost 12.7 s of system time, mostly
  futex waits (strace), against 2.4 s without it. `benchmarks.suite` measures the ratio.
  """
  return 'mirrored' if len(devices) > 1 else 'default'


@functools.cache
def _make_strategy(name: str) -> tf.distribute.Strategy:
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy()
  if name == 'multiworker':
    if 'TF_CONFIG' not in os.environ:
      raise UsageError('--strategy=multiworker needs the TF_CONFIG environment variable on every '
                       'worker (see docs/training.md, "Strategies and several machines")')
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'tpu':
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError) as error:
      raise UsageError(f'--strategy=tpu found no TPU ({error}): use another --strategy') from None
    return tf.distribute.TPUStrategy(resolver)
  if name == 'onedevice':
    device = '/gpu:0' if tf.config.list_logical_devices('GPU') else '/cpu:0'
    return tf.distribute.OneDeviceStrategy(device)
  return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes checkpoints and results (always, outside multi-worker)."""
  resolver = strategy.cluster_resolver
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  if 'chief' in resolver.cluster_spec().as_dict():
    return resolver.task_type == 'chief'
  return resolver.task_type == 'worker' and resolver.task_id == 0


def loopback_tf_configs(workers: int) -> list[str]:
  """The TF_CONFIG of each of `workers` processes of a `--strategy=multiworker` run on this
  machine alone, on localhost ports that are free when this is called."""
  sockets = [socket.socket() for _ in range(workers)]
  for each in sockets:
    each.bind(('localhost', 0))
  cluster = {'worker': [f'localhost:{each.getsockname()[1]}' for each in sockets]}
  for each in sockets:
    each.close()
  return [json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': index}})
          for index in range(workers)]
