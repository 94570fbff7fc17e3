"""State: the store of known clusters and their journal (embedded SQLite, or a team's PostgreSQL: pg.py, imported
only when used), the cross-process locks, and each cluster's files beside its record (:class:`ClusterFiles`)."""

from provisioner.state.cluster_files import ClusterFiles
from provisioner.state.interface import StateStore, has_state, open_store, state_location, use_url
from provisioner.state.locks import (
    LockHolder,
    cluster_lock,
    cluster_lock_path,
    endpoint_lock,
    endpoint_lock_path,
    read_holder,
)
from provisioner.state.store import (
    DB_FILENAME,
    SCHEMA_VERSION,
    ClusterRecord,
    DecisionEntry,
    JournalEntry,
    Phase,
    Store,
    check_no_secrets,
    inputs_hash,
    new_deployment_id,
)

__all__ = [
    "DB_FILENAME",
    "SCHEMA_VERSION",
    "ClusterFiles",
    "ClusterRecord",
    "DecisionEntry",
    "JournalEntry",
    "LockHolder",
    "Phase",
    "StateStore",
    "Store",
    "check_no_secrets",
    "cluster_lock",
    "cluster_lock_path",
    "endpoint_lock",
    "endpoint_lock_path",
    "has_state",
    "inputs_hash",
    "new_deployment_id",
    "open_store",
    "read_holder",
    "state_location",
    "use_url",
]
