"""The training progress bar: tqdm on a terminal, plain lines in logs.

On a terminal (``stderr`` a TTY) a tqdm bar with the latest losses as its postfix. Anywhere
else (CI logs, ``nohup``, a file) no carriage returns: one line every ``every`` steps and at
the end, formatted by tqdm (``step 40/200 [00:12<00:48, 3.3step/s, loss 0.41 ...]``).
"""

from __future__ import annotations

import sys
import time

LINE = "step {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class Progress:
    """``update(step, text)`` after each logged step, ``write(msg)`` for a message that must
    not tear the bar, ``close()`` at the end; ``total`` may change (a budgeted run)."""

    def __init__(self, total: int, start: int, every: int = 100, enabled: bool = True, file=None):
        from tqdm import tqdm

        self.file = file or sys.stderr
        self.start, self.every, self.enabled, self.t0 = start, every, enabled, time.time()
        self.tty = enabled and self.file.isatty()
        self._total = total
        self.bar = (tqdm(total=total, initial=start, file=self.file, unit="step", dynamic_ncols=True,
                         bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
                    if self.tty else None)
        self.format_meter = tqdm.format_meter

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value
        if self.bar is not None:
            self.bar.total = value
            self.bar.refresh()

    def update(self, step: int, text: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(step - self.bar.n)
        elif self.enabled and (step % self.every == 0 or step == self._total):
            print(self.line(step, text), file=self.file, flush=True)

    def line(self, step: int, text: str = "") -> str:
        """The log line for ``step``: count, elapsed < remaining, rate, ``text``."""
        return self.format_meter(step, self._total, time.time() - self.t0, unit="step", initial=self.start,
                                 postfix=text or None, bar_format=LINE)

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.file)
        else:  # shown also when the bar is off (quiet): warnings are not progress
            print(message, file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
