"""Entry point of the image: runs the tasks that /in/env.yaml (or $DEFAULT_ENV_FILE_PATH) asks for."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from executor.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
