import sys

from particle_nas.cli import main

sys.exit(main())
