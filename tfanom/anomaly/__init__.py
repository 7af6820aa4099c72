"""Anomaly scores (`scores`: higher = more anomalous) and the metrics that rank them (`metrics`).

The names of the scores `tfanom.evaluate` offers live here, free of TensorFlow, so that tools which
only read results (`experiments.report`) can check a score's name without importing it.
"""

SCORES = ('msp', 'odin', 'energy', 'max_logit', 'gen', 'mahalanobis', 'rmds', 'knn', 'vim', 'fdbd',
          'react_energy', 'rotation', 'rotpred')
FEATURE_SCORES = ('mahalanobis', 'rmds', 'knn', 'vim', 'fdbd', 'react_energy')
ROTATION_SCORES = ('rotation', 'rotpred')  # need a rotation head
# The score of `anomaly_score`/`is_anomaly` when tfanom.export is not told: fixed from the measurements
# in docs/scores.md ("Choosing a score"), never from the anomalies of the run being exported.
DEFAULT_SCORE = 'vim'
