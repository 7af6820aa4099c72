"""Anomaly scores of a trained classifier. Every score is oriented so that higher = more anomalous.

From the class logits:
- `msp`: the negative maximum softmax probability (Hendrycks & Gimpel, "A Baseline for Detecting
  Misclassified and Out-of-Distribution Examples in Neural Networks", ICLR 2017).
- `odin` (Liang, Li & Srikant, "Enhancing the Reliability of Out-of-distribution Image Detection in
  Neural Networks", ICLR 2018): temperature scaling plus one input step that raises the
  temperature-scaled maximum softmax probability; anomalies rise less than normal examples.
- `energy`: the free energy -T logsumexp(f(x)/T) with T = 1 (Liu, Wang, Owens & Li, "Energy-based
  Out-of-distribution Detection", NeurIPS 2020).
- `max_logit`: the negative maximum logit (Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi,
  Steinhardt & Song, "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022).

From the penultimate features, with statistics of the training set (`tfanom.inference.features`):
- `mahalanobis`: the smallest Mahalanobis distance (squared) to a class mean under one covariance
  shared by all classes (Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting
  Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018), on the last layer only and
  without the input step, which would need anomalies to tune.
- `knn`: the Euclidean distance from the L2-normalised features to their k-th nearest neighbour
  among the L2-normalised training features (Sun, Ming, Zhu & Li, "Out-of-Distribution Detection
  with Deep Nearest Neighbors", ICML 2022).

From the auxiliary rotation head:
- `rotation`: the negative log-likelihood of the true rotation, summed over the four rotations of
  the image (Hendrycks, Mazeika, Kadavath & Song, "Using Self-Supervised Learning Can Improve Model
  Robustness and Uncertainty", NeurIPS 2019).

No hyperparameter here is tuned on anomalies: ODIN's temperature and step and KNN's k are the
papers' fixed defaults.
"""

import tensorflow as tf

ODIN_TEMPERATURE = 1000.0
ODIN_EPSILON = 5e-5
ENERGY_TEMPERATURE = 1.0
KNN_K = 50  # the paper's k for CIFAR-10, whose training set is the whole bank


def msp(logits):
  return -tf.reduce_max(tf.nn.softmax(logits, axis=-1), axis=-1)


def odin_input_gradient(logits_fn, images, temperature=ODIN_TEMPERATURE):
  """Gradient, with respect to the input, of the log of the temperature-scaled max softmax."""
  with tf.GradientTape() as tape:
    tape.watch(images)
    logits = tf.cast(logits_fn(images), tf.float32)
    log_max_softmax = tf.reduce_max(tf.nn.log_softmax(logits / temperature, axis=-1), axis=-1)
    # Examples are independent, so the gradient of the sum is each example's own gradient.
    total = tf.reduce_sum(log_max_softmax)
  return tape.gradient(total, images)


def odin(logits_fn, images, temperature=ODIN_TEMPERATURE, epsilon=ODIN_EPSILON):
  """ODIN score of images in [0, 1].

  x' = x - eps * sign(-grad_x log max_k softmax(f(x)/T)_k). The official code takes this step on
  normalised inputs with eps divided by the per-channel std; our models normalise internally, so
  the same step is exactly eps on [0, 1] pixels.
  """
  gradient = odin_input_gradient(logits_fn, images, temperature)
  perturbed = images - epsilon * tf.sign(-gradient)
  logits = tf.cast(logits_fn(perturbed), tf.float32)
  return -tf.reduce_max(tf.nn.softmax(logits / temperature, axis=-1), axis=-1)


def energy(logits, temperature=ENERGY_TEMPERATURE):
  """E(x) = -T logsumexp(f(x) / T): low for inputs the classifier fits, high for anomalies."""
  return -temperature * tf.reduce_logsumexp(logits / temperature, axis=-1)


def max_logit(logits):
  """-max_k f_k(x), the negative of the largest logit."""
  return -tf.reduce_max(logits, axis=-1)


def mahalanobis(features, class_means, precision):
  """min_c (x - mu_c)^T P (x - mu_c), for features [B, D], means [C, D] and precision P [D, D].

  Computed in float64 as x^T P x - 2 x^T P mu_c + mu_c^T P mu_c: the expansion needs no [B, C, D]
  intermediate, and float64 keeps its cancellation harmless.
  """
  features = tf.cast(features, tf.float64)
  class_means = tf.cast(class_means, tf.float64)
  precision = tf.cast(precision, tf.float64)
  projected = tf.matmul(features, precision)
  own = tf.reduce_sum(projected * features, axis=-1, keepdims=True)
  cross = tf.matmul(projected, class_means, transpose_b=True)
  means = tf.reduce_sum(tf.matmul(class_means, precision) * class_means, axis=-1)
  return tf.reduce_min(own - 2.0 * cross + means, axis=-1)


def normalize(features):
  """L2-normalised features (all-zero features stay zero)."""
  return tf.math.l2_normalize(tf.cast(features, tf.float32), axis=-1)


def knn(features, bank, k=KNN_K):
  """Distance from normalised `features` [B, D] to their k-th nearest row of `bank` [N, D].

  `bank` holds already normalised training features; k is capped at the size of the bank. For unit
  vectors |a - b|^2 = 2 - 2 a.b, so one matrix product gives every distance.
  """
  bank = tf.convert_to_tensor(bank, tf.float32)
  k = min(k, int(bank.shape[0]))
  similarity = tf.matmul(normalize(features), bank, transpose_b=True)
  kth_similarity = tf.math.top_k(similarity, k=k, sorted=True).values[:, -1]
  return tf.sqrt(tf.maximum(2.0 - 2.0 * kth_similarity, 0.0))


def rotation(logits, labels, num_rotations):
  """Negative log-likelihood of the true rotation, summed over the rotations of each image.

  `logits` [R * B, R] and `labels` [R * B] are stacked by rotation, as
  `RotationTask.logits_and_labels` returns them.
  """
  nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                       logits=tf.cast(logits, tf.float32))
  return tf.reduce_sum(tf.reshape(nll, [num_rotations, -1]), axis=0)
