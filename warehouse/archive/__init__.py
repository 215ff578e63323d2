"""The archive: Kafka topics as Hive-partitioned Parquet, exactly once, with an offset ledger.

Exactly once because a batch is archived when, and only when, its ledger entry exists:
a run reads from the ledger's next offset, writes a batch's files (atomically) before its
entry, and first deletes the files no entry references (see :mod:`warehouse.archive.run`
for the whole design).

* :mod:`~warehouse.archive.layout`: dataset names, Hive paths, file names (pure);
* :mod:`~warehouse.archive.decode`: alert and window-stats records → typed rows;
* :mod:`~warehouse.archive.batch`: records of one batch → Arrow tables, one per file;
* :mod:`~warehouse.archive.parquet`: atomic Parquet writes, removal of unrecorded files;
* :mod:`~warehouse.archive.ledger`: the offset ledger;
* :mod:`~warehouse.archive.run`: the run over a partition or a topic;
* :mod:`~warehouse.archive.summary`: status against Kafka and the ledger's totals;
* :mod:`~warehouse.archive.compaction`, :mod:`~warehouse.archive.quarantine`: afterwards.
"""
