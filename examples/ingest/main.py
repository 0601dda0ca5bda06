"""Start a supervisor with two workers, run the seed workflow, print the result.

python -m examples.ingest.main
"""

from __future__ import annotations

import json

from coda.testing import SupervisorProcess

from .workflows import process_event


def main() -> None:
    quiet = ["--log-level", "WARNING"]
    with SupervisorProcess(["examples.ingest.workflows"], workers=2, extra_args=quiet) as sup:
        print(f"supervisor listening on {sup.address}")
        client = sup.client()
        event = {"event_id": "a1b2c3", "Message": "  Disk almost full  ", "Level": "warning"}
        result = client.run(process_event, args={"project_id": 42, "event_data": event}, timeout=30)
        print("process_event returned:")
        print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
