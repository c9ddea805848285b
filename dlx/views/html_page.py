"""The building blocks of dlx's HTML pages (html_report.py): the document with its inline CSS
and Content-Security-Policy, escaping, numbers, tables, key-value lists, status pills, and
figures as PNG data URIs. A page is self-contained: nothing in it is fetched.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from typing import Any, Iterable

from dlx.core import fmt
from dlx.core.errors import DamagedFile

CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dde1e8; --bg:#ffffff; --panel:#f6f7f9;
        --green:#1f7a3d; --green-bg:#e8f5ec; --amber:#8a5a00; --amber-bg:#fff4dc;
        --red:#a61b1b; --red-bg:#fdeaea; --accent:#2857a4; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { font-size: 22px; margin: 0 0 4px; word-break: break-all; }
header .sub { color: var(--muted); margin: 0; }
nav { margin: 14px 0 6px; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
section { margin-top: 28px; }
h2 { font-size: 17px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 8px; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px; font-weight: 600; }
.st-completed { background: var(--green-bg); color: var(--green); }
.st-diverged, .st-failed, .st-crashed, .st-config_error { background: var(--red-bg); color: var(--red); }
.st-interrupted, .st-running { background: var(--amber-bg); color: var(--amber); }
.verdict { border-left: 5px solid var(--amber); background: var(--amber-bg); padding: 10px 14px;
           margin: 0 0 10px; border-radius: 4px; }
.verdict.severe { border-color: var(--red); background: var(--red-bg); }
.verdict.healthy { border-color: var(--green); background: var(--green-bg); }
.verdict.symptom { border-color: #ccc; background: transparent; margin-left: 24px; padding: 4px 14px; }
.verdict .kind { font-weight: 700; text-transform: uppercase; font-size: 12px; letter-spacing: .05em; }
.verdict.severe .kind { color: var(--red); } .verdict.healthy .kind { color: var(--green); }
.verdict .kind { color: var(--amber); }
.verdict p { margin: 4px 0 0; }
.verdict .label { font-weight: 600; }
table { border-collapse: collapse; font-size: 13.5px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--panel); font-weight: 600; }
th.l, td.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.best td { background: var(--green-bg); font-weight: 600; }
td.bar { width: 140px; }
.bar span { display: block; height: 9px; background: #4f86d9; border-radius: 2px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0; font-size: 14px; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; word-break: break-all; }
.metrics { display: flex; flex-wrap: wrap; gap: 12px; }
.metric { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 130px; }
.metric .name { color: var(--muted); font-size: 12px; } .metric .value { font-size: 20px; font-weight: 600; }
.metric .extra { color: var(--muted); font-size: 12px; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px;
      font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; overflow-x: auto; }
figure { margin: 0 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; }
.note { color: var(--muted); font-style: italic; }
.scroll { overflow-x: auto; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


# default-src 'none': no fetch of any kind; only inline styles and data: images may load.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def num(x: Any, digits: int = 3) -> str:
    """The page's numbers read as the terminal's (report.num)."""
    return fmt.num(x, digits)


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def guarded(what: str, build, *args) -> str:
    """One part of a page; a part that a file's odd shape breaks is a note naming the file."""
    from dlx.records.folders import SHAPE_ERRORS

    try:
        return build(*args)
    except SHAPE_ERRORS as e:
        return f'<p class="note">{esc(what)} has an unexpected shape here ({esc(type(e).__name__)}: {esc(e)}); left out</p>'
    except DamagedFile as e:  # a .pt file that is not tensors (folders.read_tensors)
        return f'<p class="note">{esc(e)}; left out</p>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]], nav: dict[str, str] | None = None) -> str:
    """The whole document: sections are (id, heading, inner html); nav: the links on top (id -> label), default all."""
    from dlx.core.version import __version__

    nav = nav if nav is not None else {sid: head for sid, head, _ in sections}
    links = "".join(f'<a href="#{sid}">{esc(label)}</a>' for sid, label in nav.items())
    body = "\n".join(f'<section id="{sid}"><h2>{esc(head)}</h2>\n{inner}\n</section>' for sid, head, inner in sections)
    made = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style></head>\n"
        f'<body><main>\n<header><h1>{esc(title)}</h1><p class="sub">{subtitle}</p></header>\n'
        f"<nav>{links}</nav>\n{body}\n"
        f"<footer>made by dlx {esc(__version__)} on {esc(made)}</footer>\n</main></body></html>\n"
    )


def pill(status: Any) -> str:
    return f'<span class="pill st-{esc(status)}">{esc(status)}</span>'


def kv(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v not in (None, "", [], {}))
    return f'<dl class="kv">{rows}</dl>'


def html_table(
    head: list[str], rows: list[list[str]], left: Iterable[str] = (), classes: list[str] | None = None
) -> str:
    """An HTML table; cells are already-escaped html. Columns named in `left` align left."""
    left = set(left)
    th = "".join(f'<th class="l">{esc(h)}</th>' if h in left else f"<th>{esc(h)}</th>" for h in head)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        tds = "".join(f'<td class="l">{c}</td>' if h in left else f"<td>{c}</td>" for h, c in zip(head, r))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f'<div class="scroll"><table><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
