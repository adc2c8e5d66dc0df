"""`python -m dinrec ...` (what torchrun launches) runs the CLI."""

import sys

from dinrec.cli.main import main

sys.exit(main())
