"""Run ``provision`` and SIGKILL it the instant the journal has recorded a given phase (its Nth occurrence).

``python -m tests.faults.killat PHASE N provision-args...``. Some phases are followed by the next one within
microseconds, with no IM call between (``rendered`` -> ``submitting``, ``infra_id_known`` -> ``waiting``), so no
test polling from outside can kill the CLI there reliably; this wrapper does it deterministically: the phase's
journal transaction has committed, nothing after it has run, and the process gets no chance to clean up.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from provisioner.state import store as store_module


def main() -> None:
    phase, nth, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    original = store_module.Store.append
    seen = 0

    def append(self: store_module.Store, name: str, what: Any, detail: Any = None) -> store_module.JournalEntry:
        nonlocal seen
        entry = original(self, name, what, detail)
        if entry.phase.value == phase:
            seen += 1
            if seen == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        return entry

    store_module.Store.append = append  # type: ignore[method-assign]
    from provisioner.cli.main import run

    run(argv)


if __name__ == "__main__":
    main()
