"""Summarise a py-spy speedscope profile: top functions by self and by inclusive time."""

from __future__ import annotations

import json
import sys
from collections import Counter


def summarize(path: str, top: int = 25) -> str:
    with open(path) as f:
        data = json.load(f)
    frames = data["shared"]["frames"]
    self_t: Counter[int] = Counter()
    incl: Counter[int] = Counter()
    total = 0.0
    for prof in data["profiles"]:
        for stack, w in zip(prof["samples"], prof["weights"], strict=False):
            total += w
            if stack:
                self_t[stack[-1]] += w
            for fi in set(stack):
                incl[fi] += w

    def name(i: int) -> str:
        fr = frames[i]
        file = fr.get("file", "")
        short = "/".join(file.split("/")[-2:]) if file else ""
        return f"{fr['name']} ({short}:{fr.get('line', '')})"

    lines = [f"samples weight {total:.0f}", "", "self time:"]
    lines += [f"  {100 * w / total:5.1f}%  {name(i)}" for i, w in self_t.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * w / total:5.1f}%  {name(i)}" for i, w in incl.most_common(top)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25))
