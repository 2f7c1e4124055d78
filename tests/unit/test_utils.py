"""Shared helpers: the progress display and the oversubscription warning."""

import pytest


def test_log_progress_counts_steps_in_whole_numbers(caplog):
    from bertforge.utils import _LogProgress

    bar = _LogProgress(63, "fine-tune", "step", False, 0.0)
    with caplog.at_level("INFO", logger="bertforge"):
        bar.update(15)
    assert "fine-tune: 15/63 step" in caplog.text
    sized = _LogProgress(3e6, "read", "B", True, 0.0)
    with caplog.at_level("INFO", logger="bertforge"):
        sized.update(1.5e6)
    assert "read: 1.5/3.0 MB" in caplog.text


def test_oversubscription_is_said_once_it_is_seen(monkeypatch, caplog):
    import subprocess
    import sys

    from bertforge import utils

    seen = utils.runnable_elsewhere()
    if seen is None:
        pytest.skip("no /proc/stat here")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        others, cores = utils.runnable_elsewhere(samples=10)
    finally:
        for p in busy:
            p.kill()
    assert others >= 1.0 and cores >= 1  # the two spinning processes are seen as others' running threads
    monkeypatch.setattr(utils, "runnable_elsewhere", lambda: (3.0, 2))
    with caplog.at_level("WARNING", logger="bertforge"):
        assert (
            "oversubscribed: other processes keep 3.0 threads running on the 2 cores" in utils.warn_if_oversubscribed(2)
        )
    monkeypatch.setattr(utils, "runnable_elsewhere", lambda: (0.2, 2))
    assert utils.warn_if_oversubscribed(2) is None
    monkeypatch.setattr(utils, "runnable_elsewhere", lambda: (1.0, 16))  # another job on a big machine: room left
    assert utils.warn_if_oversubscribed(8) is None
