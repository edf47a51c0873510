import os
import sys

from neurocarto.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # Under torchrun, gloo's worker threads may still release a finished collective's tensors while the
    # interpreter tears down, which aborts the process: the work is done and saved, so leave without teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
