"""HTML bodies to readable text: block elements become line breaks, scripts and styles vanish."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup

_BLOCKS = (
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "table", "ul", "ol", "hr", "section", "article", "header", "footer",
)  # fmt: skip


def html_to_text(html: str) -> str:
    soup = BeautifulSoup(html, "html.parser")
    for node in soup(["script", "style", "head", "title", "meta", "noscript"]):
        node.decompose()
    for node in soup.find_all("blockquote"):
        # Quoted replies in HTML mail: keep them recognisable as quotes for the splitter.
        text = node.get_text("\n")
        node.replace_with("\n" + "\n".join("> " + line for line in text.splitlines()) + "\n")
    for node in soup.find_all(_BLOCKS):
        node.insert_before("\n")
        node.insert_after("\n")
    for link in soup.find_all("a"):
        href = link.get("href") or ""
        label = link.get_text(" ").strip()
        if href.startswith(("http://", "https://")) and label and label != href:
            link.replace_with(f"{label} ({href})")
    text = soup.get_text()
    text = text.replace("\xa0", " ")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
