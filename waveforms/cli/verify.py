"""`waveforms verify DATASET`: read every shard of a dataset and check it against its manifest.

Training and reports check each shard's size and record count when they open it (cheap); this command also reads every
byte and checks each shard's sha256 and the CRCs of every record, so damage anywhere is found before a long run.
"""

from __future__ import annotations

import argparse
import sys

from waveforms import storage


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset_uri", metavar="DATASET", help="dataset folder or its manifest.json (local, s3://, minio://)"
    )


def run(args: argparse.Namespace) -> int:
    from waveforms import manifest

    manifest_uri = manifest.manifest_uri(args.dataset_uri)
    try:
        totals = manifest.verify(manifest_uri)
    except (manifest.ManifestError, storage.StorageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"ok: {manifest_uri}: {totals['shards']} shards, {totals['records']} records, {totals['bytes']} bytes match "
        "the manifest",
        file=sys.stderr,
    )
    return 0
