"""Object storage: the layer blobs and the cold tier are built on (issue 14).

``open_object_store("file:.clawstate/objects", base_dir)`` or
``open_object_store("s3://bucket?endpoint=…&region=…")`` returns an
:class:`ObjectStore`; see ``docs/objects.md``.
"""

from __future__ import annotations

from .base import ObjectInfo, ObjectNotFound, ObjectPage, ObjectStore
from .filestore import FileObjectStore
from .s3 import S3ObjectStore
from .url import open_object_store, redact

__all__ = [
    "FileObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectPage",
    "ObjectStore",
    "S3ObjectStore",
    "open_object_store",
    "redact",
]
