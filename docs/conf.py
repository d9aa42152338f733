"""The site's Sphinx settings (`make docs`): the notebooks in nbs/ as pages, the package's API from its docstrings.

The notebooks are read as they are committed, not run: a page shows the figures a notebook keeps. nbdev's directives
are applied on the way in, as nbdev's own site does: `#| hide` and `#| include: false` cells left out, `#| echo: false`
shows only the output, `#| output: false` only the code, a line ending in `#|hide_line` dropped, and every `#| ...`
line taken off the code. A name of the package written as code in the prose links to its entry in the API reference."""
import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
project, author, copyright = 'fer_study', 'fer_study developers', '2026 onwards, fer_study developers'
extensions = ['myst_nb', 'autoapi.extension', 'sphinx.ext.autodoc']
exclude_patterns = ['.ipynb_checkpoints', '**/.ipynb_checkpoints']
nb_execution_mode = 'off'  # the pages show what the notebooks keep
html_theme = 'furo'
html_title = 'fer_study'
html_copy_source = False
default_role = 'py:obj'  # `name` in a docstring links to its entry
autoapi_dirs = [str(ROOT / 'fer_study')]
autoapi_root = 'api'
autoapi_options = ['members', 'undoc-members', 'show-module-summary']
autoapi_add_toctree_entry = False
autoapi_keep_files = False
suppress_warnings = ['myst.header']  # notebooks may go from a title straight to a third-level heading

DIRECTIVE = re.compile(r'^[ \t]*#\|.*\n?', re.M)
LEFT_OUT = re.compile(r'^[ \t]*#\|[ \t]*(hide\b|default_exp\b|include:[ \t]*false\b)', re.M)
HIDE_LINE = re.compile(r'^.*#\|[ \t]*hide_line[ \t]*\n?', re.M)
NO_INPUT = re.compile(r'^[ \t]*#\|[ \t]*echo:[ \t]*false\b', re.M)
NO_OUTPUT = re.compile(r'^[ \t]*#\|[ \t]*output:[ \t]*false\b', re.M)
DEFAULT_EXP = re.compile(r'^[ \t]*#\|[ \t]*default_exp[ \t]+(\S+)', re.M)
FENCE = re.compile(r'(^```.*?^```[ \t]*$)', re.M | re.S)
CODE_NAME = re.compile(r'(?<!`)`([A-Za-z][\w.]*)`(?!`)')


def package_names() -> dict[str, list[str]]:
    "Each public name of the package, bare (`Dashboard.publish`) or in full, -> the full names it may mean."
    index = ast.parse((ROOT / 'fer_study' / '_modidx.py').read_text())
    d = next(ast.literal_eval(n.value) for n in index.body if isinstance(n, ast.Assign))
    names = {}
    for full in (k for module in d['syms'].values() for k in module):
        parts = full.split('.')
        if any(p.startswith('_') for p in parts): continue
        for short in {full, '.'.join(parts[2:])}: names.setdefault(short, []).append(full)
    return names


NAMES = package_names()


def link_names(markdown: str, module: str | None) -> str:
    "`name` -> a link to its API entry, where the package has one name of that spelling (or the page's module has)."
    def link(m):
        full = NAMES.get(m[1], [])
        if module: full = [f for f in full if f.startswith(f'fer_study.{module}.')] or full
        return f'{{py:obj}}`{m[1]} <{full[0]}>`' if len(full) == 1 else m[0]
    parts = FENCE.split(markdown)  # code blocks stay as they are
    return ''.join(p if i % 2 else CODE_NAME.sub(link, p) for i, p in enumerate(parts))


def page_cells(cells: list[dict], module: str | None) -> list[dict]:
    "A notebook's cells as its page shows them."
    out = []
    for cell in cells:
        src = ''.join(cell['source'])
        tags = [t for t in cell['metadata'].get('tags', []) if t != 'remove-cell']  # a report template's introduction
        if cell['cell_type'] == 'code':
            if LEFT_OUT.search(src): continue
            tags += ['remove-input'] * bool(NO_INPUT.search(src)) + ['remove-output'] * bool(NO_OUTPUT.search(src))
            src = DIRECTIVE.sub('', HIDE_LINE.sub('', src)).strip('\n')
            if not src: continue
        elif cell['cell_type'] == 'markdown': src = link_names(src, module)
        out.append({**cell, 'source': src, 'metadata': {**cell['metadata'], 'tags': tags}})
    return out


def markdown_cell(key: str, text: str) -> dict:
    return {'cell_type': 'markdown', 'id': key, 'metadata': {}, 'source': text}


def toctree(caption: str, docs: list[str]) -> dict:
    "The site's table of contents for `docs`, as a cell of the home page."
    head = f'```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n:titlesonly:\n\n'
    return markdown_cell('toc-' + caption.split()[0].lower(), head + '\n'.join(docs) + '\n```')


def nbdev_page(app, docname: str, source: list[str]) -> None:
    "Sphinx's source-read event: a notebook of nbs/ as a page (the home page, index, lists every page)."
    if app.env.doc2path(docname).suffix != '.ipynb': return
    nb = json.loads(source[0])
    code = (''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code')
    exp = next((m[1] for src in code if (m := DEFAULT_EXP.search(src))), None)
    cells = page_cells(nb['cells'], exp)
    title = next((i for i, c in enumerate(cells) if c['cell_type'] == 'markdown' and c['source'][:2] == '# '), None)
    if title is None:  # a warning fails the build, naming the notebook
        from sphinx.util import logging  # here: the tests read this file's other functions without Sphinx
        logging.getLogger(__name__).warning('no markdown cell starts with a "# " title', location=docname)
    if exp:  # under the title
        link = markdown_cell('api-link', f'Exports the module {{py:mod}}`fer_study.{exp}` (its API).')
        cells.insert(0 if title is None else title + 1, link)
    if docname == 'index':
        src = Path(app.srcdir)
        cells += [toctree('Notebooks', sorted(p.stem for p in src.glob('[0-9]*.ipynb'))),
                  toctree('Report templates', sorted(f'reports/{p.stem}' for p in src.glob('reports/*.ipynb'))),
                  toctree('API reference', ['api/fer_study/index'])]
    source[0] = json.dumps({**nb, 'cells': cells})


def rest_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    "Docstrings are written as Markdown: keep reST from reading `|` as a substitution or a lone `*` as emphasis."
    lines[:] = [re.sub(r'(?<![\w`])\*(?![\w*])', r'\*', line.replace('|', r'\|')) for line in lines]


def setup(app):
    app.connect('source-read', nbdev_page)
    app.connect('autodoc-process-docstring', rest_docstring)
