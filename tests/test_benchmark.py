"""benchmarks.suite: its measuring tools against known quantities, and (`slow`) every figure of
`python -m benchmarks.suite --quick` as a finite, positive ratio.

The timings themselves are not checked (speed targets are read from the full benchmark). The
`--quick` run starts fourteen TensorFlow processes, about 170 s on 2 cores; the tests above it
check, in a few seconds, the tools every figure is computed with: FLOP counts, peak memory of a
process, the AP comparison and the report's line format.
"""

import math
import re
import sys

import keras
import numpy as np
import pytest

from benchmarks import suite
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
    '--strategy=auto / mirrored training throughput',
)
# Memory growth between two runs: at --quick sizes (0.8 MiB of extra images) it is within the
# allocator's noise, and may be below zero.
SIGNED = ('peak RssAnon above the N-image run / extra training array bytes, mirrored',
          'peak RssAnon above the N-image run / extra training array bytes, multiworker')
LINE = r': (\S+) \(target [^)]+\) \[(.+)\]'


@pytest.mark.parametrize('layer, flops', [
    # A 3x3 convolution: 2 k^2 C_in C_out operations per output pixel, 32x32 pixels, 2 images.
    (keras.layers.Conv2D(4, 3, padding='same', use_bias=False), 2 * 9 * 3 * 4 * 32 * 32 * 2),
    (keras.layers.Dense(5, use_bias=False), 2 * 3 * 5 * 32 * 32 * 2),
])
def test_forward_flops_are_the_multiply_adds_of_each_layer(layer, flops):
  model = keras.Sequential([keras.Input((32, 32, 3)), layer])
  assert suite.forward_flops(model, 2) == flops


def test_peak_rss_anon_sees_the_memory_a_process_writes():
  idle, writer = suite.peak_rss_anon([
      [sys.executable, '-c', 'import time; time.sleep(0.3)'],
      [sys.executable, '-c', "import time; data = b'\\x01' * (256 * 2**20); time.sleep(0.3)"]])
  assert 250 < writer - idle < 262, (idle, writer)


def test_our_ap_is_scikit_learns_on_tied_scores():
  ours, sklearn, difference = suite.ap_seconds(10**4)
  assert ours > 0 and sklearn > 0
  assert difference < 1e-12


def test_a_prepared_split_maps_the_same_images(tmp_path):
  split = suite.synthetic_split(64)
  mapped = suite.prepared_split(split, str(tmp_path))
  assert isinstance(mapped.train.images.base, np.memmap)  # the images stay in the file
  np.testing.assert_array_equal(np.asarray(mapped.train.images), split.train.images)
  np.testing.assert_array_equal(mapped.train.labels, split.train.labels)


def test_report_lines_read_name_ratio_target_and_raw(capsys):
  suite.report('our AP / scikit-learn AP', 0.5, '<= 1.0', '0.1 vs 0.2 s')
  line = capsys.readouterr().out.strip()
  match = re.fullmatch(re.escape('our AP / scikit-learn AP') + LINE, line)
  assert match and float(match.group(1)) == 0.5 and match.group(2) == '0.1 vs 0.2 s'


# The tools every figure is computed with are checked by the tests above in the default run.
@pytest.mark.slow
def test_quick_benchmark_reports_every_ratio():
  result = run_command_line('benchmarks.suite', '--quick')
  assert result.returncode == 0, result.stderr[-2000:]
  lines = {line.split(':')[0]: line for line in result.stdout.splitlines() if ': ' in line}
  for figure in FIGURES:
    assert figure in lines, result.stdout
    match = re.fullmatch(re.escape(figure) + LINE, lines[figure])
    assert match, lines[figure]
    ratio = float(match.group(1))
    assert math.isfinite(ratio) and (ratio > 0 or figure in SIGNED), lines[figure]
  difference = re.search(r'\|difference\| (\S+)\]', lines['our AP / scikit-learn AP']).group(1)
  assert float(difference) < 1e-12
