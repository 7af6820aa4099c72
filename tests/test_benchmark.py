"""`python -m benchmarks.suite --quick` prints every figure as a finite, positive ratio.

The timings themselves are not checked here (speed targets are read from the full benchmark). The
suite runs in this process (its own figures start the processes they measure).
"""

import math
import re

from tests.helpers import run_command_line

FIGURES = (
    'input pipeline / training step throughput',
    'custom loop / keras.Model.fit',
    'rotation epoch / classification epoch',
    'ODIN scoring / MSP scoring',
    'our AP / scikit-learn AP',
    'training FLOP/s / peak matmul FLOP/s',
    'fast preset training FLOP/s / peak matmul FLOP/s',
    'minimal Keras step FLOP/s / peak matmul FLOP/s',
    'hold-out split + pipeline RSS growth / training array size',
    'digits run peak RSS / 1 GiB',
    'second run / first run seconds to the first training batch',
    'prepared folder of 4N / N images, 2-epoch run peak RssAnon',
    'peak RssAnon above the N-image run / extra training array bytes, mirrored',
    'peak RssAnon above the N-image run / extra training array bytes, multiworker',
    'prepared data / in-memory array pipeline throughput',
)
# Memory growth between two runs: at --quick sizes (0.8 MiB of extra images) it is within the
# allocator's noise, and may be below zero.
SIGNED = ('peak RssAnon above the N-image run / extra training array bytes, mirrored',
          'peak RssAnon above the N-image run / extra training array bytes, multiworker')


def test_quick_benchmark_reports_every_ratio():
  result = run_command_line('benchmarks.suite', '--quick')
  assert result.returncode == 0, result.stderr[-2000:]
  lines = {line.split(':')[0]: line for line in result.stdout.splitlines() if ': ' in line}
  for figure in FIGURES:
    assert figure in lines, result.stdout
    match = re.fullmatch(re.escape(figure) + r': (\S+) \(target [^)]+\) \[(.+)\]', lines[figure])
    assert match, lines[figure]
    ratio = float(match.group(1))
    assert math.isfinite(ratio) and (ratio > 0 or figure in SIGNED), lines[figure]
  difference = re.search(r'\|difference\| (\S+)\]', lines['our AP / scikit-learn AP']).group(1)
  assert float(difference) < 1e-12
