"""``tickwire serve`` with another simulator wake-up step (bench only; nothing else changes).

In load mode the simulator wakes every ``SimulatorConfig.step`` (100 ms, not a CLI setting) and
emits the ticks of the elapsed step at once, so at 10 M deliveries/s every flush moves ~100 MB.
This runs the same CLI with the step taken from ``FANOUT_SIM_STEP`` (seconds), to measure the
gateway under smooth input:

    FANOUT_SIM_STEP=0.002 python -m bench.fanout_peers.tickwire_paced serve --load-rate ...
"""

from __future__ import annotations

import functools
import os

import tickwire.node
from tickwire.cli import main
from tickwire.feeds.simulator import SimulatorConfig

if __name__ == "__main__":
    step = float(os.environ["FANOUT_SIM_STEP"])
    tickwire.node.SimulatorConfig = functools.partial(SimulatorConfig, step=step)  # type: ignore[misc]
    main()
