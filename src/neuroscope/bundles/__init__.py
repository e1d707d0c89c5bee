"""Bundles: ``saes/`` + ``lora/`` + ``manifest.json``, exported from a session and imported (verified, then
attached all-or-nothing) in another; ``export_merged`` writes a merged model folder."""

from __future__ import annotations

from neuroscope.bundles.export import BundleContents, export_bundle, from_folders
from neuroscope.bundles.manifest import FORMAT, MANIFEST, VERSION
from neuroscope.bundles.merge import export_merged
from neuroscope.bundles.verify import (
    AttachedBundle,
    VerifiedBundle,
    attach_bundle,
    import_bundle,
    verify_bundle,
)

__all__ = [
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "AttachedBundle",
    "BundleContents",
    "VerifiedBundle",
    "attach_bundle",
    "export_bundle",
    "export_merged",
    "from_folders",
    "import_bundle",
    "verify_bundle",
]
