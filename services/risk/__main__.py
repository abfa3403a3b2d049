"""``python -m services.risk``: run the risk service (settings from FR_* variables).

Exits 2 with a message when it must not start: a malformed thresholds policy (the
message names each problem's line and field), no audit key, or a policy whose content
changed under a version already used.
"""

import sys

from services.risk.app import StartupError, build_service
from services.risk.policy import PolicyError


def main() -> int:
    try:
        service = build_service()
        service.run()
    except (PolicyError, StartupError) as exc:
        print(f"risk: not started: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
