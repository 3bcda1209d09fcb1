"""`tollway ask --key K "question"` and `tollway ask --account ID "question"`: the assistant, from the database.

The answer is the grounded one POST /api/v1/assistant gives (model mode runs in the server only). Like
`whoami`, limit usage is live only with TOLLWAY_REDIS_URL; without it the answer says the limits it cannot see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollway.auth.keys import hash_key
from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, fail, run_admin
from tollway.errors import AuthenticationFailed, InvalidRequest, NotFound

if TYPE_CHECKING:
    from tollway.assistant.service import Asker
    from tollway.settings import Settings

# The assistant and what it reads are imported where `ask` runs: `tollway --help` loads this module too.


def _payment_methods(settings: Settings) -> tuple[str, ...]:
    methods = []
    if settings.crypto_api_key and settings.crypto_webhook_secret:
        methods.append("crypto")
    if settings.stripe_secret_key and settings.stripe_webhook_secret:
        methods.append("stripe")
    return tuple(methods)


async def _asker(context: AdminContext, key: str | None, account_id: str | None) -> Asker:
    from tollway.assistant.service import Asker

    if key is not None:
        record = await context.accounts.store.key_by_hash(hash_key(key.strip()))
        if record is None or record.deleted_at_us is not None:
            raise NotFound("No such key: it is unknown or deleted; check that it was copied whole")
        if record.disabled:
            raise AuthenticationFailed(
                "This API key is disabled, so its requests are refused; enable it or use another key."
            )
        return Asker(record.account_id, record)
    assert account_id is not None
    await context.accounts.require_account(account_id)
    return Asker(account_id)


async def ask_answer(context: AdminContext, question: str, key: str | None, account_id: str | None) -> dict[str, Any]:
    from tollway.assistant.docs import DocIndex, default_doc_paths
    from tollway.assistant.service import AccountSources, AssistantService, Turn
    from tollway.cli.explain import balance_service
    from tollway.payments.auto_recharge import AutoRechargeStore
    from tollway.payments.store import PaymentStore

    settings = context.settings
    if not question.strip():
        raise InvalidRequest('Ask a question, e.g. tollway ask --key sk-... "do I have a balance?"')
    if len(question) > settings.assistant_max_message_chars:
        raise InvalidRequest(f"The question is longer than {settings.assistant_max_message_chars} characters")
    asker = await _asker(context, key, account_id)
    engine = context.accounts.store.engine
    balance, limiter, catalog = await balance_service(context)
    paths, root = default_doc_paths(settings.assistant_docs_dir)
    sources = AccountSources(
        balance=balance,
        accounts=context.accounts.store,
        payments=PaymentStore(engine),
        auto_recharge=AutoRechargeStore(engine),
        catalog=catalog,
        generation=context.ledger.store.generation,
        key_figures=context.ledger.key_figures,
    )
    service = AssistantService(sources, settings, DocIndex.from_paths(paths, root), None, _payment_methods(settings))
    try:
        answer = await service.answer(asker, [Turn("user", question)])
    finally:
        await limiter.backend.close()
    return answer.as_dict()


def ask(
    question: Annotated[str, typer.Argument(help='The question, e.g. "do I have a balance?"')],
    key: Annotated[str | None, typer.Option("--key", help="Ask as this API key (sk-tw-...).")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Ask about this account (operators).")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the support assistant about a key's or an account's credits and limits (read-only)."""
    if (key is None) == (account is None):
        fail("give exactly one of --key and --account", as_json, code=2)

    async def action(context: AdminContext) -> dict[str, Any]:
        return await ask_answer(context, question, key, account)

    data = run_admin(database_url, as_json, action)
    sources = "".join(f"\n  - {s['title']}: {s['path']}" for s in data["sources"])
    emit(data, as_json, data["answer"].split("\n\nSee: ")[0] + ("\nsources:" + sources if sources else ""))
