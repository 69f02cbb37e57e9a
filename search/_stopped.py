"""Why a search stopped before its target, when the reason is not a trial's (those fail their trial and the search goes on)."""

from __future__ import annotations

from particle_nas.evaluators import is_cuda_error

from ._trial import error_line


class SearchStopped(RuntimeError):
    """The search stopped with a reason of its own: a worker that failed, a study that could not be written (a full disk).

    The message is one line, ending with what to do; every trial the study holds is kept.
    The CLI prints it and exits 1.
    """


class CudaErrorStopped(SearchStopped):
    """A CUDA error other than out of memory broke the CUDA context of the process running trials: it runs no further trial.

    ``what`` is "trial N (TYPE: first line of the error)"; the trial itself is failed
    'interrupted: ...' (it does not count, another runs in its place).
    """

    def __init__(self, message: str, *, what: str = "") -> None:
        super().__init__(message)
        self.what = what


def stop_after_cuda_error(err: BaseException | None, *, trial: int, run_dir: object) -> None:
    """Raise CudaErrorStopped when ``err``, met by ``trial``, is a CUDA error other than out of memory.

    After one the process's CUDA context is broken: every later trial in it would fail too. The
    trial is already failed 'interrupted: ...'; resume goes on in a fresh process.
    """
    if err is None or not is_cuda_error(err):
        return
    what = f"trial {trial} ({error_line(err)})"
    raise CudaErrorStopped(
        f"a CUDA error in {what} left this process unable to use the GPU; the search stopped with that trial marked "
        f"interrupted (it runs again): particle-nas resume {run_dir} goes on in a fresh process",
        what=what,
    )
