"""The DVC pipeline on a fresh copy of the repository, with a tiny parameter set."""
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import Tab, chromium

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}"}

TINY = {
    'study': {'inits': {'synthetic': 'models/pretrain/synthetic_pretrain.pth', 'imagenet': 'imagenet', 'scratch': 'scratch'},
              'losses': ['dacl'], 'seeds': [0, 1]},
    'pretrain': {'identities': 3, 'images_per_identity': 5, 'epochs': 1, 'batch_size': 8},
    'synth': {'n_train': 84, 'n_test': 28,
              'videos': [{'path': 'data/videos/demo_single.mp4', 'layout': 'single', 'duration': 2}]},
    'model': {'input_size': 32, 'resize': 37},
    'train': {'epochs': 2, 'batch_size': 16},
    'optim': {'lr': 0.001},
    'webcam': {'videos': {'demo_single': 'data/videos/demo_single.mp4'}, 'threshold': 0.003, 'min_gap': 0.0},
}


def run(cmd, cwd, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and r.returncode != 0: raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    "A clone of the repository's committed files plus the working tree's, with tiny params, after `dvc repro`."
    repo = tmp_path_factory.mktemp('clone') / 'fer_study'
    files = run(['git', 'ls-files', '-co', '--exclude-standard'], ROOT).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, repo / f)
    # the page `dvc plots show` fills, with Vega inlined: made by `make install` (npm ci), ignored by git
    template = ROOT / '.dvc' / run(['dvc', 'config', 'plots.html_template'], ROOT).stdout.strip()
    assert template.is_file(), f"{template} not found: `make install` writes it (npm ci, tools/plots_template.py)"
    shutil.copy2(template, repo / '.dvc' / template.name)
    run(['git', 'init', '-q'], repo)
    run(['git', '-c', 'user.name=test', '-c', 'user.email=test@example.invalid', 'commit', '-qm', 'clone', '--allow-empty'], repo)
    params = yaml.safe_load((repo / 'params.yaml').read_text())
    for section, values in TINY.items(): params[section] = {**params[section], **values}
    (repo / 'params.yaml').write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / 'data.dvc').unlink()  # the committed hash is the default data set's; this one is tiny
    run(['fer-study', 'materialize'], repo)
    run(['dvc', 'add', '-q', 'data'], repo)
    repro = run(['dvc', 'repro'], repo)
    return repo, repro


def test_repro_runs_the_whole_study(study):
    repo, _ = study
    comparison = (repo / 'outputs/compare/comparison.md').read_text()
    assert 'this study (synthetic)' in comparison
    for seed in (0, 1):
        skipped = json.loads((repo / f'models/imagenet-dacl/seed{seed}/skipped.json').read_text())
        assert 'ImageNet ResNet-18 weights' in skipped['reason'] and 'Fix:' in skipped['reason']
        assert not (repo / f'models/imagenet-dacl/seed{seed}/best.pt').exists()
        assert json.loads((repo / f'outputs/eval/imagenet-dacl/seed{seed}/about.json').read_text())['skipped'] is True
        for variant in ('scratch-dacl', 'synthetic-dacl'):
            assert (repo / f'models/{variant}/seed{seed}/best.pt').exists()
            metrics = json.loads((repo / f'outputs/eval/{variant}/seed{seed}/metrics.json').read_text())
            about = json.loads((repo / f'outputs/eval/{variant}/seed{seed}/about.json').read_text())
            assert about['dataset'] == 'synthetic' and 0 <= metrics['acc'] <= 1
    summary = json.loads((repo / 'outputs/webcam/demo_single/summary.json').read_text())
    assert 'synthetic' in summary['note']


# the study report with two trained variants: seeds and intervals, learning curves, confusion matrices, recall, predicted shares,
# reliability diagrams, confident mistakes (one figure per variant); the video report: shares, against the truth, timeline,
# participants, contact sheet, reactions
@pytest.mark.parametrize('report, figures', [('outputs/compare', 8), ('outputs/webcam/demo_single', 6)])
def test_stages_write_complete_reports(study, report, figures):
    repo, _ = study
    nb = nbformat.read(repo / report / 'report.ipynb', as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
    assert not [o for o in outputs if o.output_type == 'error']
    assert sum('image/png' in o.get('data', {}) for o in outputs) == figures
    page = (repo / report / 'report.html').read_text()
    assert page.count('src="data:image/png;base64,') == figures and 'Synthetic' in page


def test_after_repro_everything_is_up_to_date(study):
    repo, _ = study
    status = run(['dvc', 'status'], repo).stdout
    assert 'up to date' in status, status
    again = run(['dvc', 'repro'], repo).stdout
    assert 'Running stage' not in again, again


def test_metrics_show_prints_the_comparison_in_short_lines_of_numbers(study):
    repo, _ = study
    out = run(['dvc', 'metrics', 'show'], repo).stdout
    assert 'outputs/eval/scratch-dacl/seed1/metrics.json' in out and 'aucroc' in out
    assert 'outputs/metrics/synthetic-dacl_vs_scratch-dacl.json' in out and 'diff' in out, out
    assert 'outputs/webcam/demo_single.metrics.json' in out and 'found' in out and 'agree' in out, out  # vs its truth
    assert max(map(len, out.splitlines())) <= 200 and 'support' not in out, out  # numbers, not sentences


def test_the_comparison_has_seeds_intervals_and_the_paired_test(study):
    repo, _ = study
    comparison = (repo / 'outputs/compare/comparison.md').read_text()
    assert comparison.count('| mean of 2 ') == 2 and 'synthetic pretraining, a stand-in for ImageNet' in comparison
    assert 'synthetic-dacl vs scratch-dacl: ' in comparison and 'McNemar p = ' in comparison and '(per seed)' in comparison
    stats = json.loads((repo / 'outputs/compare/statistics.json').read_text())
    assert list(stats['variants']) == ['synthetic-dacl', 'scratch-dacl'] and stats['resamples'] == 1000
    pair = stats['pairs']['synthetic-dacl vs scratch-dacl']
    assert [t['seed'] for t in pair['mcnemar']] == [0, 1] and len(pair['differences']['acc']['runs']) == 2
    headline = json.loads((repo / 'outputs/metrics/synthetic-dacl_vs_scratch-dacl.json').read_text())
    assert headline['diff'] == round(pair['differences']['acc']['value'], 4)
    assert headline['p'] == float(f"{max(t['p'] for t in pair['mcnemar']):.3g}")
    weights = json.loads((repo / 'outputs/weights/synthetic.json').read_text())
    assert weights['available'] and weights['what'] == 'synthetic pretraining, a stand-in for ImageNet'


@contextlib.contextmanager
def edited(path: Path, change):
    "`path` rewritten by `change` (old text -> new text, or a string to append) inside the block, restored after it."
    original = path.read_text()
    path.write_text(change(original) if callable(change) else original + change)
    try: yield
    finally: path.write_text(original)


def test_changing_a_webcam_param_reruns_only_the_webcam_stage(study):
    repo, _ = study
    def five_second_windows(text):
        params = yaml.safe_load(text)
        params['webcam']['window'] = 5.0
        return yaml.safe_dump(params, sort_keys=False)
    with edited(repo / 'params.yaml', five_second_windows):
        out = run(['dvc', 'status'], repo).stdout
    assert 'webcam@demo_single' in out and 'train@' not in out and 'data:' not in out, out


def test_editing_package_code_marks_every_stage_that_runs_it_changed(study):
    repo, _ = study
    with edited(repo / 'fer_study' / 'rafdb.py', '\n# a comment is a change too\n'):
        out = run(['dvc', 'status'], repo).stdout
    for stage in ('data:', 'pretrain:', 'train@scratch-dacl:', 'evaluate@synthetic-dacl-1:', 'compare:',
                  'webcam@demo_single:'):
        assert stage in out, out
    with edited(repo / 'nbs' / 'reports' / 'video_report.ipynb', ' '):
        out = run(['dvc', 'status'], repo).stdout
    assert 'webcam@demo_single:' in out and 'train@' not in out and 'compare:' not in out, out


def test_editing_files_no_stage_runs_changes_nothing(study):
    repo, _ = study
    (repo / 'fer_study' / '__pycache__').mkdir(exist_ok=True)
    (repo / 'fer_study' / '__pycache__' / 'rafdb.cpython-311.pyc').write_bytes(b'bytecode')
    with edited(repo / 'nbs' / 'index.ipynb', ' '), edited(repo / 'README.md', '\nmore words\n'):
        out = run(['dvc', 'status'], repo).stdout
    assert 'up to date' in out, out


def test_plots_show_draws_curves_and_confusion_without_warnings(study, tmp_path):
    repo, _ = study
    r = run(['dvc', 'plots', 'show', '-o', str(tmp_path / 'plots')], repo)
    assert 'WARNING' not in r.stdout + r.stderr and 'failed' not in r.stdout + r.stderr, r.stdout + r.stderr
    page = (tmp_path / 'plots' / 'index.html').read_text()
    assert 'outputs/compare/curves/scratch-dacl/seed1/val/acc.tsv' in page and 'predictions.csv' in page


# each plot's data marks drawn: lines with at least one segment (learning curves), rectangles that take room
# (confusion cells); a plot whose drawing failed is in `failed`
DRAWN = """Promise.allSettled(embedded).then(results => ({
  failed: results.filter(r => r.status === 'rejected').map(r => String(r.reason)),
  marks: Object.fromEntries([...document.querySelectorAll('body > div[id]')].map(plot => [plot.id, {
    line: [...plot.querySelectorAll('g.mark-line.role-mark > path')].filter(m => /L/.test(m.getAttribute('d'))).length,
    rect: [...plot.querySelectorAll('g.mark-rect.role-mark > path')].filter(m => m.getBBox().width > 0).length}]))}))"""


def plot_id(path: str) -> str:
    "The id of the element DVC draws the plot of `path` in."
    return path.translate({ord(c): '_' for c in r"!@#$%^&*()[]{};,<>?\/:.|`~=_+ "})


async def open_offline(devtools: str, page: str) -> tuple[dict, list[str]]:
    "The marks drawn on `page` opened with the network off, and every address the page asked for."
    async with Tab(devtools) as tab:
        await tab.call('Network.enable')
        await tab.call('Network.emulateNetworkConditions', offline=True, latency=0, downloadThroughput=-1,
                       uploadThroughput=-1)
        await tab.call('Page.enable')
        await tab.call('Page.navigate', url=page)
        await tab.wait_for('Page.loadEventFired')  # each plot's vegaEmbed has been called by then
        drawn = await tab.evaluate(DRAWN)
    return drawn, [e['params']['request']['url'] for e in tab.events if e.get('method') == 'Network.requestWillBeSent']


def test_plots_show_draws_offline_in_chromium(study, tmp_path):
    repo, _ = study
    run(['dvc', 'plots', 'show', '-o', str(tmp_path / 'plots')], repo)
    page = tmp_path / 'plots' / 'index.html'
    assert '<script src=' not in page.read_text() and 'cdn.' not in page.read_text()
    with chromium(tmp_path / 'profile') as devtools:
        drawn, asked = asyncio.run(open_offline(devtools, page.as_uri()))
    assert drawn['failed'] == [] and asked == [page.as_uri()], (drawn['failed'], asked)
    plotted = [*(repo / 'outputs/compare/curves').rglob('*.tsv'), *(repo / 'outputs/eval').rglob('predictions.csv')]
    rows = {plot_id(str(p.relative_to(repo))): len(p.read_text().splitlines()) - 1 for p in plotted}  # data rows
    assert set(drawn['marks']) == set(rows), (drawn['marks'], rows)
    # every learning curve of two steps or more is a line (one of a single step has no segment to draw); every
    # confusion matrix of a run with predictions (a skipped run has none) has its cells
    lines = [k for k in rows if k.startswith('outputs_compare_curves_') and rows[k] > 1]
    cells = [k for k in rows if k.endswith('_predictions_csv') and rows[k] > 0]
    assert lines and [k for k in lines if not drawn['marks'][k]['line']] == [], (lines, drawn['marks'])
    assert cells and [k for k in cells if not drawn['marks'][k]['rect']] == [], (cells, drawn['marks'])


def test_a_failing_report_cell_fails_the_stage_and_leaves_no_report(study):
    repo, _ = study
    template = repo / 'nbs/reports/study_report.ipynb'
    original = template.read_text()
    nb = nbformat.reads(original, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('no such metric: aucpr2')"))
    try:
        nbformat.write(nb, template)
        r = run(['dvc', 'repro', 'compare'], repo, check=False)
        assert r.returncode != 0
        assert "ValueError: no such metric: aucpr2" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
        assert not (repo / 'outputs/compare/report.html').exists() and (repo / 'outputs/compare/report.failed.ipynb').exists()
    finally: template.write_text(original)
