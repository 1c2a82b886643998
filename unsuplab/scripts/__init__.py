"""Command-line training scripts: ``python -m unsuplab.scripts.<name> --help``."""
