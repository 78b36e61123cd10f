"""`python -m takeover.cli`: the `takeover` command."""

import sys

from takeover.cli.parser import main

sys.exit(main())
