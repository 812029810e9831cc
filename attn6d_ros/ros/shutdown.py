"""Signals for a clean exit: the first SIGINT or SIGTERM interrupts the main thread once, later ones only log.

Ctrl-C in a terminal sends SIGINT to the whole process group, so under `ros2 launch` a node receives two: the
terminal's and the one launch forwards. Python's default handler raises KeyboardInterrupt on each; the second
one landed in the middle of the clean-up (joining the inference worker), which ended with a traceback and
exit code -2 ("process has died"; issue 30). With `ShutdownSignals` installed before `rclpy.init` (rclpy's own
handlers call the Python handler they find installed after shutting the context down), the first signal
raises KeyboardInterrupt as before and every later one is only logged while the clean-up runs to its end.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """Handles SIGINT and SIGTERM: KeyboardInterrupt on the first (unless `cleaning_up`), a log line after.

    Args:
        log: called with a message for every signal after the first.
    """

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self.received = 0  # signals received so far
        self.cleaning_up = False  # set when the clean-up starts: no KeyboardInterrupt from then on

    def install(self) -> None:
        """Installs the handler for SIGINT and SIGTERM (main thread only, as Python requires)."""
        for signum in SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received += 1
        if self.received == 1 and not self.cleaning_up:
            raise KeyboardInterrupt
        self._log(
            f"{signal.Signals(signum).name} received again: still shutting down (stopping the inference "
            "worker, at most the frame in progress)"
        )
