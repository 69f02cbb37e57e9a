"""Why a search stopped before its target, when the reason is not a trial's (those fail their trial and the search goes on)."""

from __future__ import annotations


class SearchStopped(RuntimeError):
    """The search stopped with a reason of its own: a worker that failed, a study that could not be written (a full disk).

    The message is one line, ending with what to do; every trial the study holds is kept.
    The CLI prints it and exits 1.
    """
