import sys

from omnipatch.cli import main

sys.exit(main())
