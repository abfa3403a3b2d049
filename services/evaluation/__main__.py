"""``python -m services.evaluation`` runs the service (consumers, relay, one worker);
``python -m services.evaluation worker`` runs a worker process only."""

import sys

from services.evaluation.app import build_service, run_worker

if sys.argv[1:] == ["worker"]:
    run_worker()
elif sys.argv[1:]:
    sys.exit("usage: python -m services.evaluation [worker]")
else:
    build_service().run()
