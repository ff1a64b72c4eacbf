"""The actions a plan step can take (each maps to one runbook step type)."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    STOP_SERVICE = "stop-service"
    SHUTDOWN_VM = "shutdown-vm"
    WAIT_IN_SYNC = "wait-in-sync"
    DEMOTE = "demote"
    PROMOTE = "promote"
    ALLOW_TWO_PRIMARIES = "allow-two-primaries"
    MIGRATE_LIVE = "migrate-live"
    FORBID_TWO_PRIMARIES = "forbid-two-primaries"
    RELOCATE_SERVICE = "relocate-service"
    DEFINE_VM = "define-vm"
    START_VM = "start-vm"
    START_SERVICE = "start-service"
    VERIFY_MONITOR = "verify-monitor"
    CONFIRM_FENCED = "confirm-fenced"
    WAIT_TAKEOVER = "wait-takeover"
