"""The loader benchmark as a script: same as ``pretrain bench-loader OUTPUT ...``.

Reproduce docs/loader.md::

    python benchmarks/make_loader_output.py bench_out/loader
    python benchmarks/bench_loader.py bench_out/loader/output --source bench_out/loader/source \
        --patch-size 160 --batch-size 2 --workers 2 --seconds 30
"""

from __future__ import annotations

import sys

from pretrain.bench_loader import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
