"""LDAP and Active Directory sources (ldap3): full snapshots by paged search, deltas by syncrepl, USN or timestamp.

``Connector(name, settings).read(None)`` returns a complete :class:`~connectors.interface.Snapshot` of the users
and groups in scope; ``read(cursor)`` returns a :class:`~connectors.interface.Delta` since that cursor, or a full
snapshot when the cursor can no longer be trusted (a syncrepl cookie outside the session log, another domain
controller, a DC restored from backup, changed settings). Flavour quirks live in ``connectors/ldap/vendor``.
"""

from __future__ import annotations

import logging

from connectors.interface import ReadResult, Snapshot, read_secret
from connectors.ldap import cursor as cursors
from connectors.ldap import incremental, leavers, syncrepl
from connectors.ldap.collector import collector_paused
from connectors.ldap.reader import DirectoryReader
from connectors.ldap.session import Session
from connectors.ldap.settings import Settings
from connectors.ldap.vendor import Flavor, detect, ds389, flavor_named

__all__ = ["Connector", "Settings"]

log = logging.getLogger(__name__)


class Connector:
    """Reads one LDAP source; holds no connection between reads."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings

    def read(self, cursor: str | None) -> ReadResult:
        password = read_secret(self.settings, "bind_password", self.name)
        with Session(self.name, self.settings, password) as session:
            flavor = self.flavor(session)
            reader = DirectoryReader(session, flavor, self.settings)
            visibility = leavers.probe(reader) if flavor.name == "ad" else None
            mode = self.mode(flavor, session, visibility)
            notes = visibility.notes(mode, self.settings.leaver_check_every) if visibility else []
            if visibility is not None:
                log.info("ldap account can see: %s", "; ".join(notes), extra={"source": self.name})
            fingerprint = cursors.fingerprint(self.settings, flavor.name)
            position = cursors.decode(cursor, mode, fingerprint) if mode != "off" else None
            if position is not None:
                changes = incremental.read_changes(reader, mode, position, visibility)
                if changes is not None:
                    delta, following = changes
                    delta.cursor = cursors.encode(mode, fingerprint, following)
                    delta.notes = notes
                    return delta
                reader.problems.clear()
            result = self.snapshot(reader, mode, fingerprint)
            result.notes = notes
            return result

    def snapshot(self, reader: DirectoryReader, mode: str, fingerprint: str) -> Snapshot:
        start = incremental.start_position(reader, mode) if mode != "off" else None
        with collector_paused():
            snapshot = reader.snapshot(cursors.encode(mode, fingerprint, start) if start is not None else None)
        if not snapshot.complete:
            # An incomplete read is read in full again next time, so its problems keep showing until fixed.
            snapshot.cursor = None
        log.info(
            "ldap full read", extra={"source": self.name, "users": len(snapshot.users), "groups": len(snapshot.groups)}
        )
        return snapshot

    def flavor(self, session: Session) -> Flavor:
        name = self.settings.flavor
        if name == "auto":
            name = detect(session.root_dse, self.settings.users_base)
        return flavor_named(name)

    def mode(self, flavor: Flavor, session: Session, visibility: leavers.Visibility | None = None) -> str:
        """The incremental mode: as configured, or the flavour's own when the server offers it (``auto``; on AD,
        DirSync when the account holds "Replicating Directory Changes", else USN)."""
        wanted = self.settings.incremental
        if wanted == "dirsync" and (visibility is None or not visibility.dirsync):
            raise session.fail(
                f'incremental = "dirsync" but {self.settings.bind_dn or "the anonymous bind"} may not use DirSync '
                'on this server; grant it "Replicating Directory Changes" (README) or set incremental = "auto"'
            )
        if wanted != "auto":
            return wanted
        if visibility is not None and visibility.dirsync:
            return "dirsync"
        controls = {str(oid) for oid in session.root_dse.get("supportedControl", [])}
        if flavor.incremental == "syncrepl" and syncrepl.SYNC_REQUEST_OID not in controls:
            return "timestamp"
        if flavor.incremental == "changelog" and ds389.changelog_base(session.root_dse) is None:
            return "timestamp"  # 389-DS without the Retro Changelog Plugin
        return flavor.incremental
