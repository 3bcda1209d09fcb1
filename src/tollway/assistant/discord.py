"""Discord's HTTP interactions protocol, without the web framework: signatures, commands, replies.

Discord signs each interaction with the application's Ed25519 key over `X-Signature-Timestamp` + the raw
body; an interaction that fails the check is refused before anything reads it.
"""

from __future__ import annotations

from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

PING = 1
APPLICATION_COMMAND = 2
PONG = 1
CHANNEL_MESSAGE = 4
EPHEMERAL = 64
_MAX_CONTENT = 2000

COMMANDS: list[dict[str, Any]] = [
    {"name": "balance", "type": 1, "description": "Your Tollway balance, what you can spend and what limits you"},
    {
        "name": "ask",
        "type": 1,
        "description": "Ask the Tollway support assistant about your credits, payments and limits",
        "options": [
            {"type": 3, "name": "question", "description": "Your question", "required": True, "max_length": 2000}
        ],
    },
    {
        "name": "link",
        "type": 1,
        "description": "Link your Tollway account with the one-time code from the dashboard's Help page",
        "options": [{"type": 3, "name": "code", "description": "The one-time code", "required": True}],
    },
    {"name": "unlink", "type": 1, "description": "Unlink your Tollway account from this Discord account"},
]

NOT_LINKED = (
    "This Discord account is not linked to a Tollway account, so I cannot show any figures. Sign in to the "
    'dashboard, open Help, press "Get a Discord link code" and send `/link code:<the code>` here.'
)


def verify(public_key_hex: str, signature_hex: str, timestamp: str, body: bytes) -> bool:
    """True when Discord's Ed25519 signature over timestamp + body is valid for the application's key."""
    try:
        key = VerifyKey(bytes.fromhex(public_key_hex))
        key.verify(timestamp.encode() + body, bytes.fromhex(signature_hex))
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def reply(content: str) -> dict[str, Any]:
    """An ephemeral message: only the person who used the command sees it."""
    if len(content) > _MAX_CONTENT:
        content = content[: _MAX_CONTENT - 1] + "…"
    return {"type": CHANNEL_MESSAGE, "data": {"content": content, "flags": EPHEMERAL}}


def user_id(interaction: dict[str, Any]) -> str | None:
    """The Discord user who sent the command (in a server: member.user; in a DM: user)."""
    member = interaction.get("member")
    user = member.get("user") if isinstance(member, dict) else interaction.get("user")
    if not isinstance(user, dict):
        return None
    found = user.get("id")
    return found if isinstance(found, str) and found.isdigit() and len(found) <= 32 else None


def option(interaction: dict[str, Any], name: str) -> str | None:
    data = interaction.get("data")
    options = data.get("options") if isinstance(data, dict) else None
    for item in options if isinstance(options, list) else []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get("value"), str):
            return str(item["value"])
    return None


def command_name(interaction: dict[str, Any]) -> str | None:
    data = interaction.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None
