"""Stop signals: the one place that installs handlers for them and puts the old ones back.

Signals that ask a run to stop: each ends it like a first Ctrl-C (finish the step,
checkpoint, status interrupted). SIGTERM: kill, timeout, a container stop, a cluster
scheduler; SIGHUP: the terminal closed; SIGQUIT: Ctrl-backslash.
"""

from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@contextlib.contextmanager
def handling(signals, handler):
    """handler for these signals while the block runs. Only the main thread can take
    signals (elsewhere nothing is installed), a signal the process was started with
    ignored (nohup's SIGHUP, SIGINT in a script's background job) stays ignored, and the
    previous handlers come back afterwards."""
    previous = {}
    try:
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def end_after_the_step(loop):
    """While `loop` (a Trainer, a StackedTrainer) runs: a first stop signal sets
    loop._interrupted (read between steps) and names itself in loop._signal; a second
    raises KeyboardInterrupt at once."""

    def handler(signum, frame):
        if loop._interrupted:
            raise KeyboardInterrupt
        loop._interrupted = True
        loop._signal = signal.Signals(signum).name

    return handling(STOP_SIGNALS, handler)


def stop_reason(signal_name: str | None) -> str:
    """Why an interrupted run stopped: the signal that stopped it (Ctrl-C for SIGINT)."""
    return f"stopped by {'Ctrl-C' if signal_name in (None, 'SIGINT') else signal_name}"
