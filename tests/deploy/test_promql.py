"""The name finder the metrics-coverage test relies on: expressions in, names out."""

from __future__ import annotations

import pytest

from tests.deploy.promql import label_names, metric_names


@pytest.mark.parametrize(
    ("query", "metrics", "labels"),
    [
        ("hivectl_ready == 0", {"hivectl_ready"}, set()),
        (
            'sum by (code, by) (rate(hivectl_closes_total{job=~"$job"}[$__rate_interval]))',
            {"hivectl_closes_total"},
            {"code", "by", "job"},
        ),
        (
            "histogram_quantile(0.99, sum by (job, instance, le) "
            "(rate(hivectl_storage_commit_seconds_bucket[5m]))) > 0.25",
            {"hivectl_storage_commit_seconds_bucket"},
            {"job", "instance", "le"},
        ),
        (
            "process_open_fds / process_max_fds > 0.8\nand on (job, instance) hivectl_info",
            {"process_open_fds", "process_max_fds", "hivectl_info"},
            {"job", "instance"},
        ),
        (
            'sum(rate(hivectl_auth_refused_total{reason!="expired", x="a{b}"}[5m])) by (reason)',
            {"hivectl_auth_refused_total"},
            {"reason", "x"},
        ),
        (
            "max(increase(hivectl_nodes_lost_total[1h] offset 5m)) * 1e3",
            {"hivectl_nodes_lost_total"},
            set(),
        ),
        (
            'label_values(hivectl_info{job=~"$job"}, instance)',
            {"hivectl_info"},
            {"job", "instance"},
        ),
        ("label_values(hivectl_info, job)", {"hivectl_info"}, {"job"}),
        ('up{job="hivectl"} == 0 unless bool hivectl_ready', {"up", "hivectl_ready"}, {"job"}),
    ],
)
def test_names_in_an_expression(query: str, metrics: set[str], labels: set[str]) -> None:
    assert metric_names(query) == metrics
    assert label_names(query) == labels
