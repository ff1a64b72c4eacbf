"""The DRBD 9 driver.

- `render` / `install`: the resource file for a `driver: drbd` volume, and putting it on
  a node (checked by the node's drbdadm);
- `ops` (drbdadm calls and their benign/error rules), `policy` (pure decisions),
  `driver` (`DrbdReplicator`, the `Replicator` seam), `epoch_store` (quorum epochs);
- `status_json`, `events2`, `proc_drbd` (DRBD's three status formats) -> `state`
  (DRBD's words -> the shared `ReplicationStatus`), `status_sources` (read one);
- `fence_peer`: DRBD's fence-peer handler that asks the quorum witness.
"""
