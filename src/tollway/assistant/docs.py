"""The documentation the assistant cites: README sections and docs/*.md split into passages, found by question.

Retrieval is deterministic: BM25 over words (lower-cased, a plural "s" dropped) plus the cosine of hashed
bag-of-words vectors, so a question and a passage that share words score together without any model. When an
embedding model is configured (`assistant_embedding_model`), the cosine of its vectors is added on top.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_HEADING = re.compile(r"^(#{1,4})\s+(.*\S)\s*$")
_WORD = re.compile(r"[a-z0-9][a-z0-9_\-]*")
_MAX_PASSAGE_CHARS = 1500
_STOP = frozenset(
    "a an and are as at be by can do does for from how i if in is it its me my of on or so that the this to was "
    "what when where which who why will with you your".split()
)
_BM25_K1 = 1.2
_BM25_B = 0.75


@dataclass(frozen=True, slots=True)
class Passage:
    title: str
    path: str  # file and anchor, e.g. README.md#balance-explained
    text: str


def words(text: str) -> list[str]:
    found = []
    for word in _WORD.findall(text.lower()):
        if word in _STOP:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


def anchor(title: str) -> str:
    """GitHub's anchor for a heading."""
    slug = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return slug.replace(" ", "-")


def split_markdown(text: str, file_name: str) -> list[Passage]:
    """One passage per section (headings up to ####), long sections cut at paragraph ends."""
    passages: list[Passage] = []
    title, lines = file_name, list[str]()

    def close() -> None:
        body = "\n".join(lines).strip()
        if not body:
            return
        chunk = ""
        for paragraph in body.split("\n\n"):
            if chunk and len(chunk) + len(paragraph) > _MAX_PASSAGE_CHARS:
                passages.append(Passage(title, f"{file_name}#{anchor(title)}", chunk.strip()))
                chunk = ""
            chunk += paragraph + "\n\n"
        if chunk.strip():
            passages.append(Passage(title, f"{file_name}#{anchor(title)}", chunk.strip()[: _MAX_PASSAGE_CHARS * 2]))

    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else _HEADING.match(line)
        if heading:
            close()
            title, lines = heading.group(2), []
        else:
            lines.append(line)
    close()
    return passages


def hashed_vector(tokens: list[str], dimensions: int) -> list[float]:
    """A unit bag-of-words vector: each word adds 1 (signed) at a position its hash picks."""
    vector = [0.0] * dimensions
    for word, count in Counter(tokens).items():
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        sign = 1.0 if digest[4] & 1 else -1.0
        vector[index] += sign * (1 + math.log(count))
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class DocIndex:
    def __init__(self, passages: list[Passage], dimensions: int = 256) -> None:
        self.passages = passages
        self._dimensions = dimensions
        self._tokens = [words(p.title + " " + p.title + " " + p.text) for p in passages]
        self._counts = [Counter(t) for t in self._tokens]
        self._vectors = [hashed_vector(t, dimensions) for t in self._tokens]
        self._average_length = sum(len(t) for t in self._tokens) / max(1, len(self._tokens))
        frequency: Counter[str] = Counter()
        for tokens in self._tokens:
            frequency.update(set(tokens))
        total = len(passages)
        self._idf = {w: math.log(1 + (total - n + 0.5) / (n + 0.5)) for w, n in frequency.items()}
        self.semantic: list[list[float]] | None = None  # the embedding model's passage vectors, once computed

    @classmethod
    def from_paths(cls, paths: list[Path], root: Path | None = None) -> DocIndex:
        passages: list[Passage] = []
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            name = path.name if root is None else path.relative_to(root).as_posix()
            passages += split_markdown(text, name)
        return cls(passages)

    def search(self, query: str, limit: int = 3, query_embedding: list[float] | None = None) -> list[Passage]:
        query_tokens = words(query)
        if not query_tokens or not self.passages:
            return []
        query_vector = hashed_vector(query_tokens, self._dimensions)
        semantic = self.semantic if query_embedding is not None else None
        scored = []
        for index, counts in enumerate(self._counts):
            length = len(self._tokens[index])
            bm25 = 0.0
            for word in set(query_tokens):
                tf = counts.get(word, 0)
                if tf:
                    norm = tf + _BM25_K1 * (1 - _BM25_B + _BM25_B * length / self._average_length)
                    bm25 += self._idf.get(word, 0.0) * tf * (_BM25_K1 + 1) / norm
            cosine = sum(a * b for a, b in zip(query_vector, self._vectors[index], strict=True))
            score = bm25 + 2.0 * max(cosine, 0.0)
            if semantic is not None and query_embedding is not None:
                score += 3.0 * max(cosine_of(query_embedding, semantic[index]), 0.0)
            if score > 0:
                scored.append((score, -index, self.passages[index]))
        scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
        seen: set[str] = set()
        best: list[Passage] = []
        for _score, _index, passage in scored:
            if passage.path in seen:
                continue
            seen.add(passage.path)
            best.append(passage)
            if len(best) == limit:
                break
        return best


def cosine_of(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        return 0.0
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


def default_doc_paths(docs_dir: Path | None) -> tuple[list[Path], Path | None]:
    """README.md and docs/*.md of `docs_dir`, of the source tree this package runs from, or of the wheel's copy."""
    installed = Path(sys.prefix) / "share" / "tollway"  # where the wheel puts them (pyproject's data-files)
    candidates = [docs_dir] if docs_dir is not None else [Path(__file__).resolve().parents[3], installed, Path.cwd()]
    for root in candidates:
        if root is not None and (root / "README.md").is_file():
            return [root / "README.md", *sorted((root / "docs").glob("*.md"))], root
    return [], None
