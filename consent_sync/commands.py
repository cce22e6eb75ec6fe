"""Consent sync's commands, collected from its modules (each adds its own)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zeroparty.cli_support import Commands


def add_commands(commands: Commands) -> None:
    """This package's part of ``zeroparty --help`` (named in its wiring)."""
    from consent_sync import audience_commands, suppression_commands

    audience_commands.add_commands(commands)
    suppression_commands.add_commands(commands)
    import consent_sync.subscription_commands

    consent_sync.subscription_commands.add_commands(commands)
