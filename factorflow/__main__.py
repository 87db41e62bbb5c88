import sys

from factorflow.cli import main

sys.exit(main())
