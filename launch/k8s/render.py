"""Fills in the ${...} placeholders of a manifest in this folder and prints it, for `kubectl apply -f -`.

    python launch/k8s/render.py launch/k8s/gpu-job.yaml NAME=beans HOSTS=4 ... | kubectl apply -f -

Every placeholder of the template must be given (the template's header lists them), and nothing else:
a missing or unknown name is an error that names it.
"""
from __future__ import annotations

import string
import sys


def render(template: str, values: dict[str, str]) -> str:
    """`template` with every ${NAME} replaced by values[NAME]; ValueError names what is missing or unknown."""
    wanted = set(string.Template(template).get_identifiers())
    missing, unknown = sorted(wanted - values.keys()), sorted(values.keys() - wanted)
    if missing or unknown:
        raise ValueError(f"placeholders missing: {', '.join(missing) or 'none'}; "
                         f"unknown: {', '.join(unknown) or 'none'} (the template wants {', '.join(sorted(wanted))})")
    return string.Template(template).substitute(values)


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv[1:]):
        print(f"usage: {sys.argv[0]} TEMPLATE.yaml NAME=VALUE...", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        template = f.read()
    try:
        sys.stdout.write(render(template, dict(a.split("=", 1) for a in argv[1:])))
    except ValueError as e:
        print(f"{argv[0]}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
