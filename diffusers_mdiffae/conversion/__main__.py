"""``python -m diffusers_mdiffae.conversion SNAPSHOT OUT [--verify]`` (also ``mdiffae convert``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
