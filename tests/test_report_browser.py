"""An evaluation run's HTML report in Chromium, opened from its file with every other origin refused: it loads
nothing from elsewhere, its figures' text is legible at 100% zoom, and its links lead to the index and the training
run."""

import json
import shutil

import pytest
from conftest import SHORT_RUN_SERVICE_LIKE, make_settings

from mlproj.jobs import read_run, run_job
from mlproj.report import confusion_figure, slices_figure


def _smallest_text_pt(fig) -> float:
    "The size in points of the smallest text drawn in `fig`: written in, tick labels, titles, legends."
    texts = [t for t in fig.findobj(lambda a: hasattr(a, 'get_fontsize') and hasattr(a, 'get_text')) if t.get_text()]
    return min(t.get_fontsize() for t in texts)


@pytest.fixture(scope='module')
def evaluation(trained, tmp_path_factory):
    "An evaluation job run for real on the fixture's model, in a reports folder of its own; (settings, run folder)."
    s, train_dir, _ = trained
    tmp = tmp_path_factory.mktemp('report')
    s2 = make_settings(tmp, MLPROJ_PATHS_STORE=s.store_url, **SHORT_RUN_SERVICE_LIKE)
    dst = s2.reports_dir / 'runs' / '20260101-000000-train-abcdef'
    shutil.copytree(train_dir, dst)
    (dst / 'run.json').write_text(
        json.dumps(dict(run_id=dst.name, job='train', state='done', parameters={}, report='train.html'))
    )
    (dst / 'train.html').write_text('<!DOCTYPE html><title>the training run</title><p>the training run</p>')
    return s2, run_job(s2, 'evaluate', {}, progress=False)


@pytest.mark.browser
def test_an_evaluation_report_works_offline_with_legible_figures_and_links(browser, evaluation):
    s, run = evaluation
    m = read_run(run)['metrics']
    page = browser.new_page(viewport=dict(width=1280, height=900))
    refused = []

    def only_files(route):
        url = route.request.url
        if url.startswith(('file://', 'data:')):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    page.route('**/*', only_files)
    page.goto((run / 'evaluate.html').as_uri())
    page.wait_for_load_state('load')
    assert run.name in page.title() and page.title().startswith('evaluate ')
    assert page.locator('.jp-InputPrompt, .jp-InputArea-editor, .jp-OutputPrompt').count() == 0
    assert page.locator('h2', has_text='Confusion matrices').count() == 1

    # figures are shown at their own width (not squeezed), so a point of their text is 4/3 px on the page
    shown = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('img.figure')].map(
             i => [i.alt, [i.getBoundingClientRect().width, i.naturalWidth]]))"""
    )
    for alt, fig in (
        ('confusion matrix of the benchmark set', confusion_figure(m['model']['confusion'])),
        ('confusion matrix of the service-like set', confusion_figure(m['service_like']['confusion'])),
        ('accuracy by slice', slices_figure(m['slices'], m['criteria']['min_service_like_accuracy'])),
    ):
        width, natural = shown[alt]
        px = _smallest_text_pt(fig) / 72 * width / fig.get_figwidth()
        assert px >= 11, f'{alt}: its smallest text is {px:.1f} px on the page'
        assert abs(natural - 2 * width) <= 1, (alt, width, natural)  # twice the pixels: sharp on a dense screen

    # the header links to the training run and to the index, and both open
    page.click(f'header.run a[href="../{m["train_run"]}/train.html"]')
    page.wait_for_load_state('load')
    assert page.title() == 'the training run'
    page.go_back()
    page.click('header.run a[rel=up]')
    page.wait_for_load_state('load')
    assert page.url.endswith('/reports/index.html') and page.locator(f'text={run.name}').count() >= 1
    assert refused == [], f'requests to other origins: {refused}'
    page.close()
