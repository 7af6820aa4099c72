r"""Performance figures of tfanom, each a ratio of two timings taken in one run on this machine.

  python3 -m benchmarks.suite            # CPU figures at WRN-16-2, batch 128 (a few minutes)
  python3 -m benchmarks.suite --quick    # tiny sizes: checks that every figure is produced
  python3 -m benchmarks.suite --gpu      # WRN-28-10, batch 128: float32 vs bfloat16 + XLA

Every line reads `<name>: <ratio> (target <op> <value>) [<raw numbers>]`, so the ratios stay
comparable between machines and under load, where absolute numbers do not. Data is synthetic and
CIFAR-shaped (uint8, 32x32x3, 10 classes); targets are for the full (non-quick) sizes on CPU.
"""

import dataclasses
import functools
import os
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.profiler import model_analyzer, option_builder  # noqa: E402

from tfanom.anomaly import metrics, scores  # noqa: E402
from tfanom.cli.flags import run_command  # noqa: E402
from tfanom.config import TrainConfig  # noqa: E402
from tfanom.data.arrays import LabelledImages  # noqa: E402
from tfanom.data.holdout import channel_statistics, HoldoutSplit  # noqa: E402
from tfanom.data.pipeline import InputPipeline, to_unit_range  # noqa: E402
from tfanom.data.sources import load_source  # noqa: E402
from tfanom.models import build_model  # noqa: E402
from tfanom.training.distribute import loopback_tf_configs, make_strategy  # noqa: E402
from tfanom.training.loop import Trainer  # noqa: E402

# The repository root: the subprocesses import tfanom from it, whatever the working directory.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(flag_values=flags.FLAGS):
  """Defines the suite's flags in `flag_values`; returns its main."""
  flags.DEFINE_bool('quick', False, 'Tiny sizes, for tests: every figure, no meaningful timing.',
                    flag_values=flag_values)
  flags.DEFINE_bool('gpu', False, 'WRN-28-10 at batch 128, and training throughput with '
                    'bfloat16 + XLA against float32.', flag_values=flag_values)
  flags.DEFINE_bool('data', False, 'Only the figures of prepared data (memory, time to the '
                    'first batch, throughput).', flag_values=flag_values)
  return functools.partial(main, settings=flag_values)


@dataclasses.dataclass(frozen=True)
class Sizes:
  depth: int
  width: int
  batch: int
  steps: int  # timed training steps per figure
  pipeline_images: int
  test_images: int
  ap_scores: int
  matmul: int
  memory_array_mb: int
  digits_args: tuple[str, ...]
  folder_images: int  # N of the prepared-folder figures (the larger folder holds 4N)
  folder_side: int


FULL = Sizes(16, 2, 128, 12, 50000, 2000, 10**6, 4096, 150, ('--epochs=1', '--final_window=1'),
             2000, 64)
QUICK = Sizes(10, 1, 32, 2, 2048, 100, 10**4, 512, 8,
              ('--depth=10', '--width=1', '--aux=none', '--epochs=1', '--final_window=1'), 100, 32)
GPU = Sizes(28, 10, 128, 50, 50000, 10000, 10**6, 8192, 150, (), 2000, 64)


def report(name, ratio, target, raw):
  print(f'{name}: {ratio:.3f} (target {target}) [{raw}]', flush=True)


def synthetic_split(num_images: int, seed: int = 0) -> HoldoutSplit:
  """CIFAR-shaped uint8 images, 9 known classes plus a held-out one in the evaluation set."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (num_images, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 9, num_images).astype(np.int64)
  evaluation = LabelledImages(images[:min(num_images, 10000)],
                              np.where(np.arange(min(num_images, 10000)) % 10 == 0, -1,
                                       labels[:10000]))
  mean, std = channel_statistics(images[:1000])
  return HoldoutSplit('synthetic', 9, '9', tuple(str(i) for i in range(9)),
                      LabelledImages(images, labels), evaluation, mean, std)


def trainer_for(sizes: Sizes, split, **overrides) -> Trainer:
  # Without weight decay, so that our loop and keras.Model.fit minimise the same loss.
  settings = dict(dataset='cifar10', depth=sizes.depth, width=sizes.width, dropout=0.0,
                  weight_decay=0.0, batch_size=sizes.batch, epochs=4, steps_per_loop=sizes.steps,
                  strategy='default')
  config = TrainConfig(**{**settings, **overrides}).resolved()
  return Trainer(config, split, make_strategy(config.strategy), log=lambda *_: None)


def timed_epoch(trainer: Trainer, repeats: int = 2) -> float:
  """Seconds of the fastest of `repeats` epochs after the first (which traces and compiles)."""
  seconds = []
  for epoch in range(1 + repeats):
    start = time.perf_counter()
    trainer.train_epoch(epoch)
    seconds.append(time.perf_counter() - start)
  return min(seconds[1:])


def pipeline_images_per_second(sizes: Sizes, split=None) -> float:
  split = split or synthetic_split(sizes.pipeline_images)
  pipeline = InputPipeline(split, sizes.batch, sizes.batch // 4, 'crop_flip')
  for _ in pipeline.train_dataset(0).take(2):
    pass
  start, images = time.perf_counter(), 0
  for batch in pipeline.train_dataset(1):
    images += int(batch['image'].shape[0])
  return images / (time.perf_counter() - start)


def loop_and_fit_seconds(trainer: Trainer, sizes: Sizes, split, rounds: int = 3):
  """Seconds of an epoch of our loop (`trainer`) and of keras.Model.fit on the same model, batch
  and data (SGD-Nesterov, sparse cross-entropy): each the fastest of `rounds` epochs after the
  first, which traces. The two take turns, so that a slow spell of the machine hits both."""
  pipeline = InputPipeline(split, sizes.batch, 0, 'crop_flip')
  model = build_model(trainer_config(sizes), split.num_classes, (32, 32, 3), split.mean,
                      split.std)
  model.compile(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                steps_per_execution=sizes.steps)
  to_pairs = lambda batch: (to_unit_range(batch['image']), batch['label'])  # noqa: E731
  times = []
  timer = keras.callbacks.LambdaCallback(
      on_epoch_begin=lambda *_: times.append(time.perf_counter()),
      on_epoch_end=lambda *_: times.append(time.perf_counter()))

  def fit_epoch(epoch):
    # Later calls reuse the traced train function.
    model.fit(pipeline.train_dataset(epoch).map(to_pairs), epochs=1,
              steps_per_epoch=pipeline.steps_per_epoch, callbacks=[timer], verbose=0)
    return times[-1] - times[-2]

  def loop_epoch(epoch):
    start = time.perf_counter()
    trainer.train_epoch(epoch)
    return time.perf_counter() - start

  timings = [(loop_epoch(epoch), fit_epoch(epoch)) for epoch in range(rounds + 1)][1:]
  return min(t[0] for t in timings), min(t[1] for t in timings)


def trainer_config(sizes: Sizes) -> TrainConfig:
  return TrainConfig(dataset='cifar10', depth=sizes.depth, width=sizes.width,
                     dropout=0.0).resolved()


def forward_flops(model, batch: int) -> int:
  """Floating-point operations of one training-mode forward pass, as tf.profiler counts them."""
  concrete = tf.function(lambda x: model(x, training=True)).get_concrete_function(
      tf.TensorSpec([batch, 32, 32, 3], tf.float32))
  profile = model_analyzer.profile(
      graph=concrete.graph,
      options=option_builder.ProfileOptionBuilder(
          option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build())
  return profile.total_float_ops


def peak_matmul_flops(n: int) -> tuple[float, float]:
  """FLOP/s of a large float32 matmul (the machine's practical peak) and its seconds."""
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
  matmul().numpy()
  repeats = 3
  start = time.perf_counter()
  for _ in range(repeats):
    matmul().numpy()
  seconds = (time.perf_counter() - start) / repeats
  return 2.0 * n**3 / seconds, seconds


def minimal_step_seconds(sizes: Sizes, split) -> float:
  """Seconds per step of the smallest hand-written Keras training step on one constant batch."""
  model = build_model(trainer_config(sizes), split.num_classes, (32, 32, 3), split.mean,
                      split.std)
  optimizer = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
  optimizer.build(model.trainable_variables)
  images = tf.constant(split.train.images[:sizes.batch], tf.float32) / 255.0
  labels = tf.constant(split.train.labels[:sizes.batch])

  @tf.function
  def steps(count):
    for _ in tf.range(count):
      with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                             from_logits=True))
      optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    return loss

  steps(tf.constant(1)).numpy()
  start = time.perf_counter()
  steps(tf.constant(sizes.steps)).numpy()
  return (time.perf_counter() - start) / sizes.steps


def scoring_seconds(trainer: Trainer, split, batch: int) -> tuple[float, float]:
  """Seconds to score the evaluation images with MSP and with ODIN (graph functions, warmed)."""
  model = trainer.model
  msp = tf.function(lambda x: scores.msp(model(to_unit_range(x), training=False)))
  odin = tf.function(lambda x: scores.odin(lambda y: model(y, training=False),
                                            to_unit_range(x)))
  batches = [tf.constant(split.evaluation.images[i:i + batch])
             for i in range(0, len(split.evaluation.images), batch)]
  seconds = []
  for function in (msp, odin):
    function(batches[0]).numpy()
    start = time.perf_counter()
    for images in batches:
      function(images).numpy()
    seconds.append(time.perf_counter() - start)
  return tuple(seconds)


def ap_seconds(count: int) -> tuple[float, float, float]:
  """Seconds of our AP and scikit-learn's on `count` scores, and their absolute difference."""
  rng = np.random.default_rng(0)
  labels = rng.random(count) < 0.1
  scores = np.round(rng.normal(labels * 0.5, 1.0), 4)  # rounding makes ties, as real scores have
  ours = lambda: float(metrics.average_precision(labels, scores))  # noqa: E731
  theirs = lambda: float(average_precision_score(labels, scores))  # noqa: E731
  timings, values = [], []
  for function in (ours, theirs):
    values.append(function())
    # The fastest of a few runs: a single run of 0.2 s is at the mercy of the other processes.
    timings.append(min(_seconds(function) for _ in range(3)))
  return timings[0], timings[1], abs(values[0] - values[1])


def _seconds(function) -> float:
  start = time.perf_counter()
  function()
  return time.perf_counter() - start


PIPELINE_MEMORY = """
import gc, sys, numpy as np, psutil
from tfanom.data.holdout import make_holdout
from tfanom.data.pipeline import InputPipeline
from tfanom.data.arrays import LabelledImages, Source
import tensorflow as tf
count = int(sys.argv[1]) * 2**20 // (32 * 32 * 3)
images = np.random.default_rng(0).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
labels = np.arange(count) % 10
source = Source('synthetic', tuple(map(str, range(10))), LabelledImages(images, labels),
                LabelledImages(images[:100], labels[:100]))
# TensorFlow's runtime (thread pools, tf.data) starts lazily: start it before the baseline.
for _ in tf.data.Dataset.range(4).map(lambda x: x + 1, num_parallel_calls=2).prefetch(2):
  pass
gc.collect()
rss = lambda: psutil.Process().memory_info().rss
before = rss()
split = make_holdout(source, 0)
after_split = rss()
pipeline = InputPipeline(split, 128, 32, 'crop_flip')
for _ in pipeline.train_dataset(0).take(20):
  pass
print((after_split - before) / images.nbytes, (rss() - after_split) / images.nbytes)
"""


def memory_growth(array_mb: int) -> tuple[float, float]:
  """RSS growth from making the hold-out split, then from its pipeline and 20 batches, each over
  the source's training array size.

  The split must copy the training images (it leaves a class out), so the first is about 0.9 with
  9 of 10 classes kept; the pipeline must share that copy, so the second is far below 1.
  """
  result = subprocess.run([sys.executable, '-c', PIPELINE_MEMORY, str(array_mb)], check=True,
                          capture_output=True, text=True, env=subprocess_env())
  split, pipeline = map(float, result.stdout.split()[-2:])
  return split, pipeline


STRATEGY_EPOCH = """
import sys
from benchmarks import suite
from tfanom.training.distribute import strategy_name
sizes, name = getattr(suite, sys.argv[1]), sys.argv[2]
trainer = suite.trainer_for(sizes, suite.synthetic_split(sizes.steps * sizes.batch), aux='none',
                            strategy=name, dropout=None, weight_decay=None)
print(strategy_name(name), sizes.steps * sizes.batch / suite.timed_epoch(trainer, repeats=1))
"""


def strategy_images_per_second(sizes_name: str, rounds: int = 2):
  """(what `auto` runs here, {'auto': img/s, 'mirrored': img/s}): training throughput under each
  strategy, an epoch after the one that traces, the best of `rounds` processes each, taking
  turns.

  Each in its own process: once a MirroredStrategy input iterator has existed, the default
  strategy in the same process trained WRN-16-2 at 85 img/s rather than 116.
  """
  rates, ran = {}, {}
  for _ in range(rounds):
    for name in ('auto', 'mirrored'):
      result = subprocess.run([sys.executable, '-c', STRATEGY_EPOCH, sizes_name, name],
                              check=True, capture_output=True, text=True, env=subprocess_env())
      ran[name], rate = result.stdout.split()[-2:]
      rates[name] = max(rates.get(name, 0.0), float(rate))
  return ran['auto'], rates


def subprocess_env(**settings) -> dict:
  """This process's environment for a subprocess that imports tfanom, with `settings`."""
  return dict(os.environ, PYTHONPATH=ROOT, **settings)


def digits_peak_rss(extra_args) -> float:
  """Peak resident memory (MiB) of a `python -m tfanom.train --dataset=digits` run: that
  process's own, not the largest of every child this process has waited for."""
  with tempfile.TemporaryDirectory(prefix='tfanom-bench-') as workdir, \
      tempfile.TemporaryFile() as stderr:
    process = subprocess.Popen([sys.executable, '-m', 'tfanom.train', '--dataset=digits',
                                f'--workdir={workdir}', *extra_args],
                               stdout=subprocess.DEVNULL, stderr=stderr, env=subprocess_env())
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
      stderr.seek(0)
      raise RuntimeError(stderr.read().decode()[-2000:])
  return usage.ru_maxrss / 1024.0


def write_folder(root: str, count: int, side: int) -> None:
  """ROOT/{train,test}/<10 classes>/*.jpg: `count` training images and count/4 test images,
  smooth random JPEGs written by PIL at 5 by 3.75 times `side` (320x240 pixels for 64), so that
  preparing them costs the decoding and resizing of photos."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, number in (('train', count), ('test', max(count // 4, 20))):
    for index in range(number):
      folder = os.path.join(root, split, f'class{index % 10}')
      os.makedirs(folder, exist_ok=True)
      coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
      Image.fromarray(coarse).resize((5 * side, 15 * side // 4), Image.BILINEAR).save(
          os.path.join(folder, f'{index:06d}.jpg'), quality=90)


def peak_rss_anon(commands, env=None) -> list[float]:
  """Peak anonymous resident memory (MiB; RssAnon, sampled every 10 ms) of each command's process,
  run side by side (`env`: one environment each, or none): pages of a memory-mapped file are not
  anonymous, so they do not count."""
  processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=subprocess_env(**(env[index] if env else {})))
               for index, command in enumerate(commands)]
  peaks = [0] * len(processes)
  while any(process.poll() is None for process in processes):
    for index, process in enumerate(processes):
      try:
        with open(f'/proc/{process.pid}/status') as status:
          for line in status:
            if line.startswith('RssAnon:'):
              peaks[index] = max(peaks[index], int(line.split()[1]))
      except (FileNotFoundError, ProcessLookupError):
        pass
    time.sleep(0.01)
  for process in processes:
    if process.wait():
      raise RuntimeError(process.stderr.read().decode()[-2000:])
  return [peak / 1024.0 for peak in peaks]


FIRST_BATCH = """
import sys, time
start = time.perf_counter()
from tfanom.data.holdout import make_holdout
from tfanom.data.pipeline import InputPipeline
from tfanom.data.sources import load_source
imported = time.perf_counter()
split = make_holdout(load_source('folder', sys.argv[1], int(sys.argv[3]), cache_dir=sys.argv[2],
                                 log=lambda line: None), 0)
ready = time.perf_counter()
next(iter(InputPipeline(split, 32).train_dataset(0)))
print(ready - imported, time.perf_counter() - imported)
"""


def seconds_to_first_batch(folder: str, cache_dir: str, side: int) -> tuple[float, float]:
  """Seconds from loading a folder to its hold-out split, and to the first training batch, in a
  new process (TensorFlow's import excluded): the first call prepares the folder, later ones map
  the prepared files. The batch adds a fixed cost, tracing the augmentation (about 0.6 s of the
  second run's 0.76 s on an 8000-image folder, 2 cores at load 6)."""
  result = subprocess.run([sys.executable, '-c', FIRST_BATCH, folder, cache_dir, str(side)],
                          check=True, capture_output=True, text=True, env=subprocess_env())
  ready, first_batch = map(float, result.stdout.split()[-2:])
  return ready, first_batch


def training_peak_rss(folder: str, cache_dir: str, side: int, strategy: str) -> float:
  """Peak RssAnon (MiB) of a 2-epoch `tfanom.train` run on a prepared folder (WRN-10-1, batch 64,
  evaluation batch 64, crops of side/2); with
  `multiworker`, of the larger of two workers on this machine (TF_CONFIG with two local ports)."""
  with tempfile.TemporaryDirectory(prefix='tfanom-bench-') as workdir:
    command = [sys.executable, '-m', 'tfanom.train', '--dataset=folder', f'--data_dir={folder}',
               f'--cache_dir={cache_dir}', f'--image_size={side}',
               # The network sees crops of half the side: the arrays are the same, and the four
               # runs take minutes, not a quarter of an hour, on 2 cores.
               f'--crop_size={side // 2}', '--depth=10', '--width=1', '--aux=none', '--epochs=2', '--final_window=1', '--batch_size=64',
               # The default evaluation batch (the whole test set here) would make ODIN's
               # activations the peak: 1043 MiB more for 4N images than for N.
               '--eval_batch_size=64', f'--strategy={strategy}', f'--workdir={workdir}']
    if strategy != 'multiworker':
      return peak_rss_anon([command])[0]
    return max(peak_rss_anon([command] * 2, [dict(TF_CONFIG=tf_config)
                                             for tf_config in loopback_tf_configs(2)]))


def prepared_split(split: HoldoutSplit, directory: str) -> HoldoutSplit:
  """`split` with its training images in a prepared (memory-mapped) file, selected by index."""
  path = os.path.join(directory, 'train.u8')
  split.train.images.tofile(path)
  mapped = np.memmap(path, np.uint8, 'r', shape=split.train.images.shape)
  train = LabelledImages(mapped, split.train.labels).select(np.ones(len(mapped), bool))
  return dataclasses.replace(split, train=train)


def report_prepared_data(sizes: Sizes) -> None:
  count, side = sizes.folder_images, sizes.folder_side
  with tempfile.TemporaryDirectory(prefix='tfanom-bench-') as root:
    folders = {n: os.path.join(root, f'folder{n}') for n in (count, 4 * count)}
    for number, folder in folders.items():
      write_folder(folder, number, side)
    cache = os.path.join(root, 'prepared')
    first_ready, first = seconds_to_first_batch(folders[4 * count], cache, side)
    second_ready, second = seconds_to_first_batch(folders[4 * count], cache, side)
    report('second run / first run seconds to the first training batch', second / first,
           '<= 0.1', f'{second:.2f} vs {first:.2f} s, {5 * count} JPEGs of {5 * side}x'
           f'{15 * side // 4} prepared at {side}x{side} by the first; to the hold-out split '
           f'alone {second_ready:.2f} vs {first_ready:.2f} s, {second_ready / first_ready:.3f}')
    # Prepared here, so that the memory runs below map the N-image folder as they map the other.
    load_source('folder', folders[count], side, cache_dir=cache, log=lambda line: None)
    train_bytes = 0.9 * 3 * count * side * side * 3  # the 4N folder's extra known-class images
    for strategy in ('mirrored', 'multiworker'):
      small, large = (training_peak_rss(folders[n], cache, side, strategy)
                      for n in (count, 4 * count))
      if strategy == 'mirrored':
        report('prepared folder of 4N / N images, 2-epoch run peak RssAnon', large / small,
               '<= 1.15', f'{large:.0f} vs {small:.0f} MiB, N = {count} images of {side}x{side},'
               ' mirrored')
      report(f'peak RssAnon above the N-image run / extra training array bytes, {strategy}',
             (large - small) * 2**20 / train_bytes, '<= 0.25',
             f'{large - small:.1f} MiB ({large:.0f} vs {small:.0f}) for '
             f'{train_bytes / 2**20:.1f} MiB of training images'
             + (', the larger of 2 workers' if strategy == 'multiworker' else ''))
    split = synthetic_split(sizes.pipeline_images)
    mapped = prepared_split(split, root)
    rates = [(pipeline_images_per_second(sizes, mapped), pipeline_images_per_second(sizes, split))
             for _ in range(2)]
    report('prepared data / in-memory array pipeline throughput',
           max(r[0] for r in rates) / max(r[1] for r in rates), '>= 0.95',
           f'{max(r[0] for r in rates):.0f} vs {max(r[1] for r in rates):.0f} img/s, '
           f'{sizes.pipeline_images} CIFAR-sized images, batch {sizes.batch}')


def main(argv, settings):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  tf.get_logger().setLevel('ERROR')
  warnings.filterwarnings('ignore', module='keras')
  sizes_name = 'QUICK' if settings.quick else 'GPU' if settings.gpu else 'FULL'
  sizes = globals()[sizes_name]
  print(f'benchmarks.suite: WRN-{sizes.depth}-{sizes.width}, batch {sizes.batch}, '
        f'{os.cpu_count()} CPUs, GPUs: {len(tf.config.list_physical_devices("GPU"))}, load '
        f'{", ".join(f"{x:.2f}" for x in os.getloadavg())}', flush=True)
  if settings.data:
    report_prepared_data(sizes)
    return
  # An epoch of the training figures is `steps` steps.
  split = synthetic_split(sizes.steps * sizes.batch)
  # --quick times one epoch after the one that traces: its timings mean nothing anyway.
  repeats = 1 if settings.quick else 2

  classification = trainer_for(sizes, split, aux='none')
  cls_seconds, fit = loop_and_fit_seconds(classification, sizes, split, rounds=repeats + 1)
  cls_rate = sizes.steps * sizes.batch / cls_seconds
  rotation = trainer_for(sizes, split)
  aux_seconds = timed_epoch(rotation, repeats)
  aux_rate = sizes.steps * sizes.batch / aux_seconds  # classification images per second

  pipeline_rate = pipeline_images_per_second(sizes)
  report('input pipeline / training step throughput', pipeline_rate / aux_rate, '>= 3',
         f'{pipeline_rate:.0f} vs {aux_rate:.0f} img/s, rotation training')
  report('custom loop / keras.Model.fit', fit / cls_seconds, '>= 1.0',
         f'{cls_rate:.0f} vs {sizes.steps * sizes.batch / fit:.0f} img/s')
  report('rotation epoch / classification epoch', aux_seconds / cls_seconds, '<= 2.1',
         f'{aux_seconds:.2f} vs {cls_seconds:.2f} s')
  msp_seconds, odin_seconds = scoring_seconds(classification, synthetic_split(sizes.test_images),
                                              min(500, sizes.test_images))
  report('ODIN scoring / MSP scoring', odin_seconds / msp_seconds, '<= 3.5',
         f'{odin_seconds:.2f} vs {msp_seconds:.2f} s for {sizes.test_images} images')
  ours, sklearn, difference = ap_seconds(sizes.ap_scores)
  report('our AP / scikit-learn AP', ours / sklearn, '<= 1.0',
         f'{ours:.3f} vs {sklearn:.3f} s on {sizes.ap_scores} scores, |difference| '
         f'{difference:.1e}')

  step_flops = 3 * forward_flops(classification.model, sizes.batch)
  peak, matmul_seconds = peak_matmul_flops(sizes.matmul)
  loop_flops = step_flops * sizes.steps / cls_seconds
  report('training FLOP/s / peak matmul FLOP/s', loop_flops / peak, '>= 0.65',
         f'{loop_flops / 1e9:.1f} vs {peak / 1e9:.1f} GFLOP/s; {step_flops / 1e9:.2f} GFLOP per '
         f'step (3x the profiled forward), {sizes.matmul}^2 matmul in {matmul_seconds:.3f} s')
  fast = trainer_for(sizes, split, aux='none', preset='fast')
  fast_seconds = timed_epoch(fast, repeats)
  fast_step_flops = 3 * forward_flops(fast.model, sizes.batch)
  fast_flops = fast_step_flops * sizes.steps / fast_seconds
  report('fast preset training FLOP/s / peak matmul FLOP/s', fast_flops / peak, 'informative',
         f'{fast_flops / 1e9:.1f} GFLOP/s, {fast_step_flops / 1e9:.2f} GFLOP per step, '
         f'{sizes.steps * sizes.batch / fast_seconds:.0f} img/s (classification only) against '
         f'WRN-{sizes.depth}-{sizes.width}\'s {loop_flops / 1e9:.1f} GFLOP/s, '
         f'{step_flops / 1e9:.2f} GFLOP per step, {cls_rate:.0f} img/s')
  minimal = minimal_step_seconds(sizes, split)
  report('minimal Keras step FLOP/s / peak matmul FLOP/s', step_flops / minimal / peak,
         'for comparison', f'{step_flops / minimal / 1e9:.1f} GFLOP/s, '
         f'{minimal * 1e3:.0f} ms/step vs {cls_seconds / sizes.steps * 1e3:.0f} ms/step ours')
  split_growth, pipeline_growth = memory_growth(sizes.memory_array_mb)
  report('hold-out split + pipeline RSS growth / training array size',
         split_growth + pipeline_growth, '<= 1.0',
         f'split {split_growth:.3f} + pipeline and 20 batches {pipeline_growth:.3f}, '
         f'{sizes.memory_array_mb} MiB array, 9 of 10 classes kept')
  report_prepared_data(sizes)
  peak_rss = digits_peak_rss(sizes.digits_args)
  report('digits run peak RSS / 1 GiB', peak_rss / 1024.0, 'informative',
         f'{peak_rss:.0f} MiB, python -m tfanom.train --dataset=digits '
         f'{" ".join(sizes.digits_args)}')

  if settings.gpu:
    fast = trainer_for(sizes, split, mixed_precision='bfloat16', xla=True)
    fast_seconds = timed_epoch(fast, repeats)
    report('bfloat16 + XLA / float32 training throughput', aux_seconds / fast_seconds,
           'informative', f'{sizes.steps * sizes.batch / fast_seconds:.0f} vs {aux_rate:.0f} '
           'img/s, rotation training')

  auto, rates = strategy_images_per_second(sizes_name)
  report('--strategy=auto / mirrored training throughput', rates['auto'] / rates['mirrored'],
         '>= 1.0', f'{rates["auto"]:.0f} vs {rates["mirrored"]:.0f} img/s, classification only '
         f'with the dataset\'s dropout and weight decay; auto runs {auto} here')


if __name__ == '__main__':
  run_command(command(), sys.modules[__name__])
