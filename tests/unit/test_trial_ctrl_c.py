"""A Ctrl-C that lands while a trial container is being removed is deferred until it is
gone, then raised: never swallowed (CI saw `ossctl tune` go on to the next trial and exit 0)."""

from __future__ import annotations

import os
import signal

import pytest

from ossctl.serve.trial import Trial


class _Runtime:
    def __init__(self):
        self.removed = []

    def remove(self, name):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the removal
        self.removed.append(name)


def _trial(rt, said):
    t = object.__new__(Trial)  # only what _remove uses
    t.rt, t.name, t.removed, t.log = rt, "ossctl-trial-p-1", False, said.append
    return t


def test_ctrl_c_during_the_removal_is_raised_once_the_container_is_gone():
    rt, said = _Runtime(), []
    t = _trial(rt, said)
    with pytest.raises(KeyboardInterrupt):
        t._remove()
    assert rt.removed == ["ossctl-trial-p-1"] and t.removed
    assert said == ["trial: Ctrl-C: removing the trial container first", "trial: removed ossctl-trial-p-1"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back


def test_a_removal_without_ctrl_c_raises_nothing():
    class Quiet(_Runtime):
        def remove(self, name):
            self.removed.append(name)

    rt, said = Quiet(), []
    _trial(rt, said)._remove()
    assert rt.removed == ["ossctl-trial-p-1"] and said == ["trial: removed ossctl-trial-p-1"]
