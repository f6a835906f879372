"""``python -m diffusers_mdiffae.dataset_encoding`` (and ``accelerate launch -m ...``).

Options are parsed before the encoder (and torch) is imported, so ``-h`` and argument errors are instant.
"""

import sys

from .options import build_parser

args = build_parser().parse_args()

from .encode import main_with_args  # noqa: E402  (after parsing, on purpose)

sys.exit(main_with_args(args))
