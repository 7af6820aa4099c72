"""How often long loops (training epochs, scoring, feature fitting) print a progress line."""

import time

import numpy as np

LOG_INTERVAL_SECONDS = 10.0


class Throttle:
  """`due()` is true at most once every `interval` seconds (and always with `final=True`)."""

  def __init__(self, interval: float = LOG_INTERVAL_SECONDS):
    self.interval = interval
    self.start = self._last = time.time()

  def due(self, final: bool = False) -> bool:
    now = time.time()
    if final or now - self._last >= self.interval:
      self._last = now
      return True
    return False

  def elapsed(self) -> float:
    return time.time() - self.start


def progress_batches(images: np.ndarray, batch_size: int, what: str, log):
  """(start index, batch) over `images`, logging progress at most every few seconds."""
  throttle = Throttle()
  for begin in range(0, len(images), batch_size):
    yield begin, images[begin:begin + batch_size]
    done = min(begin + batch_size, len(images))
    if throttle.due(final=done == len(images)):
      log(f'{what}: {done}/{len(images)} ({done / max(throttle.elapsed(), 1e-9):.0f} img/s)')


def batched(function, images: np.ndarray, batch_size: int, what: str, log) -> dict:
  """`function` (a dict of per-example arrays) over every image in batches, with progress."""
  parts = {}
  for _, batch in progress_batches(images, batch_size, what, log):
    for key, value in function(batch).items():
      parts.setdefault(key, []).append(np.asarray(value))
  return {key: np.concatenate(values) for key, values in parts.items()}
