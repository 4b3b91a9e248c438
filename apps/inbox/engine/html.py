"""HTML bodies to readable text: block elements become line breaks, scripts and styles vanish.

One forward pass over the HTML, so the cost grows with its length only. Neither nesting (hostile
mail nests elements thousands deep) nor malformed markup makes it slower: the standard library's
HTMLParser takes tens of seconds on 100 KB of unclosed tags.
"""

from __future__ import annotations

import html as entities
import re

_BLOCKS = frozenset((
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "table", "ul", "ol", "hr", "section", "article", "header", "footer",
))  # fmt: skip
# Their content is never text a person reads in the message.
_HIDDEN = frozenset(
    ("script", "style", "head", "title", "noscript", "template", "iframe", "object")
)
# A quote nested deeper than this is still marked as quoted, just not one "> " per level.
_MAX_QUOTE_MARKS = 8

# A tag ends at the first ">" outside quoted attribute values. No part of the pattern crosses a
# "<", so a match never scans past the next "<", which keeps the whole pass linear.
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:-]*)((?:[^<>\"']|\"[^\"<]*\"|'[^'<]*')*)(/?)>")
_TAG_OPENING = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:-]*)")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_QUOTE_ONLY = re.compile(r"^(?:> ?)+$")


class _Text:
    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.quote_depth = 0
        self.link: tuple[str, int] | None = None  # the open link: href, where its label starts

    def marks(self) -> str:
        # Quoted lines carry "> " marks, so the reply splitter sees them as history.
        return "> " * min(self.quote_depth, _MAX_QUOTE_MARKS)

    def data(self, text: str) -> None:
        if text:
            text = entities.unescape(text)
            self.pieces.append(
                text.replace("\n", "\n" + self.marks()) if self.quote_depth else text
            )

    def line_break(self) -> None:
        self.pieces.append("\n" + self.marks())

    def start(self, tag: str, attributes: str) -> None:
        if tag == "blockquote":
            self.quote_depth += 1
        if tag in _BLOCKS:
            self.line_break()
        if tag == "a":
            # Links do not nest: a new one closes the one still open, as browsers do.
            self.close_link()
            found = _HREF.search(attributes)
            href = next((g for g in found.groups() if g is not None), "") if found else ""
            self.link = (entities.unescape(href), len(self.pieces))

    def end(self, tag: str) -> None:
        if tag == "a":
            self.close_link()
        if tag in _BLOCKS:
            if tag == "blockquote" and self.quote_depth:
                self.quote_depth -= 1
            self.line_break()

    def close_link(self) -> None:
        if self.link is None:
            return
        href, start = self.link
        self.link = None
        label = " ".join("".join(self.pieces[start:]).split())
        if href.startswith(("http://", "https://")) and label and label != href:
            self.pieces.append(f" ({href})")


def _skip_hidden(html: str, tag: str, position: int) -> int:
    """Where the content of a hidden element ends; unclosed, it runs to the end, as in browsers,
    except the head, which the body ends (mail often leaves the head open)."""
    ends = rf"</{tag}\s*>|<body\b" if tag == "head" else rf"</{tag}\s*>"
    closing = re.compile(ends, re.I).search(html, position)
    if closing is None:
        return len(html)
    return closing.start() if closing.group(0)[1] != "/" else closing.end()


def html_to_text(html: str) -> str:
    text = _Text()
    position, length = 0, len(html)
    while position < length:
        opening = html.find("<", position)
        if opening < 0:
            text.data(html[position:])
            break
        text.data(html[position:opening])
        if html.startswith("<!--", opening):
            closing = html.find("-->", opening + 4)
            position = length if closing < 0 else closing + 3
            continue
        tag = _TAG.match(html, opening)
        if tag is not None:
            position = tag.end()
            closing_tag, name, attributes = tag.group(1) == "/", tag.group(2), tag.group(3)
            self_closing = bool(tag.group(4))
        elif html.startswith(("<!", "<?"), opening) or _TAG_OPENING.match(html, opening):
            # A declaration, or a tag with broken quotes: it runs to the next ">", as browsers
            # read it, and one left open at the end is dropped.
            closing = html.find(">", opening)
            position = length if closing < 0 else closing + 1
            broken = _TAG_OPENING.match(html, opening)
            if broken is None or closing < 0:
                continue
            closing_tag, name, self_closing = broken.group(1) == "/", broken.group(2), False
            attributes = html[broken.end() : closing]
        else:
            text.data("<")  # a "<" that opens nothing: "a < b"
            position = opening + 1
            continue
        name = name.lower()
        if self_closing:
            if name in _BLOCKS:  # <br/>, <hr/>: a break, and nothing opened
                text.line_break()
        elif closing_tag:
            text.end(name)
        elif name in _HIDDEN:
            position = _skip_hidden(html, name, position)
        else:
            text.start(name, attributes)
    text.close_link()
    flat = "".join(text.pieces).replace("\xa0", " ")
    flat = re.sub(r"[ \t]+", " ", flat)
    lines = (line.strip() for line in flat.split("\n"))
    # A block inside a quote leaves a line of bare "> " marks: not a line of the message.
    flat = "\n".join(line for line in lines if not _QUOTE_ONLY.match(line))
    return re.sub(r"\n{3,}", "\n\n", flat).strip()
