"""``python -m diffusers_mdiffae.dataset_encoding`` (and ``accelerate launch -m ...``)."""

import sys

from .encode import main

sys.exit(main())
