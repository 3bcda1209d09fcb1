"""Settings files as operators write them: YAML numbers where amounts are meant, and every documented example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tollway.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _load(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "tollway.yaml"
    path.write_text(text)
    return load_settings(config=path)


def test_yaml_numbers_are_accepted_where_amounts_are_meant(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        "checkout_min_usd: 5\ncard_fee_min_usd: 0.80\noffline_prompt_price: 0.000001\n"
        "providers:\n  - {name: up, base_url: 'http://127.0.0.1:9/v1'}\n"
        "models:\n  - id: acme/chat\n    endpoints:\n      - provider: up\n        upstream_model: chat\n"
        "        pricing: {prompt: 0.0000000375, completion: 2, input_cache_read: 0.00000001}\n",
    )
    assert (settings.checkout_min_usd, settings.card_fee_min_usd, settings.offline_prompt_price) == (
        "5",
        "0.8",
        "0.000001",
    )
    pricing = settings.models[0].endpoints[0].pricing
    assert (pricing.prompt, pricing.completion, pricing.input_cache_read) == ("0.0000000375", "2", "0.00000001")


def _yaml_blocks() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        for number, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", document.read_text(), re.S)):
            found.append((f"{document.name}#{number}", block))
    return found


@pytest.mark.parametrize(("where", "block"), _yaml_blocks(), ids=[where for where, _ in _yaml_blocks()])
def test_every_documented_settings_file_loads_as_written(where: str, block: str, tmp_path: Path) -> None:
    if "# not a settings file" in block:
        pytest.skip("a compose file or another tool's YAML")
    _load(tmp_path, block)
