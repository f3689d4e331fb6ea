"""Count the requests and status codes in a schemathesis NDJSON report; exit 1 if any response was 5xx.

Used by scripts/schemathesis_run.sh. Layout read: ScenarioFinished.recorder.interactions[*].response.
"""

from __future__ import annotations

import collections
import json
import sys


def main(path: str) -> int:
    codes: collections.Counter[int] = collections.Counter()
    per_operation: collections.Counter[str] = collections.Counter()
    server_errors = []
    with open(path) as fh:
        for line in fh:
            event = json.loads(line).get("ScenarioFinished")
            if not event:
                continue
            recorder = event.get("recorder", {})
            for interaction in recorder.get("interactions", {}).values():
                response = interaction.get("response")
                if not response:
                    continue
                code = int(response["status_code"])
                codes[code] += 1
                per_operation[recorder.get("label", "?")] += 1
                if code >= 500:
                    request = interaction["request"]
                    server_errors.append(f"{code} {request['method']} {request['uri']}")
    total = sum(codes.values())
    print(f"schemathesis: {total} requests over {len(per_operation)} operations; "
          f"status codes: {dict(sorted(codes.items()))}; 5xx: {len(server_errors)}")
    for label, n in sorted(per_operation.items()):
        print(f"  {n:6d}  {label}")
    for line in server_errors[:20]:
        print("  5xx:", line)
    return 1 if server_errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
