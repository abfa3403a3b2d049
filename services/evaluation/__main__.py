"""``python -m services.evaluation`` runs the service (consumers, relay, one worker);
``python -m services.evaluation worker`` runs a worker process only."""

import sys

from services.evaluation.app import main

if sys.argv[1:] not in ([], ["worker"]):
    sys.exit("usage: python -m services.evaluation [worker]")
main(sys.argv[1:])
