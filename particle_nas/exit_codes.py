"""The exit statuses of ``particle-nas``: one small module that every command imports, importing nothing.

0 done; 1 a search where no trial completed, or that stopped with a reason of its own (a failed
worker, a full disk); 2 bad input, in one ``particle-nas: error:`` line; 3 a search where some
trials failed; 130 Ctrl-C (what finished is kept: ``particle-nas resume`` continues).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NO_TRIAL = 1  # the search ran but no trial completed
EXIT_STOPPED = 1  # the search stopped before its target with a reason no trial is to blame for (search.SearchStopped)
EXIT_BAD_INPUT = 2  # bad config, particle file, run directory, pick rule or command-line value
EXIT_SOME_FAILED = 3  # the search finished but some trials failed (their reasons are in trials.csv)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT (128 + 2)

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_NO_TRIAL", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_STOPPED"]
