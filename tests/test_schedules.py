"""The learning-rate schedules: the triangle and the paper's steps."""

import numpy as np

from tfanom.training.schedules import TriangleSchedule, learning_rate_schedule


def test_triangle_schedule():
  schedule = TriangleSchedule(1.5, 100)
  values = [float(schedule(step)) for step in (0, 20, 100)]
  np.testing.assert_allclose(values, [0.3, 1.5, 0.0], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(float(schedule(10)), 1.5 * (0.2 + 0.8 * 10 / 20), rtol=1e-6)
  np.testing.assert_allclose(float(schedule(50)), 1.5 * (1 - 30 / 80), rtol=1e-6)


def test_step_schedule_multiplies_the_rate_at_each_fraction(make_config):
  # 10 epochs of 10 steps, decays at 30% and 60%: 0.1 until step 30, 0.02 until 60, then 0.004.
  config = make_config(epochs=10, learning_rate=0.1, lr_schedule='step',
                       lr_decay_fractions=(0.3, 0.6), lr_decay_factor=0.2)
  schedule = learning_rate_schedule(config, steps_per_epoch=10)
  values = [float(schedule(step)) for step in (0, 30, 31, 60, 61, 99)]
  np.testing.assert_allclose(values, [0.1, 0.1, 0.02, 0.02, 0.004, 0.004], rtol=1e-6)
