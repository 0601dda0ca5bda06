"""Run the ported ingest pipeline (the *after*) on a local supervisor.

python -m examples.sentry_ingest.main
"""

from __future__ import annotations

import json
import os
import tempfile

from coda.testing import SupervisorProcess

from . import steps
from .after import ingest_event


def main() -> None:
    state = tempfile.mkdtemp(prefix="sentry-ingest-")
    os.environ.setdefault("INGEST_DB", os.path.join(state, "events.sqlite3"))
    os.environ.setdefault("INGEST_STATE_DIR", state)
    quiet = ["--log-level", "WARNING"]
    with SupervisorProcess(["examples.sentry_ingest.after"], workers=2, extra_args=quiet) as sup:
        event = {
            "event_id": "9f2c4e",
            "Message": "  Disk   almost full ",
            "Level": "WARNING",
            "frames": [{"addr": "0x1f00"}],
            "symbolicator_failures": 1,  # the first symbolication attempt times out
        }
        event_id = sup.client().run(
            ingest_event, args={"project_id": 42, "event_data": event}, timeout=60
        )
        print(f"ingest_event saved {event_id}:")
        print(json.dumps(steps.saved(42, event_id), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
