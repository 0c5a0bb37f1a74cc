"""`python -m phaselocknet.cli`, the same as `python -m phaselocknet`."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
