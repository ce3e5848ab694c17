"""`python -m napari_mammo` runs the command line."""

import sys

from napari_mammo.cli import main

sys.exit(main())
