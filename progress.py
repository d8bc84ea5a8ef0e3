"""Progress of a long loop: a tqdm bar on a terminal, plain lines anywhere else.

The step scripts tee their output into logs/, where a tqdm bar becomes hundreds of carriage-return
frames. Off a terminal, ``progress`` prints a line at every tenth of the work and at least every
30 s instead, e.g. ``test GMM: 120/400 batches, 3.1 batch/s, eta 0:01:30``.
"""
import sys
import time
from datetime import timedelta

from tqdm import tqdm

LINES_PER_RUN = 10        # a line at every tenth of the work ...
MAX_SECONDS_SILENT = 30   # ... and at least this often


def progress(iterable, desc, unit, total=None, file=None, clock=time.monotonic):
    """``iterable``, reporting progress to ``file`` (default: stderr, as tqdm): a tqdm bar when ``file`` is a
    terminal, else a ProgressLines. Both take set_postfix_str(text) for the line's end."""
    file = file or sys.stderr
    if is_terminal(file):
        return tqdm(iterable, desc=desc, unit=unit, total=total, file=file)
    return ProgressLines(iterable, desc, unit, total, file, clock)


def is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):   # no isatty (a stand-in stream), or a closed stream
        return False


def plural(unit):
    return unit + ('es' if unit.endswith(('s', 'x', 'ch', 'sh')) else 's')


class ProgressLines:
    """Iterates over ``iterable`` and prints plain progress lines to ``file`` (see the module docstring).
    ``total`` defaults to len(iterable); without one there is a line every 30 s and one at the end."""

    def __init__(self, iterable, desc, unit, total, file, clock):
        self.iterable, self.desc, self.unit, self.file, self.clock = iterable, desc, unit, file, clock
        self.total = len(iterable) if total is None and hasattr(iterable, '__len__') else total
        self.postfix = ''

    def set_postfix_str(self, text):
        self.postfix = text

    def line(self, done, elapsed):
        """E.g. 'test GMM: 120/400 batches, 3.1 batch/s, eta 0:01:30' after ``done`` (>= 1) in ``elapsed`` s."""
        rate = done / elapsed if elapsed > 0 else float('inf')
        if self.total:
            eta = timedelta(seconds=round((self.total - done) / rate))
            text = f'{self.desc}: {done}/{self.total} {plural(self.unit)}, {rate:.1f} {self.unit}/s, eta {eta}'
        else:
            text = f'{self.desc}: {done} {plural(self.unit)}, {rate:.1f} {self.unit}/s'
        return text + (f', {self.postfix}' if self.postfix else '')

    def __iter__(self):
        start = last_line = self.clock()
        done = shown_done = tenths = 0
        for item in self.iterable:
            yield item
            done += 1
            now = self.clock()
            reached = done * LINES_PER_RUN // self.total if self.total else 0
            if reached > tenths or now - last_line >= MAX_SECONDS_SILENT:
                print(self.line(done, now - start), file=self.file, flush=True)
                shown_done, tenths, last_line = done, reached, now
        if done != shown_done:   # the last line is for all that was done
            print(self.line(done, self.clock() - start), file=self.file, flush=True)
