"""Faults a real run meets, through the command line: a workdir that is a file. Each case checks
the exit status, the one line said, and that nothing earlier changed. A scheduler's SIGTERM
mid-epoch, a SIGKILL, a closed terminal and a second process on the same workdir are met by one
chain of runs on one workdir (test_reliability.py's
test_sigkill_sigterm_in_a_closed_terminal_then_a_rerun_end_as_the_uninterrupted_run), which ends
as an uninterrupted run. Damaged checkpoints and a full disk are tested in process (test_loop.py,
test_evaluation.py): the logic is the library's, and each TensorFlow process costs seconds to
start. For the same reason the refused commands run as tfanom.train's main() in the test's process
(the `train_command` fixture)."""

import pytest

TINY = ['--dataset=digits', '--holdout=5', '--depth=10', '--width=1']


def test_a_workdir_that_is_a_file_is_one_line(tmp_path, train_command, capsys):
  (tmp_path / 'run').write_text('a file')
  with pytest.raises(SystemExit) as exit_info:
    train_command([*TINY, '--epochs=1', f'--workdir={tmp_path / "run"}'])
  assert exit_info.value.code == 2
  lines = capsys.readouterr().err.splitlines()
  assert len(lines) == 1 and lines[0].startswith('tfanom.train: error: '), lines
  assert lines[0].endswith('is a file, not a folder: pass a folder for the run')
  assert (tmp_path / 'run').read_text() == 'a file'
