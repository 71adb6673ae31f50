import sys

from promptworth.cli import main

sys.exit(main())
