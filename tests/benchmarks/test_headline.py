"""The headline benchmark's own logic, without the stack: percentiles, configs, the
stage breakdown, and what it writes into RESULTS.md and results.json."""

from __future__ import annotations

import os
from typing import Any

import pytest

from benchmarks.common import percentile
from benchmarks.headline import (
    SECTION,
    STAGES,
    Config,
    Stamps,
    breakdown,
    cpu_per,
    cpu_seconds,
    headline_keys,
    render,
    replace_section,
    stages,
    time_to_enforce_ms,
)


def stamps(offset: float = 0.0, *, inspect_s: float = 1.0) -> Stamps:
    at = 1_000.0 + offset
    return Stamps(
        published=at,
        accepted=at + 0.1,
        attempt_started=at + 0.3,
        attempt_ended=at + 4.3,
        inspect_s=inspect_s,
        evaluated=at + 4.4,
        ordered=at + 4.45,
        policy=at + 4.5,
        applied=[at + 4.52, at + 4.6],
        denied=at + 4.53,
    )


def test_a_percentile_is_the_nearest_rank_so_p99_of_a_dozen_is_the_largest() -> None:
    values = [float(v) for v in range(12, 0, -1)]
    assert percentile(values, 50) == 7.0
    assert percentile(values, 99) == 12.0
    assert percentile([3.0], 50) == 3.0


def test_a_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)


def test_a_config_names_replicas_and_optionally_partitions() -> None:
    assert Config.parse("2") == Config(2)
    assert Config.parse("1x12") == Config(1, 12)
    assert Config.parse("2x12").name == "2x12"
    assert Config.parse("1").name == "1"


@pytest.mark.parametrize("text", ["", "x12", "0", "2x0", "2x", "two"])
def test_a_config_that_is_not_replicas_or_replicas_x_partitions_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Config.parse(text)


def test_the_stages_of_a_submission_are_the_gaps_between_its_timestamps() -> None:
    got = stages(stamps())
    assert set(got) == {name for name, _ in STAGES}
    assert got["intake"] == pytest.approx(0.1)
    assert got["evaluation"] == pytest.approx(4.3)
    assert got["evaluation_queue"] == pytest.approx(0.2)
    # the attempt lasted 4.0 s, of which the eval 1.0 s: 3.0 s starting and stopping Inspect
    assert got["evaluation_inspect_process"] == pytest.approx(3.0)
    assert got["evaluation_inspect_eval"] == pytest.approx(1.0)
    assert got["evaluation_record"] == pytest.approx(0.1)
    assert got["risk"] == pytest.approx(0.05)
    assert got["access"] == pytest.approx(0.05)
    assert got["enforcer"] == pytest.approx(0.03)
    assert got["total"] == pytest.approx(4.53)


def test_evaluations_parts_and_the_other_stages_add_up_to_the_total() -> None:
    got = stages(stamps(inspect_s=2.5))
    parts = ("evaluation_queue", "evaluation_inspect_process", "evaluation_inspect_eval")
    assert sum(got[p] for p in (*parts, "evaluation_record")) == pytest.approx(got["evaluation"])
    whole = ("intake", "evaluation", "risk", "access", "enforcer")
    assert sum(got[p] for p in whole) == pytest.approx(got["total"])


def test_the_breakdown_gives_each_stage_its_own_p50_and_p99() -> None:
    slow = stamps(10.0, inspect_s=3.0)
    result = breakdown([stamps(), stamps(5.0), slow])
    assert result["evaluation_inspect_eval"] == {"p50": 1.0, "p99": 3.0}
    assert result["evaluation_inspect_process"] == {"p50": 3.0, "p99": 3.0}
    assert result["total"]["p99"] == pytest.approx(4.53)


def test_cpu_per_item_is_the_difference_of_two_readings_over_the_count() -> None:
    before = {"intake": 1.0, "inspect_children": 0.0}
    after = {"intake": 1.5, "inspect_children": 8.0}
    assert cpu_per(before, after, 2) == {"inspect_children": 4000.0, "intake": 250.0}


def test_cpu_seconds_of_this_process_are_read_from_proc() -> None:
    own, children = cpu_seconds(os.getpid())
    assert own > 0.0
    assert children >= 0.0
    assert cpu_seconds(2**22 + 12345) == (0.0, 0.0)  # no such process


def test_time_to_enforce_waits_for_the_last_enforcer() -> None:
    # ordered at +4.45; the enforcers applied at +4.52 and +4.6: the last is 150 ms later
    assert time_to_enforce_ms([stamps()]) == {"p50": 150.0, "p99": 150.0}


def figures() -> dict[str, Any]:
    run = {
        "enforcers": 1,
        "submissions": 2,
        "stages_s": breakdown([stamps(), stamps(3.0)]),
        "time_to_enforce_ms": time_to_enforce_ms([stamps()]),
    }
    rss = {"intake": 80.0, "evaluation": 90.0, "risk": 85.0, "access": 88.0}
    return {
        "arguments": "--latency 2",
        "machine": "vm: 2 cores, 24 GiB, 2026-12-02",
        "load_before": 3.1,
        "load_after": 4.2,
        "load_note": "a machine shared with other work",
        "run_seconds": 600.0,
        "cores": 2,
        "raw": {
            "paced_messages": 200,
            "paced_rate_per_s": 20.0,
            "paced_p50_ms": 2.5,
            "paced_p99_ms": 13.0,
            "burst_messages": 2000,
            "burst_msgs_per_s": 2500,
        },
        "latency": {"by_enforcers": {"1": run, "5": run | {"enforcers": 5}}},
        "throughput": {
            "2x12": {
                "describe": "2 replicas per service, 12 partitions",
                "escalating": 12,
                "escalating_s": 24.0,
                "escalating_per_s": 0.5,
                "cleared": 300,
                "cleared_s": 3.0,
                "cleared_per_s": 100.0,
                "rss_mib": {"rest": rss, "load": rss | {"inspect_child": 147.0}},
                "cpu_ms_per_escalating": {
                    "intake": 10.0,
                    "evaluation": 300.0,
                    "risk": 20.0,
                    "access": 15.0,
                    "inspect_children": 4200.0,
                },
                "cpu_ms_per_cleared": {
                    "intake": 5.0,
                    "evaluation": 4.0,
                    "risk": 6.0,
                    "access": 1.0,
                    "inspect_children": 0.0,
                },
            }
        },
    }


def test_the_section_states_machine_load_figures_and_ratios_to_raw() -> None:
    text = render(figures())
    assert text.startswith(SECTION + "\n")
    assert "vm: 2 cores, 24 GiB, 2026-12-02" in text
    assert "3.1 before, 4.2 after (a machine shared with other work)" in text
    assert "| 4.53 s | 4.53 s | x1,812 / x348 |" in text  # 4,530 ms against 2.5 / 13 ms raw
    assert "| 5 enforcer(s), 2 orders | 150 | 150 |" in text
    assert "| 0.50 (12 in 24.0 s) | 100.0 (300 in 3.0 s) | 0.0400 | x1.00 / x1.00 |" in text
    assert "| 2x12, escalating | 10 | 300 | 20 | 15 | 4,200 |" in text
    assert "| 2x12, cleared | 5 | 4 | 6 | 1 | 0 |" in text
    # 4.3 s of 4.53 s in evaluation, 3.0 s of it starting and stopping Inspect
    assert "evaluation is 95% of the total, of which starting and stopping the Inspect" in text
    assert "An Inspect run costs 4.2-4.2 CPU s (its child process), so 2 cores can do" in text
    assert "at most 0.48-0.48 escalating submissions/s" in text
    assert "A cleared submission costs the four services 16 CPU ms together (config 2x12)" in text
    assert "| 2x12, under load | 80 | 90 | 85 | 88 | 147 |" in text
    assert "| 2x12, at rest | 80 | 90 | 85 | 88 | - |" in text


def test_each_headline_figure_has_a_key_of_its_own() -> None:
    keys = headline_keys(figures())
    assert keys["publish_to_denial_1_enforcers_p50_s"] == pytest.approx(4.53)
    assert keys["time_to_enforce_5_enforcers_p99_ms"] == 150.0
    assert keys["escalating_per_s_2x12"] == 0.5
    assert keys["cleared_per_s_2x12"] == 100.0
    assert keys["raw_paced_p50_ms"] == 2.5
    assert (keys["load_average_before"], keys["load_average_after"]) == (3.1, 4.2)
    assert keys["rss_load_inspect_child_mib_2x12"] == 147.0


def test_a_rewrite_replaces_the_headline_section_and_keeps_the_others() -> None:
    before = f"# Results\n\n## One\n\nold one\n\n{SECTION}\n\nold figures\n\n## Two\n\nkept\n"
    after = replace_section(before, f"{SECTION}\n\nnew figures\n")
    assert (
        after == f"# Results\n\n## One\n\nold one\n\n{SECTION}\n\nnew figures\n\n## Two\n\nkept\n"
    )
    assert replace_section(after, f"{SECTION}\n\nnew figures\n") == after


def test_a_first_write_appends_the_section() -> None:
    after = replace_section("# Results\n\n## One\n\nx\n", f"{SECTION}\n\nfigures\n")
    assert after == f"# Results\n\n## One\n\nx\n\n{SECTION}\n\nfigures\n"
    assert replace_section(after, f"{SECTION}\n\nagain\n").endswith(f"{SECTION}\n\nagain\n")
