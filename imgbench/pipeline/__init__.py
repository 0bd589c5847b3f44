"""The Snakemake glue and planning: the top layer, the only code that knows about workflows."""
