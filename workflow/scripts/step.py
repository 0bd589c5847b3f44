"""Entry point of every rule: hand the job to imgbench.pipeline.snake (the logic lives in the
package, installed into the environment the job runs in)."""

from imgbench.pipeline.snake import run

run(snakemake)  # noqa: F821 - injected by Snakemake's script: directive
