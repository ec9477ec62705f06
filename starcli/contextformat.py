"""What ``starcli context`` prints: the documents exactly as the model reads them, after every
filter, in one of three layouts.

- ``text``: byte for byte the documents part of the model's context (``ingest.render_documents``:
  a ``===== path =====`` header before each document; PDFs with ``[page N]`` markers). The model's
  context is the chat template's head (system prompt, start of the user turn) followed by this.
- ``xml``: files-to-prompt's ``--cxml`` layout, the one Anthropic recommends for long documents::

      <documents>
      <document index="1">
      <source>path</source>
      <document_content>
      ...
      </document_content>
      </document>
      </documents>

  Contents are not escaped (as in files-to-prompt): the model reads text, not a parsed tree.
- ``markdown``: the path, then the text in a fence (longer than any backtick run inside it),
  labelled with the file's extension, as files-to-prompt's ``--markdown`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from starcli.documents import Document

_BACKTICKS = re.compile(r"`{3,}")


def format_context(documents: Sequence[Document], layout: str) -> Iterator[str]:
    """The context in ``layout`` (one of ``FORMATS``), piece by piece (one document at a time, so
    a large context reaches a pipe without being held twice)."""
    if layout == "text":
        from starcli.ingest import render_documents

        for index, doc in enumerate(documents):
            yield ("\n" if index else "") + render_documents([doc])
    elif layout == "xml":
        yield "<documents>\n"
        for index, doc in enumerate(documents, start=1):
            yield (
                f'<document index="{index}">\n<source>{doc.path}</source>\n'
                f"<document_content>\n{_ended(doc.text)}</document_content>\n</document>\n"
            )
        yield "</documents>\n"
    elif layout == "markdown":
        for index, doc in enumerate(documents):
            longest = max((len(run) for run in _BACKTICKS.findall(doc.text)), default=2)
            fence = "`" * (longest + 1)
            yield (
                "\n" if index else ""
            ) + f"{doc.path}\n{fence}{_language(doc)}\n{_ended(doc.text)}{fence}\n"
    else:
        raise ValueError(f"unknown context format {layout!r}")


def _ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def _language(doc: Document) -> str:
    """The fence's label: the file's extension (``py``, ``md``), nothing for stdin or none."""
    name = doc.path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name.strip(".") and doc.kind != "stdin" else ""
