"""Mean ± standard deviation over trials, and the one plain-text table every command prints.

The paper reports "mean ± standard deviation over 3 trials" without saying which deviation; tfanom
reports the population one (numpy's default, ddof=0) everywhere: trials' aggregate.json and the
experiment reports. Over 3 trials the sample deviation (ddof=1) would be sqrt(3/2) = 1.22 times
larger; every trial's value is kept beside the summary, so either can be recomputed.
"""

from typing import Sequence

import numpy as np

STD_DDOF = 0
STD_KIND = 'population (ddof=0)'


def mean_std(values) -> dict:
  """{'mean', 'std', 'values'} of a list of numbers; the std of a single value is 0."""
  values = [float(v) for v in values]
  return dict(mean=float(np.mean(values)), std=float(np.std(values, ddof=STD_DDOF)),
              values=values)


def text_table(title: str, header: Sequence[str], rows: Sequence[Sequence], widths: Sequence[int],
               marked: Sequence[set] = ()) -> str:
  """A title line, a header and rows: the first column left-aligned, the others right-aligned.

  `widths` gives each column's width. Numbers print with two decimals (metrics are percentages),
  strings as they are. `marked[i]` holds the column indices of row i to flag with a trailing `*`
  (e.g. the best value of a column).
  """

  def cells(values, row_marks=frozenset()):
    texts = []
    for column, (value, width) in enumerate(zip(values, widths)):
      text = f'{value:.2f}' if isinstance(value, float) else str(value)
      if column in row_marks:
        text += '*'
      texts.append(f'{text[:width - 1]:<{width}}' if column == 0 else f'{text:>{width}}')
    return ''.join(texts)

  lines = [title, cells(header)]
  for index, row in enumerate(rows):
    lines.append(cells(row, marked[index] if index < len(marked) else frozenset()))
  return '\n'.join(lines)
