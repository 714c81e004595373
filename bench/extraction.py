"""`python -m bench.extraction`: precision and recall of résumé field extraction on the corpus.

The corpus (tests/corpus/*.yaml) is made into PDFs, some of them scans, and read back as the
document pipeline reads them (text layer, tesseract). Each extractor then answers for every
document, judged as the pipeline judges it (`extract_document`):

- rules: the embedded extractor;
- rules, unjudged: the same answers before the résumé judgement and per-field confidence;
- OpenAI-compatible and Gemini: `OpenAIExtractor` and `GeminiExtractor` against the local fake
  servers (testkit/llm_servers), over HTTP with structured output. The fake servers'
  "model" is the rules extractor run on the prompt's text, so these rows measure the clients,
  the schemas and the judgement around a model, not a model.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from rich.console import Console

from bench.machine import host, load_average
from bench.report import RESULTS_PATH, Section, Table, write_section
from pipelines.documents.extract import extract_document
from pipelines.documents.extract.gemini import GeminiExtractor
from pipelines.documents.extract.openai import OpenAIExtractor
from pipelines.documents.extract.rules import RulesExtractor
from testkit.corpus import corpus_texts
from testkit.extraction_scores import FIELDS, Scores
from testkit.llm_servers import API_KEY, LLMServers


async def measure() -> tuple[dict[str, Scores], int, int]:
    """Scores by extractor, and the corpus's résumés and other documents."""
    documents = await corpus_texts()
    servers = LLMServers()
    servers.start()
    rules = RulesExtractor()
    llms = {
        "OpenAI-compatible (fake)": OpenAIExtractor(
            api_key=API_KEY, base_url=servers.openai_base_url, model="fake-rules"
        ),
        "Gemini (fake)": GeminiExtractor(api_key=API_KEY, base_url=servers.gemini_base_url, model="fake-rules"),
    }
    scores = {name: Scores() for name in ("rules", "rules, unjudged", *llms)}
    try:
        for document, text in documents:
            scores["rules"].add(document.expected, (await extract_document(rules, text)).fields)
            scores["rules, unjudged"].add(document.expected, await rules.extract(text))
            for name, llm in llms.items():
                scores[name].add(document.expected, (await extract_document(llm, text)).fields)
    finally:
        for llm in llms.values():
            await llm.aclose()
        servers.stop()
    resumes = sum(document.is_resume for document, _ in documents)
    return scores, resumes, len(documents) - resumes


def ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def table(scores: dict[str, Scores]) -> Table:
    headers = ["Field"] + [f"{name} {measure}" for name in scores for measure in ("P", "R")]
    rows = [
        [field]
        + [
            ratio(getattr(score.fields[field], measure))
            for score in scores.values()
            for measure in ("precision", "recall")
        ]
        for field in FIELDS
    ]
    rows.append(
        ["non-résumés left empty"]
        + [cell for score in scores.values() for cell in (f"{score.empty_on_others}/{score.others}", "")]
    )
    return Table("Résumé fields: precision (P) and recall (R) per field", headers, rows)


async def main(args: argparse.Namespace, command: str) -> None:
    console = Console()
    started = time.monotonic()
    scores, resumes, others = await measure()
    machine = {**host(), "Load average at end (1/5/15 min)": load_average()}
    notes = [
        f"Corpus: {resumes} résumés and {others} other documents (tests/corpus/*.yaml), "
        f"{sum(1 for _ in Path('tests/corpus').glob('*.yaml'))} files; read back and measured in {time.monotonic() - started:.0f} s "
        "(pdfium's text layer; tesseract for the scans).",
        "A list field counts each item; a wrong value counts against precision and recall. Phones compare by "
        "digits, links without scheme or www., summaries at 85% similarity.",
        "Most of the corpus was written alongside the extractor's fixes (later.yaml after them; its first run is "
        "in docs/extraction.md): these are in-sample numbers, an upper bound for documents unlike it.",
        "The fake OpenAI-compatible and Gemini servers answer with the rules extractor's fields (run on the "
        "prompt's text): their rows measure the HTTP clients, the structured-output schemas and the judgement, "
        "not a language model.",
    ]
    section = Section(
        "extraction",
        "Résumé field extraction",
        command,
        time.strftime("%Y-%m-%d %H:%M %Z"),
        machine,
        [table(scores)],
        notes,
    )
    section.print(console)
    write_section(section, args.results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.extraction")
    parser.add_argument("--quick", action="store_true", help="accepted for `python -m bench`; the corpus is small")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="markdown file to update")
    asyncio.run(main(parser.parse_args(), "python -m bench.extraction " + " ".join(sys.argv[1:])))
