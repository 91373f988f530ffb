#!/usr/bin/env python3
"""Prints packaging/prometheus/sonde.rules.yml wrapped in a Kubernetes PrometheusRule.

The rule file is the single source of sonde's alerts; packaging/kubernetes/rules/
prometheusrule.yaml is this script's output, and scripts/packaging-test.sh fails when the
two drift apart. Regenerate with:
    python3 scripts/prometheusrule.py > packaging/kubernetes/rules/prometheusrule.yaml
"""

import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "packaging" / "prometheus" / "sonde.rules.yml"


class Dumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL, descriptions) as literal blocks."""


def _string(dumper, text):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


Dumper.add_representer(str, _string)


def main():
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "sonde"},
        "spec": {"groups": rules["groups"]},
    }
    sys.stdout.write(
        "# Generated from packaging/prometheus/sonde.rules.yml by scripts/prometheusrule.py;\n"
        "# edit the rule file and regenerate rather than editing this one.\n"
    )
    sys.stdout.write(yaml.dump(resource, Dumper=Dumper, sort_keys=False, width=100, allow_unicode=True))


if __name__ == "__main__":
    main()
