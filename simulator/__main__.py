import sys

from .cli import main

try:
    sys.exit(main())
except BrokenPipeError:  # e.g. piped into `head`
    sys.exit(0)
