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

- `rmds`: relative Mahalanobis, the class-conditional distance minus the distance under one
  Gaussian fit to all training features (Ren, Fort, Liu, Roy, Padhy & Lakshminarayanan, "A Simple
  Fix to Mahalanobis Distance for Improving Near-OOD Detection", 2021).
- `vim`: virtual-logit matching, alpha times the norm of the feature's residual outside the
  principal subspace of the training features, minus the energy's logsumexp (Wang, Li, Feng &
  Zhang, "ViM: Out-Of-Distribution with Virtual-logit Matching", CVPR 2022).
- `fdbd`: the negated summed feature distance to the decision boundaries of the predicted class,
  divided by the distance to the training mean (Liu & Qin, "Fast Decision Boundary based
  Out-of-Distribution Detector", ICML 2024).
- `react_energy`: the energy of the logits of features clipped at the 90th percentile of the
  training features (Sun, Guo & Li, "ReAct: Out-of-distribution Detection With Rectified
  Activations", NeurIPS 2021).

From the logits alone, also:
- `gen`: the generalised entropy sum_j p_j^g (1 - p_j)^g of the M largest probabilities, g = 0.1
  (Liu, Lochman & Zach, "GEN: Pushing the Limits of Softmax-Based Out-of-Distribution Detection",
  CVPR 2023).

From the auxiliary rotation head:
- `rotation`: the negative log-likelihood of the true rotation, summed over the four rotations of
  the image (Hendrycks, Mazeika, Kadavath & Song, "Using Self-Supervised Learning Can Improve Model
  Robustness and Uncertainty", NeurIPS 2019).
- `rotpred`: the same paper's combined score, the mean rotation NLL minus KL(uniform || softmax
  of the class logits): the classifier's own confidence added to the rotation head's.

No hyperparameter here is tuned on anomalies: ODIN's temperature and step, KNN's k, GEN's gamma
and M, ReAct's percentile and ViM's subspace size are the papers' fixed defaults (docs/scores.md).
"""

import tensorflow as tf


ODIN_TEMPERATURE = 1000.0
ODIN_EPSILON = 5e-5
PIXEL_LEVELS = 255.0
ENERGY_TEMPERATURE = 1.0
KNN_K = 50  # the paper's k for CIFAR-10, whose training set is the whole bank
GEN_GAMMA = 0.1  # the GEN paper's default
GEN_TOP = 100  # the GEN paper's M (ImageNet); capped at the number of classes


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
  """ODIN score of images in [0, 1]: x' = x - eps * sign(-grad_x log max_k softmax(f(x)/T)_k).

  `epsilon` is the step on [0, 1] pixels (`odin_unit_step` converts the official code's).
  """
  gradient = odin_input_gradient(logits_fn, images, temperature)
  perturbed = images - epsilon * tf.sign(-gradient)
  logits = tf.cast(logits_fn(perturbed), tf.float32)
  return -tf.reduce_max(tf.nn.softmax(logits / temperature, axis=-1), axis=-1)


def odin_unit_step(epsilon: float, step: str = 'unit') -> float:
  """ODIN's input step on [0, 1] pixels, for `epsilon` given on the scale `step` names.

  `unit`: `epsilon` is on [0, 1] pixels, tfanom's default.
  `official`: the step of the paper's code (Faruk-Ahmed/detecting_semantic_anomalies,
  rotation/main.py, the CIFAR-10 and STL-10 runs): it normalises the 0-255 pixels x255 as
  (x255 - mean) / std with the per-channel training mean and std in 0-255 units, takes the sign of
  the cross-entropy gradient with respect to the normalised input as +1 where it is >= 0 and -1
  elsewhere, divides it by that std and subtracts epsilon times the result. In 0-255 pixels that
  is a step of exactly epsilon, so epsilon / 255 on [0, 1] pixels: 255 times smaller than `unit`.
  The one other difference: where a gradient is exactly zero the official code steps (by
  -epsilon) and tfanom does not. (Its cpc/main.py, the ImageNet runs, normalises [0, 1] pixels
  instead, so there the step is `unit`'s.)
  """
  return epsilon / PIXEL_LEVELS if step == 'official' else epsilon


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


def rotpred(class_logits, rotation_nll_sum, num_rotations):
  """Mean rotation NLL minus KL(U || softmax(f(x))), U uniform over the classes.

  `rotation_nll_sum` is `rotation`'s score. The ss-ood code returns the negation (higher = normal).
  """
  log_probabilities = tf.nn.log_softmax(tf.cast(class_logits, tf.float32), axis=-1)
  num_classes = tf.cast(tf.shape(log_probabilities)[-1], tf.float32)
  kl_from_uniform = -tf.math.log(num_classes) - tf.reduce_mean(log_probabilities, axis=-1)
  return tf.cast(rotation_nll_sum, tf.float32) / num_rotations - kl_from_uniform


def gen(logits, gamma=GEN_GAMMA, top=GEN_TOP):
  """sum over the `top` largest probabilities p of p^gamma (1 - p)^gamma."""
  probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
  top = min(top, int(probabilities.shape[-1]))
  largest = tf.math.top_k(probabilities, k=top, sorted=False).values
  return tf.reduce_sum(largest**gamma * (1.0 - largest)**gamma, axis=-1)


def rmds(features, class_means, precision, background_mean, background_precision):
  """min_c MD_c(x) - MD_0(x): Mahalanobis to the classes minus to one Gaussian of all features.

  Ren et al.'s RMD_k = MD_k - MD_0 for each class; the minimum over k is min_k MD_k - MD_0.
  """
  return (mahalanobis(features, class_means, precision) -
          mahalanobis(features, tf.reshape(background_mean, [1, -1]), background_precision))


def vim(features, logits, origin, residual_basis, alpha):
  """alpha ||(x - o) R|| - logsumexp(f(x)): the virtual logit against the energy's logsumexp.

  `residual_basis` R [D, D - k] spans the training features' directions outside their top-k
  principal subspace (about the origin o = -pinv(W^T) b of the class head); alpha scales the
  virtual logit to the training features' mean maximum logit. Higher means more anomalous, as the
  negated ViM score (energy minus the virtual logit) of the paper's code.
  """
  centred = tf.cast(features, tf.float64) - tf.cast(origin, tf.float64)
  residual = tf.norm(tf.matmul(centred, tf.cast(residual_basis, tf.float64)), axis=-1)
  return (tf.cast(alpha, tf.float64) * residual -
          tf.cast(tf.reduce_logsumexp(tf.cast(logits, tf.float32), axis=-1), tf.float64))


def fdbd(features, logits, kernel, train_mean):
  """-sum_{c != y} |f_y - f_c| / ||w_y - w_c|| / ||x - mu|| for the predicted class y.

  `kernel` [D, C] is the class head's (logits f = x W + b), `train_mean` [D] the training
  features' mean. |f_y - f_c| / ||w_y - w_c|| is x's distance to the boundary between y and c.
  """
  logits = tf.cast(logits, tf.float64)
  kernel = tf.cast(kernel, tf.float64)
  predicted = tf.argmax(logits, axis=-1)
  gaps = tf.abs(logits - tf.reduce_max(logits, axis=-1, keepdims=True))  # 0 for c = y
  columns = tf.transpose(kernel)  # [C, D]
  pair_norms = tf.norm(columns[:, None, :] - columns[None, :, :], axis=-1)
  # The y-th term has a zero gap; a unit norm there keeps it zero instead of 0 / 0.
  pair_norms += tf.eye(tf.shape(pair_norms)[0], dtype=tf.float64)
  boundary_distance = tf.reduce_sum(gaps / tf.gather(pair_norms, predicted), axis=-1)
  spread = tf.norm(tf.cast(features, tf.float64) - tf.cast(train_mean, tf.float64), axis=-1)
  return -boundary_distance / spread


def react_energy(features, kernel, bias, threshold):
  """The energy of the class head's logits for features clipped at `threshold` (ReAct)."""
  clipped = tf.minimum(tf.cast(features, tf.float32), tf.cast(threshold, tf.float32))
  return energy(tf.matmul(clipped, tf.cast(kernel, tf.float32)) + tf.cast(bias, tf.float32))
