"""Adversarially-trained deep nets transfer better: the science behind the Snakemake workflow.

Importing the package imports nothing heavy; torch loads only with the modules that need it.
"""

__version__ = "0.1.0"
