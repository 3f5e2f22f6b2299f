"""The test token issuer in a process of its own, so it does not compete for the benchmark's GIL.

Run by :class:`benchmarks.stack.IssuerProcess`; not meant to be started by hand. Protocol, one
JSON document per line:

* stdin, first line: ``{"workdir": ..., "users": {name: password}, "policy": {...}}`` (secrets
  never go on the command line, where ``ps`` would show them; ``policy``: IssuerPolicy fields);
* stdout, first line: ``{"realm", "service", "issuer", "rootcertbundle"}`` once it serves;
* then stdin commands ``stats`` (answer: ``{"total", "scopes", "max_per_scope", "gets",
  "posts", "unauthorized", "errors"}``: requests, distinct scopes asked, most requests for one
  scope) and ``reset`` (answer: ``{}``); end of input stops the issuer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# The issuer lives with the test peers (tests/ is a package of the repository, not installed).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.peers.token_issuer import IssuerPolicy, TokenIssuer


def main() -> int:
    setup = json.loads(sys.stdin.readline())
    # "policy": IssuerPolicy fields to change (the soak's short-lived tokens); default 1 hour.
    policy = IssuerPolicy(
        users=setup["users"], **{"token_lifetime": 3600.0, **setup.get("policy", {})}
    )
    with TokenIssuer(Path(setup["workdir"]), policy=policy) as issuer:
        hello = {
            "realm": issuer.realm,
            "service": issuer.service,
            "issuer": issuer.issuer,
            "rootcertbundle": str(issuer.rootcertbundle),
        }
        print(json.dumps(hello), flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                per_scope = issuer.scope_counts()
                answer = {
                    "total": issuer.total,
                    "scopes": len(per_scope),
                    "max_per_scope": max(per_scope.values(), default=0),
                    "gets": issuer.gets,
                    "posts": issuer.posts,
                    "unauthorized": issuer.count(status=401),
                    "errors": len(issuer.errors),
                }
            elif command == "reset":
                issuer.reset()
                answer = {}
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
