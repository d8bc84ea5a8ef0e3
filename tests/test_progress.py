"""Progress: a tqdm bar on a terminal; elsewhere (a log that tee saves) a few plain lines, no carriage returns."""
import io

from tqdm import tqdm

from progress import progress


class Clock:
    """A clock the loop body moves on."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_into_a_file_a_plain_line_at_every_tenth(tmp_path):
    clock, path = Clock(), tmp_path / 'step.log'
    with path.open('w') as log:
        for _ in progress(range(400), 'test GMM', 'batch', file=log, clock=clock):
            clock.now += 0.25   # 4 batches/s: 400 batches take 100 s
    text = path.read_text()
    assert '\r' not in text
    assert text.splitlines()[0] == 'test GMM: 40/400 batches, 4.0 batch/s, eta 0:01:30'
    # after 40 k batches, 10 k s have passed, and 400 - 40 k batches are left at 4/s
    assert text.splitlines() == [f'test GMM: {40 * k}/400 batches, 4.0 batch/s, eta 0:{(100 - 10 * k) // 60:02d}:'
                                 f'{(100 - 10 * k) % 60:02d}' for k in range(1, 11)]


def test_a_line_at_least_every_30_seconds_and_one_at_the_end():
    clock, log = Clock(), io.StringIO()
    batches = progress(iter(range(100)), 'strips', 'pair', file=log, clock=clock)   # no total
    for index in batches:
        clock.now += 1.0
        if index == 50:
            batches.set_postfix_str('step: 51')
    # lines after 30, 60 and 90 s (pairs 30, 60, 90), and after the last pair
    assert log.getvalue().splitlines() == ['strips: 30 pairs, 1.0 pair/s', 'strips: 60 pairs, 1.0 pair/s, step: 51',
                                           'strips: 90 pairs, 1.0 pair/s, step: 51',
                                           'strips: 100 pairs, 1.0 pair/s, step: 51']


def test_on_a_terminal_a_tqdm_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress(range(3), 'test', 'batch', file=Terminal()), tqdm)
    assert not isinstance(progress(range(3), 'test', 'batch', file=io.StringIO()), tqdm)
