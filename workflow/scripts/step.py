"""Entry point of every rule: hand the job to imgbench.snake (the logic lives in the package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))

from imgbench.snake import run  # noqa: E402

run(snakemake)
