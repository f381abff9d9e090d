"""Group a tempest run's failures by cause: read the subunit stream `stestr last --subunit` wrote
and print each distinct cause (the traceback's last `Details:` or exception line, ids and
addresses blanked) with how many tests it failed and one of them.

Run with tempest's own interpreter (`build/tempest-venv/bin/python`): it needs python-subunit and
testtools, which Ferry's venv does not have. Reads only; prints to stdout.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import subunit  # type: ignore[import-not-found]
import testtools  # type: ignore[import-not-found]

_BLANKS = (
    (re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"), "<id>"),
    (re.compile(r"[0-9a-f]{32}"), "<id>"),
    (re.compile(r"https?://[\w.:-]+"), "<ferry>"),
    (re.compile(r"tempest-[\w-]+"), "<name>"),
)


_REFUSED = re.compile(r"Request \([^)]*\): ([45]\d\d) (\w+) (\S+)")
"""tempest's log line of a request Ferry refused: status, method, URL."""


def cause(traceback: str, log: str) -> str:
    """The line that says why: tempest's `Details:` when it gave one, else the exception; with
    the request whose refusal it reports (status, method, path) when the log has it."""
    lines = [ln.strip() for ln in traceback.strip().splitlines() if ln.strip()]
    details = [ln for ln in lines if ln.startswith("Details:")]
    line = details[-1] if details else (lines[-1] if lines else "(no traceback)")
    refused = [r for r in _REFUSED.findall(log) if r[0] in line]  # the refusal that failed the test
    if refused:
        status, method, url = refused[-1]
        path = re.sub(r"/v3/[0-9a-f]{32}", "/v3/<project>", url.split("?")[0])
        line = f"{status} {method} {re.sub(r'https?://[^/]+', '', path)}: {line}"
    for pattern, blank in _BLANKS:
        line = pattern.sub(blank, line)
    return line[:300]


def failures(stream: Path) -> dict[str, tuple[str, str]]:
    """Failed test id → its traceback and tempest's log of it."""
    found: dict[str, tuple[str, str]] = {}

    def text(details: dict[str, Any], prefix: str) -> str:
        """The attachment whose name starts with `prefix` (`pythonlogging:''`)."""
        return next((str(v.as_text()) for k, v in details.items() if k.startswith(prefix)), "")

    def on_test(test: dict[str, Any]) -> None:
        if test["status"] == "fail":
            found[test["id"]] = (text(test["details"], "traceback"), text(test["details"], "pythonlogging"))

    with stream.open("rb") as f:
        case = subunit.ByteStreamToStreamResult(f, non_subunit_name="stdout")
        result = testtools.StreamToDict(on_test)
        result.startTestRun()
        case.run(result)
        result.stopTestRun()
    return found


def main() -> int:
    failed = failures(Path(sys.argv[1]))
    counts: Counter[str] = Counter()
    example: defaultdict[str, str] = defaultdict(str)
    for test_id, (tb, log) in failed.items():
        c = cause(tb, log)
        counts[c] += 1
        example[c] = example[c] or test_id.split("[")[0]
    print(f"# {len(failed)} failed, {len(counts)} distinct causes (count, cause, one test)")
    for c, n in counts.most_common():
        print(f"{n:4d}  {c}\n      e.g. {example[c]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
