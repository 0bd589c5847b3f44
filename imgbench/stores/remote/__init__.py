"""Each format's reads from object storage (issue 24): one module per format, one class each,
behind :class:`imgbench.stores.remote.base.RemoteStore`; registered beside the format's local
classes in :data:`imgbench.stores.FORMATS` (``s3="module:Class"``, relative to this package)."""
