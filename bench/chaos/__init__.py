"""`make chaos`: fault scenarios run for real on a 3-node KRaft cluster.

The simulator, the stream and the archiver run while brokers, stream instances and
archiver runs are killed, frozen and restarted, or while topics refuse the stream's writes. ``python -m bench.chaos`` (``make chaos``)
runs every scenario and prints one table row each; ``tests/bench/test_chaos.py`` runs
the smaller broker-kill scenario. Each scenario:

1. starts a fresh 3-node :class:`LocalCluster` in a temporary directory and creates the
   topics (replication 3, ``min.insync.replicas`` 2);
2. produces simulated readings at ``rate`` per second with ``acks=all`` and idempotence,
   remembering every acknowledged reading's (sensor_id, ts); event time runs faster than
   the wall clock (``event_speed``) so that a heat wave spans several alert windows;
3. runs the stream (``climatewatch stream`` subprocesses, restarted if one dies on its
   own) and the archiver (``climatewatch archive run`` subprocesses, one after the other)
   while the scenario's fault happens;
4. once production ends: waits for the in-sync replicas to be 3 again, drains the stream
   (``--until-caught-up``), archives until the ledger reaches every partition's end, and
   counts with DuckDB what the archive holds: lost = acknowledged but not archived,
   duplicated = archived more than once (by sensor_id and ts); alerts seen = heat alerts
   for the heat-wave region on the alerts topic.

Every wait has a timeout; clusters and subprocesses are stopped in ``finally`` blocks.

Modules, in the order a scenario uses them:

- ``harness``: :class:`ChaosOptions` and the :class:`Harness` of one scenario (the
  cluster, its brokers' kill and restart, the components below, the final count);
- ``processes``: starting ``climatewatch`` subprocesses that die with the run, and
  stopping them;
- ``producer``: the simulator producing acknowledged readings;
- ``stream``: the stream instances (start, supervise, partition assignment, drain) and
  the heat alerts they publish;
- ``archiver``: archiver runs, one at a time, and the loop that repeats them;
- ``scenarios``: the six faults and :func:`run_scenario`;
- ``table``: :class:`ScenarioResult`, counting lost and duplicated readings, the table;
- ``__main__``: the command line.
"""
