"""The most and least anomalous images of a scoring run, as a self-contained HTML page and a PNG.

Each image is shown as the model saw it (resized, centre-cropped to the image size and then to
the crop size, as `tfanom.score` passes it), with its predicted class, its anomaly score and
whether it is called an anomaly.
"""

import base64
import html
import io
import os

import matplotlib

matplotlib.use('Agg')  # files only: no display on a server
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


class Extremes:
  """The `size` highest- and lowest-scored images seen so far, fed batch by batch."""

  def __init__(self, size: int):
    self.size = size
    self.high = self.low = None

  def update(self, images: np.ndarray, scores: np.ndarray, rows: list[dict]) -> None:
    batch = (images, np.asarray(scores, np.float64), list(rows))
    self.high = _keep(self.high, batch, self.size, highest=True)
    self.low = _keep(self.low, batch, self.size, highest=False)

  def sections(self):
    """('most anomalous', images, rows), ('least anomalous', ...), each ordered from the extreme."""
    return [('most anomalous', *self.high[0::2]), ('least anomalous', *self.low[0::2])]


def _keep(kept, batch, size, highest):
  if kept is not None:
    batch = (np.concatenate([kept[0], batch[0]]), np.concatenate([kept[1], batch[1]]),
             kept[2] + batch[2])
  images, scores, rows = batch
  # Stable sort on the score (negated for the highest), so ties keep the order of the files.
  order = np.argsort(-scores if highest else scores, kind='stable')[:size]
  return images[order], scores[order], [rows[i] for i in order]


def caption(row: dict, score_name: str) -> str:
  verdict = 'ANOMALY' if row['is_anomaly'] else 'normal'
  return f'{row["class_name"]} · {score_name} {row["anomaly_score"]:.3g} · {verdict}'


def write_html(path: str, extremes: Extremes, score_name: str, summary: str) -> None:
  parts = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>tfanom gallery</title>',
           '<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;'
           'margin:4px;width:140px;vertical-align:top;font-size:11px;word-wrap:break-word}'
           'img{width:128px;height:128px;image-rendering:pixelated;border:3px solid #ccc}'
           'img.anomaly{border-color:#d62728}</style></head><body>',
           f'<h1>tfanom gallery</h1><p>{html.escape(summary)}</p>']
  for title, images, rows in extremes.sections():
    parts.append(f'<h2>{html.escape(title)}</h2>')
    for image, row in zip(images, rows):
      css = ' class="anomaly"' if row['is_anomaly'] else ''
      parts.append(f'<figure><img{css} src="data:image/png;base64,{_png_base64(image)}" '
                   f'alt="{html.escape(row["path"])}"><figcaption>'
                   f'{html.escape(caption(row, score_name))}<br>'
                   f'{html.escape(os.path.basename(row["path"]))}</figcaption></figure>')
  parts.append('</body></html>')
  with open(path, 'w', encoding='utf-8') as handle:
    handle.write('\n'.join(parts))


def write_png(path: str, extremes: Extremes, score_name: str) -> None:
  sections = extremes.sections()
  columns = max(1, min(8, max(len(images) for _, images, _ in sections)))
  heights = [max(1, -(-len(images) // columns)) for _, images, _ in sections]
  figure = plt.figure(figsize=(1.9 * columns, 2.2 * sum(heights) + 0.8), layout='constrained')
  for subfigure, (title, images, rows), height in zip(
      figure.subfigures(len(sections), 1, height_ratios=heights), sections, heights):
    subfigure.suptitle(title, fontweight='bold', x=0.01, ha='left')
    axes = subfigure.subplots(height, columns, squeeze=False)
    for axis in axes.flat:
      axis.axis('off')
    for axis, image, row in zip(axes.flat, images, rows):
      gray = image.shape[-1] == 1
      axis.imshow(image[..., 0] if gray else image, cmap='gray' if gray else None, vmin=0,
                  vmax=255, interpolation='nearest')
      axis.set_title(caption(row, score_name).replace(' · ', '\n', 1), fontsize=7,
                     color='#d62728' if row['is_anomaly'] else 'black')
  figure.savefig(path, dpi=100)
  plt.close(figure)


def _png_base64(image: np.ndarray) -> str:
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format='PNG')
  return base64.b64encode(buffer.getvalue()).decode('ascii')
