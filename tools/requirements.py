"""Print the requirements of mri-curate (base + chosen extras) from pyproject.toml, one a line.

The Makefile installs these, then the package itself with ``--no-deps``, so that a
requirement installed beforehand by hand (``--no-deps``) keeps its own dependencies out:
``dynamic-network-architectures`` declares ``timm``, whose ``torchvision`` has no CPU wheel
here and would replace the local CPU torch with a CUDA one.  pyproject.toml stays the one
list of dependencies; a user's ``pip install 'mri-curate[pretrain]'`` gets all of them.

Usage: ``python tools/requirements.py EXTRA ... [--without NAME ...]``
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def distribution_name(requirement: str) -> str:
    """The normalised distribution name of a PEP 508 requirement string.

    >>> distribution_name("Dynamic_Network.Architectures>=0.4 ; python_version>'3'")
    'dynamic-network-architectures'
    """
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if name is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", name.group(1)).lower()


def requirements(extras: list[str], without: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """Base dependencies plus those of ``extras``, minus the distributions named in ``without``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise SystemExit(f"unknown extra(s): {', '.join(unknown)}; pyproject has {sorted(optional)}")
    skip = {distribution_name(n) for n in without}
    out: list[str] = []
    for req in [*project["dependencies"], *(r for e in extras for r in optional[e])]:
        if distribution_name(req) not in skip and req not in out:
            out.append(req)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("extras", nargs="*")
    ap.add_argument("--without", nargs="*", default=[], metavar="NAME")
    args = ap.parse_args(argv)
    print("\n".join(requirements(args.extras, args.without)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
