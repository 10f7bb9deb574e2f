"""Demo operations for `jobwire worker --demo` and `make run`: sleep, wordcount, fail; and one
per seed dialect (docs/seed-apis.md), so each wire profile's clients see jobs finish: extract
(Pulse, DocuRift), parse (Knowhere), docx-to-pdf (Syncfusion)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson

from jobwire.sdk.worker import Handler, JobContext, JobFailed, Result


async def sleep(job: JobContext) -> dict[str, Any]:
    """Sleeps ``parameters.seconds`` (default 1, at most 60) in 4 steps, reporting progress."""
    seconds = float(job.parameters.get("seconds", 1))
    if not 0 <= seconds <= 60:
        raise JobFailed("invalid_parameters", "seconds must be between 0 and 60", {"seconds": seconds})
    steps = 4
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        await job.progress(step, steps, stage="sleeping")
    return {"slept_s": seconds}


async def wordcount(job: JobContext) -> Result:
    """Counts words of ``parameters.text``; the result carries a checksum of the text."""
    text = job.parameters.get("text")
    if not isinstance(text, str):
        raise JobFailed("invalid_parameters", "parameters.text must be a string")
    words = text.split()
    counts: dict[str, int] = {}
    for word in words:
        counts[word.lower()] = counts.get(word.lower(), 0) + 1
    digest = hashlib.sha256(orjson.dumps(text)).hexdigest()
    return Result({"words": len(words), "distinct": len(counts)}, result_checksum={"algorithm": "sha256", "value": digest})


async def fail(job: JobContext) -> dict[str, Any]:
    """Always fails, to show failure webhooks and error shapes."""
    raise JobFailed("demo_failure", str(job.parameters.get("message", "this operation always fails")),
                    {"operation": "fail"})


async def extract(job: JobContext) -> dict[str, Any]:
    """A stand-in for a document extraction: markdown and a page count for ``parameters.file_url``."""
    await job.progress(1, 2, stage="extracting")
    return {"markdown": "# Document Content\n\nExtracted by the jobwire demo worker.", "page_count": 50,
            "source": job.parameters.get("file_url")}


async def parse(job: JobContext) -> Result:
    """A stand-in for a parsing job: converting, then running over 3 pages, then the chunks as
    a result file (the API hands out a fresh signed URL to it, with its sha256). With an input
    file, the chunks name its size and checksum."""
    await job.progress(0, 3, stage="converting")
    source: dict[str, Any] = {"url": job.parameters.get("source_url")}
    if job.input is not None:
        data = await job.read_input()
        source = {"file_id": job.input["file_id"], "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    for page in range(1, 4):
        await job.progress(page, 3, stage="running")
    chunks = orjson.dumps({"source": source, "chunks": [{"page": page, "text": f"page {page}"} for page in (1, 2, 3)]})
    return await job.store_result(chunks, filename=f"{job.id}.json", content_type="application/json",
                                  result={"chunks": 3})


#: A one-page PDF: what the demo's conversion answers with.
DEMO_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
            b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


async def docx_to_pdf(job: JobContext) -> Result:
    """A stand-in for a conversion: the document as a result file, which the Syncfusion
    profile answers as the document itself."""
    name = str(job.parameters.get("file", "file.docx")).rsplit(".", 1)[0] or "file"
    return await job.store_result(DEMO_PDF, filename=f"{name}.pdf", content_type="application/pdf",
                                  result={"pages": 1})


DEMO_OPERATIONS: dict[str, Handler] = {"sleep": sleep, "wordcount": wordcount, "fail": fail, "extract": extract,
                                       "parse": parse, "docx-to-pdf": docx_to_pdf}
