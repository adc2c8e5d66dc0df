"""Prometheus text rendering of the server metrics."""

from __future__ import annotations

from dinrec.serving.http.prometheus import Counter, Histogram, ServingMetrics


def test_counter_renders_help_type_and_labelled_values() -> None:
    counter = Counter("x_total", "Things.", ("path",))
    counter.inc("/a")
    counter.inc("/a", amount=2)
    assert counter.render() == ["# HELP x_total Things.", "# TYPE x_total counter",
                                'x_total{path="/a"} 3']


def test_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    hist = Histogram("h", "H.", (1, 5))
    for value in (0.5, 3, 3, 9):
        hist.observe(value)
    lines = hist.render()
    assert 'h_bucket{le="1"} 1' in lines
    assert 'h_bucket{le="5"} 3' in lines
    assert 'h_bucket{le="+Inf"} 4' in lines
    assert "h_sum 15.5" in lines and "h_count 4" in lines


def test_label_values_are_escaped() -> None:
    counter = Counter("c", "C.", ("v",))
    counter.inc('a"b\\c\nd')
    assert counter.render()[-1] == 'c{v="a\\"b\\\\c\\nd"} 1'


def test_serving_metrics_count_errors_by_kind_and_model_info() -> None:
    metrics = ServingMetrics()
    metrics.request("POST", "/v1/rank", 200, 0.003)
    metrics.request("POST", "/v1/rank", 422, 0.001)
    metrics.request("POST", "/v1/rank", 500, 0.001)
    metrics.scored("rank", 100)
    metrics.serving("v1", "torch")
    metrics.serving("v2", "torch")
    text = metrics.render()
    assert 'dinrec_request_errors_total{path="/v1/rank",kind="client"} 1' in text
    assert 'dinrec_request_errors_total{path="/v1/rank",kind="server"} 1' in text
    assert 'dinrec_batch_size_bucket{endpoint="rank",le="100"} 1' in text
    assert 'dinrec_model_info{version="v2",backend="torch"} 1' in text
    assert 'version="v1"' not in text
    assert text.endswith("\n")
