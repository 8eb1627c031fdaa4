"""The serving snapshot's queries, one module per area, as mixins of ``SnapshotReader``.

Each class here holds the SQL of one area and reads only through the plumbing a reader
provides (``SnapshotAccess``), so ``reader.py`` keeps connections, snapshot resolution and
errors, and a new query goes into the module of its area. Callers use the reader's methods.
"""
