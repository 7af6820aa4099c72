"""How often long loops (training epochs, scoring, feature fitting) print a progress line."""

import time

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
