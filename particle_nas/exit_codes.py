"""The exit statuses of ``particle-nas``: one small module that every command imports, importing nothing.

0 done; 1 a search where no trial completed, or that stopped with a reason of its own (a failed
worker, a full disk, a CUDA error in a search run by one process), or a ``predict`` where no video
could be read; 2 bad input, in one ``particle-nas: error:`` line; 3 a search where some trials
failed, or a ``predict`` that skipped some videos (each named on stderr and listed in its JSON);
130 Ctrl-C (what finished is kept: ``particle-nas resume`` continues).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NO_TRIAL = 1  # the search ran but no trial completed
EXIT_STOPPED = 1  # the search stopped before its target with a reason no trial is to blame for (search.SearchStopped)
EXIT_BAD_INPUT = 2  # bad config, particle file, run directory, pick rule or command-line value
EXIT_SOME_FAILED = 3  # the search finished but some trials failed (their reasons are in trials.csv)
EXIT_NONE_PREDICTED = 1  # predict: no video could be read (each one skipped, with its reason)
EXIT_SOME_SKIPPED = 3  # predict: some videos were skipped (unreadable, too short); the others were predicted
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT (128 + 2)

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_NONE_PREDICTED", "EXIT_NO_TRIAL", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_SOME_SKIPPED", "EXIT_STOPPED"]
