"""HTML rendering: one self-contained page (inline CSS, images as data URIs, no scripts, no fetches).

Small builders that return escaped HTML strings; `page` puts the sections together with a table of
contents. Every piece of text goes through `esc`; only the builders produce tags.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Iterable, Sequence

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328;
       max-width: 1100px; margin: 2em auto; padding: 0 1.2em; background: #fff; }
h1 { font-size: 1.7em; border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.35em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
nav { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .6em 1.2em; }
nav ul { margin: .2em 0; padding-left: 1.2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f6f8fa; }
td.text, th.text { text-align: left; }
caption { caption-side: bottom; text-align: left; color: #57606a; font-size: 12px; padding-top: .3em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 13px; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 6px; padding: .7em; overflow-x: auto;
      font-size: 12.5px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.holds { color: #1a7f37; font-weight: 600; }
.fails { color: #cf222e; font-weight: 600; }
.untested { color: #6e7781; font-weight: 600; }
.inconclusive { color: #9a6700; font-weight: 600; }
.note { color: #57606a; font-size: 13px; }
ul.findings li { margin: .25em 0; }
"""

VERDICT_CLASS = {"holds": "holds", "does not hold": "fails", "not tested by this data": "untested",
                 "inconclusive (too noisy)": "inconclusive", "inconclusive": "inconclusive"}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


@dataclass
class Section:
    anchor: str
    title: str
    body: list[str] = field(default_factory=list)
    children: list["Section"] = field(default_factory=list)

    def render(self, level: int = 2) -> str:
        parts = [f'<section id="{esc(self.anchor)}"><h{level}>{esc(self.title)}</h{level}>', *self.body]
        parts += [c.render(level + 1) for c in self.children]
        return "\n".join(parts) + "</section>"


def paragraph(text: str, cls: str | None = None) -> str:
    return f"<p{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>{esc(text)}</p>"


def bullets(items: Iterable[str], cls: str = "findings") -> str:
    return f'<ul class="{cls}">' + "".join(f"<li>{esc(x)}</li>" for x in items) + "</ul>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "",
          text_columns: Sequence[int] = (0,), cell_classes: dict[tuple[int, int], str] | None = None) -> str:
    """A table; columns in `text_columns` are left-aligned; cell_classes[(row, col)] adds a class."""
    cell_classes = cell_classes or {}

    def cls(i: int, j: int | None = None) -> str:
        names = (["text"] if i in text_columns else []) + ([cell_classes[(j, i)]] if (j, i) in cell_classes else [])
        return f' class="{" ".join(names)}"' if names else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i, j)}>{esc(v)}</td>" for i, v in enumerate(row)) + "</tr>"
                   for j, row in enumerate(rows))
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(uri: str, caption: str, alt: str) -> str:
    if not uri.startswith("data:image/png;base64,"):
        raise ValueError("figures must be embedded PNG data URIs")
    return (f'<figure><img src="{uri}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>')


def code(text: str) -> str:
    return f"<pre><code>{esc(text)}</code></pre>"


def _toc(sections: Sequence[Section]) -> str:
    def items(secs: Sequence[Section]) -> str:
        return "<ul>" + "".join(
            f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a>{items(s.children) if s.children else ""}</li>'
            for s in secs) + "</ul>"

    return f"<nav><strong>Contents</strong>{items(sections)}</nav>"


def page(title: str, intro: Sequence[str], sections: Sequence[Section]) -> str:
    body = "\n".join(s.render() for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{''.join(intro)}{_toc(sections)}\n{body}\n</body></html>\n")
