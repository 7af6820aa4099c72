"""mean ± std and the plain-text table every command prints."""

import numpy as np

from tfanom.summaries import STD_DDOF, mean_std, text_table


def test_mean_std_is_the_population_deviation():
  values = [61.0, 57.5, 70.25]
  stat = mean_std(values)
  assert STD_DDOF == 0
  assert stat == dict(mean=np.mean(values), std=np.std(values, ddof=0), values=values)
  assert mean_std([3.0])['std'] == 0.0


def test_text_table_aligns_columns_and_marks_cells():
  table = text_table('title', ['score', 'AP', 'AUROC'],
                     [['msp', 9.0, 49.333], ['mahalanobis', 97.62, 99.68]], [13, 10, 10],
                     marked=[set(), {1, 2}])
  assert table.splitlines() == ['title',
                                'score                AP     AUROC',
                                'msp                9.00     49.33',
                                'mahalanobis      97.62*    99.68*']
