"""The evaluation report on a real trained model: calibration, slices, the gallery and the paired comparison with a
registered model, computed by `evaluate_run` and drawn by `mlproj.report`."""

import pytest

from mlproj.evaluate import evaluate_run
from mlproj.report import report_html
from mlproj.servicelike import service_like_version
from mlproj.store import Store


@pytest.fixture(scope='module')
def evaluated(trained):
    "The fixture's model evaluated again, compared with registered version 1 (itself) on the same items."
    s, run_dir, ev = trained
    return s, evaluate_run(
        run_dir,
        ev['dataset_version'],
        s.store_url,
        s.problem,
        service_like_version=service_like_version(s),
        compare_with=1,
    )


def test_evaluation_records_calibration_slices_and_the_most_confident_mistakes(evaluated):
    _, r = evaluated
    for m in (r['model'], r['service_like']):
        assert 0 <= m['ece'] <= 1 and sum(b['n'] for b in m['reliability']) == m['n'] and m['n_bins'] == 15
        conf = [e['confidence'] for e in m['mistakes']]
        assert conf == sorted(conf, reverse=True) and all(e['label'] != e['predicted'] for e in m['mistakes'])
    assert set(r['slices']) == {'set', 'source', 'thickness', 'polarity'}
    assert r['slices']['set']['service-like']['accuracy'] == r['service_like']['accuracy']
    assert set(r['slices']['thickness']) == {'thin', 'medium', 'thick', 'font'}


def test_a_model_compared_with_itself_differs_on_no_item(evaluated):
    _, r = evaluated
    vs = r['vs_production']
    assert vs['version'] == 1
    for key, m in (('benchmark', r['model']), ('service_like', r['service_like'])):
        p = vs[key]
        assert (p['only_a'], p['only_b'], p['p_value'], p['ci']) == (0, 0, 1.0, [0.0, 0.0])
        assert p['both_right'] == round(m['accuracy'] * m['n'])


def test_no_production_alias_means_no_comparison(trained):
    s, run_dir, ev = trained
    assert (
        evaluate_run(run_dir, ev['dataset_version'], s.store_url, s.problem, compare_with='production')['vs_production']
        is None
    )


def test_the_report_draws_every_section_with_figures_inline(evaluated):
    s, r = evaluated
    page = report_html(r, Store(s.store_url))
    assert page.count('<section>') == 7 and 'src="http' not in page and 'No production model' not in page
    assert (
        page.count('<img class="figure"') >= 7
    )  # confusion x2, reliability x2, slices, gallery x2 (no training curves here)
    assert "McNemar's exact p = 1" in page


def test_figure_text_is_at_least_11px_where_the_page_shows_it(evaluated):
    from mlproj.report import confusion_figure, figure_html, slices_figure

    _, r = evaluated
    for fig in (confusion_figure(r['model']['confusion']), slices_figure(r['slices'], 0.5)):
        texts = [
            t for t in fig.findobj(lambda a: hasattr(a, 'get_fontsize') and hasattr(a, 'get_text')) if t.get_text()
        ]
        width = int(figure_html(fig, 'x').split('width="')[1].split('"')[0])  # CSS px the page gives the figure
        assert min(t.get_fontsize() for t in texts) / 72 * width / fig.get_figwidth() >= 11
