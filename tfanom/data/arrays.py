"""Labelled images in memory: the arrays every source returns and the hold-out split selects
from."""

import dataclasses

import numpy as np

# TensorFlow can use a buffer in place only at this alignment (Eigen's, with AVX-512).
TENSOR_ALIGNMENT = 64


def aligned_empty(shape, dtype) -> np.ndarray:
  """An uninitialised C-contiguous array whose buffer TensorFlow can share without a copy."""
  dtype = np.dtype(dtype)
  size = int(np.prod(shape)) * dtype.itemsize
  raw = np.empty(size + TENSOR_ALIGNMENT, np.uint8)
  start = -raw.ctypes.data % TENSOR_ALIGNMENT
  return raw[start:start + size].view(dtype).reshape(shape)


class IndexedImages:
  """Rows `indices` of `base`, a memory-mapped prepared file (`tfanom.data.prepared`), read only
  when indexed: the hold-out split of prepared data is an index array over the file, not a copy.

  Indexing (an integer, a slice, an index array or a boolean mask) returns a NumPy array of the
  rows asked for, in the order asked for, as indexing the selected rows' copy would.
  """

  def __init__(self, base, indices: np.ndarray):
    self.base, self.indices = base, np.asarray(indices, np.int64)
    self.dtype, self.ndim = base.dtype, base.ndim
    self.shape = (len(self.indices), *base.shape[1:])

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, key):
    return np.asarray(self.base[self.indices[key]])

  def __array__(self, dtype=None, copy=None):
    del copy
    return self[:].astype(dtype) if dtype else self[:]


@dataclasses.dataclass(frozen=True)
class LabelledImages:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int64 [N], indices into Source.class_names
  # How often each uint8 value occurs per class and channel, [classes, C, 256] int64
  # (`value_counts`), when known without reading the images: prepared files store them.
  value_counts: np.ndarray | None = None

  def __len__(self):
    return len(self.labels)

  def select(self, mask: np.ndarray) -> 'LabelledImages':
    """The examples where `mask` is true.

    Images of a prepared file (memory-mapped) are selected by index and stay on disk. Images in
    memory are copied, which lets the source's arrays go: the one copy of the training images
    a run makes, which the input pipeline reads batches from.
    """
    indices = np.flatnonzero(mask)
    if isinstance(self.images, (np.memmap, IndexedImages)):
      base = self.images.base if isinstance(self.images, IndexedImages) else self.images
      rows = self.images.indices[indices] if isinstance(self.images, IndexedImages) else indices
      return LabelledImages(IndexedImages(base, rows), self.labels[indices])
    images = aligned_empty((len(indices), *self.images.shape[1:]), self.images.dtype)
    # mode='clip' writes straight into `out`; the default mode first fills a temporary copy.
    np.take(self.images, indices, axis=0, out=images, mode='clip')
    labels = aligned_empty(len(indices), self.labels.dtype)
    np.take(self.labels, indices, out=labels, mode='clip')
    return LabelledImages(images, labels)


@dataclasses.dataclass(frozen=True)
class Source:
  name: str
  class_names: tuple[str, ...]
  train: LabelledImages
  test: LabelledImages
  class_ids: tuple[str, ...] = ()  # other names of the classes, in order (ImageNet's WordNet ids)

  @property
  def image_shape(self):
    return self.train.images.shape[1:]


def value_counts(images, labels=None, num_labels: int = 1, pixels_per_chunk: int = 2**18):
  """How often each uint8 value occurs in `images` per label and channel: int64
  [num_labels, C, 256] (without `labels`, every image has label 0).

  Read chunk by chunk: a chunk of `pixels_per_chunk` pixels costs 8 bytes per channel value (the
  indices NumPy's bincount counts), 6 MiB at three channels, whatever the number of images.
  """
  channels = images.shape[-1]
  pixels = int(np.prod(images.shape[1:-1]))
  chunk = max(1, pixels_per_chunk // pixels)
  counts = np.zeros(num_labels * channels * 256, np.int64)
  channel_offsets = np.arange(channels, dtype=np.intp) * 256
  for start in range(0, len(images), chunk):
    block = np.asarray(images[start:start + chunk]).reshape(-1, pixels, channels)
    label_offsets = (np.zeros(len(block), np.intp) if labels is None else
                     np.asarray(labels[start:start + chunk], np.intp) * (channels * 256))
    # One pass: the bin of each value is (label, channel, value).
    bins = block + (label_offsets[:, None, None] + channel_offsets)
    counts += np.bincount(bins.reshape(-1), minlength=len(counts))
  return counts.reshape(num_labels, channels, 256)


def stratified_mask(labels, fraction, seed):
  """A boolean mask selecting `fraction` of each class, chosen by a seeded permutation."""
  rng = np.random.default_rng(seed)
  mask = np.zeros(len(labels), bool)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    chosen = rng.permutation(members)[:int(round(fraction * len(members)))]
    mask[chosen] = True
  return mask
