"""``breastfusion serve``: a warm model process for scripts and batches (one JSON request per line on stdin).

The protocol is ``BreastFusionLib.serving.protocol``; ``BreastFusionLib.serving.client.WorkerProcess``
starts and drives such a process from Python. The 3D Slicer module runs the same server.
"""

from BreastFusionLib.serving.server import configure, run

HELP = "a warm model process: predict requests read line by line from standard input (JSON), answers on standard output"

__all__ = ["HELP", "configure", "run"]
