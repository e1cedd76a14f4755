"""`python -m waveforms.cli ...`: the same as the `waveforms` console script."""

import sys

from waveforms.cli import main

sys.exit(main())
