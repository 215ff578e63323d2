"""The page around the report: inline CSS and the HTML skeleton (``string.Template``).

Kept as Python text rather than a data file so the package needs no extra package-data.
The page must stay self-contained: no script, no link, no external font or image.
"""

from __future__ import annotations

from string import Template

CSS = """
:root { color-scheme: light; }
body { font-family: Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1040px;
       padding: 16px 24px 48px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; }
.notice { border: 2px solid #c0392b; background: #fdecea; padding: 10px 14px;
          border-radius: 4px; margin: 16px 0; }
.notice.ok { border-color: #27ae60; background: #eafaf1; }
.notice h2 { margin: 0 0 6px; border: none; font-size: 1.1em; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 0; padding: 0; }
.card { border: 1px solid #ddd; border-radius: 4px; padding: 8px 12px; min-width: 150px; }
.card dt { font-size: 0.8em; color: #666; text-transform: uppercase; }
.card dd { margin: 2px 0 0; font-size: 1.1em; font-weight: bold; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; margin: 8px 0; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 4px 8px; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.low td { background: #fdf2e9; }
.status-passed { color: #1e8449; } .status-warnings { color: #b9770e; }
.status-failed { color: #c0392b; } .status-not-validated { color: #666; }
figure { margin: 8px 0 16px; } figcaption { color: #555; font-size: 0.9em; }
svg { max-width: 100%; height: auto; }
.empty { color: #666; font-style: italic; }
"""

PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
$body
</body>
</html>
"""
)


def page(title: str, body: str) -> str:
    """A complete HTML document (``title`` must already be escaped)."""
    return PAGE.substitute(title=title, css=CSS, body=body)
