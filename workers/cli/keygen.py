"""``leasegate keygen --out DIR``: an Ed25519 key pair, so that no worker host holds anything
that can sign (docs/security.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="the directory the two files go to (created if missing)")


def main(args: argparse.Namespace) -> int:
    """Exit 0 with the paths and key id, 2 naming the problem."""
    from ..keyfiles import write_keypair

    out: Path = args.out
    try:
        signing, verify, kid = write_keypair(out)
    except OSError as exc:
        print(f"leasegate keygen: --out {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"key id {kid}\n{signing}  (private: LEASEGATE_SIGNING_KEY of runtimes and the "
          f"gateway)\n{verify}  (public: LEASEGATE_VERIFY_KEYS of workers)")
    return 0
