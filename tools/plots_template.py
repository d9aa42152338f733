"""Write the page `dvc plots show` fills (.dvc/config: plots.html_template) with Vega, Vega-Lite and Vega-Embed inlined
from node_modules (`npm ci`, versions pinned in package-lock.json), so that the plots draw offline.

DVC's own page loads them from a CDN, and DVC takes a template path that does not exist for the template's text:
`make install` runs this after `npm ci`. Usage: python tools/plots_template.py [--modules DIR] [--out FILE]"""
import argparse
import json
import sys
from pathlib import Path

from fer_study.core import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
SKELETON = Path(__file__).with_suffix('.html')
MARKER = '<!-- vega, vega-lite, vega-embed -->'  # the line of the skeleton the libraries replace, in this order
BUILDS = {'vega': 'build/vega.min.js', 'vega-lite': 'build/vega-lite.min.js', 'vega-embed': 'build/vega-embed.min.js'}
# what DVC replaces in the template's text, and what would end an inline script early: none may be in a library
FORBIDDEN = ('{plot_divs}', '{scripts}', '{refresh_tag}', '</script', '<!--')


class Unusable(Exception): pass


def inline_script(modules: Path, name: str) -> str:
    "The UMD build of the npm package `name` as an inline script, headed by its name and version."
    build = modules / name / BUILDS[name]
    try: code, meta = build.read_text(encoding='utf-8'), json.loads((modules / name / 'package.json').read_text())
    except OSError as e: raise Unusable(f'{build}: cannot read it ({e.strerror}); run `npm ci` first') from None
    except ValueError as e: raise Unusable(f'{modules / name}/package.json: not JSON ({e})') from None
    if found := [s for s in FORBIDDEN if s in code.lower()]:
        raise Unusable(f'{build}: holds {found[0]!r}, which would break the page')
    return f'<script>\n/* {name} {meta["version"]} */\n{code}\n</script>'


def plots_page(modules: Path, skeleton: Path = SKELETON) -> str:
    "The skeleton with the libraries in place of its marker line."
    try: page = skeleton.read_text(encoding='utf-8')
    except OSError as e: raise Unusable(f'{skeleton}: cannot read it ({e.strerror})') from None
    if page.count(MARKER) != 1 or page.count('{plot_divs}') != 1 or '{scripts}' in page:
        raise Unusable(f"{skeleton}: needs the line {MARKER} and {{plot_divs}} once each, and no {{scripts}}")
    return page.replace(MARKER, '\n'.join(inline_script(modules, name) for name in BUILDS))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--modules', type=Path, default=ROOT / 'node_modules', help='where npm ci installed the packages')
    p.add_argument('--out', type=Path, default=ROOT / '.dvc' / 'plots_template.html', help='the page to write')
    args = p.parse_args(argv)
    try:
        page = plots_page(args.modules)
        try: write_text_atomic(args.out, page)
        except OSError as e: raise Unusable(f'{args.out}: cannot write it ({e.strerror or e})') from None
    except Unusable as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
