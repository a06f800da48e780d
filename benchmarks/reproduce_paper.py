"""The paper's artefacts at full size, plaintext and CrypTen backends, headlines beside the
paper's figures. CSV and HTML go to --out (default: a temporary directory).

Table 1 and Figure 3 study fine-tuning's hyper-parameters and run in plaintext; Figure 6 runs on
MNIST 3 vs 5 unless --data-dir points at the CIFAR-10 python batches.
"""

import argparse
import tempfile
import time

from explorer.config import AppraiserConfig
from explorer.reproduce import Options, reproduce

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("artefacts", nargs="*", default=["table1", "table2", "fig6", "fig8"])
    parser.add_argument("--backends", default="plaintext,crypten")
    parser.add_argument("--out")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="reproduce-")
    for backend in args.backends.split(","):
        for name in args.artefacts:
            if backend == "crypten" and name in ("table1", "fig3"):
                continue
            start = time.perf_counter()
            options = Options(config=AppraiserConfig(backend=backend), data_dir=args.data_dir)
            rep = reproduce(name, options)
            rep.write(out)
            for line in rep.headlines:
                print(f"[{backend}] {line}", flush=True)
            print(f"[{backend}] {name} took {time.perf_counter() - start:.0f} s", flush=True)
    print(f"files in {out}")
