import sys

from bench.peers.run import main

sys.exit(main(sys.argv[1:]))
