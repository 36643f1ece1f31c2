import sys

from .cli import main

if __name__ == "__main__":  # spawned soup members import this module too
    sys.exit(main())
