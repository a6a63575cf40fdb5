"""Notifications (issue 12 items 3 and 4): which records and moments become notices, and a
delivery that never holds up the caller (a dead receiver, retries, never fatal)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from controller.operator.notify import Notice, NoticeRules, Notifier
from controller.recipe.notify_config import NotifyConfig, resolve_notify
from controller.recipe.steps import Dwell, End, OperatorStep, Plan, Stage, StepField
from drivers.errors import ConfigurationError

WALL = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
WASH = OperatorStep(stage="wash", label="o", message="Wash the solid to neutral.",
                    opens_tube=True, sample_action="wash", open_flows_sccm=(),
                    fields=(StepField("washes", kind="integer", min=1, max=50),))
PLAN = Plan("t", "T1", (Stage("heat", "Ar"), Stage("wash", "Ar")), (
    Dwell(stage="heat", label="d", at_c=600, duration_s=7200, band_c=5, max_holdback_s=60),
    WASH, End(stage="wash", label="e")))
CONFIG = NotifyConfig.model_validate({"webhook": {"url": "http://127.0.0.1:9/hook"}})


def rules(config: NotifyConfig = CONFIG) -> NoticeRules:
    return NoticeRules(config, PLAN, (7200.0, 0.0, 0.0), batch_id="b1", station="s1",
                       hold_timeout_s=3600.0, on_timeout="abort")


def no_wait(_: threading.Event, __: float) -> bool:
    return False


def test_the_operator_step_is_announced_its_lead_time_before_it_is_due() -> None:
    r = rules()
    assert r.audit("step_started", 0.0, {"index": 0}, WALL) == []
    assert r.tick(5399.0, 0.0, WALL) == []  # due at 7200 s, 30 min lead: told at 5400 s
    [due] = r.tick(5400.0, 0.0, WALL)
    assert due.kind == "operator_due"
    assert due.subject == "[furnace] T1: operator step due in 0 h 30 min: wash"
    assert "Wash the solid to neutral." in due.body
    assert due.fields["due_in_s"] == 1800.0
    assert r.tick(5401.0, 0.0, WALL) == []  # once
    [now] = r.audit("step_started", 7210.0, {"index": 1}, WALL)
    assert now.subject == "[furnace] T1: operator step waiting: wash"
    assert "washes (integer, 1-50)" in now.body


def test_a_step_closer_than_the_lead_is_announced_at_once() -> None:
    config = NotifyConfig.model_validate({"operator_lead_min": 180,
                                          "webhook": {"url": "http://127.0.0.1:9/h"}})
    [due] = rules(config).audit("step_started", 0.0, {"index": 0}, WALL)
    assert due.subject.endswith("operator step due in 2 h 00 min: wash")


def test_a_hold_is_told_and_again_before_it_times_out_in_real_time() -> None:
    r = rules()
    [held] = r.audit("state_change", 100.0, {"new": "held", "reason": "O2 high"}, WALL)
    assert "If nobody resumes it, it will abort after 60 min" in held.body
    assert r.tick(101.0, 1000.0, WALL) == []  # the hold's real start
    assert r.tick(99999.0, 1000.0 + 49 * 60, WALL) == []  # process time does not count
    [warn] = r.tick(100000.0, 1000.0 + 50 * 60, WALL)
    assert warn.subject.endswith("hold times out in 0 h 10 min")
    assert r.tick(100001.0, 1000.0 + 55 * 60, WALL) == []
    r.audit("state_change", 100002.0, {"new": "running"}, WALL)
    assert r.tick(100003.0, 1000.0 + 70 * 60, WALL) == []


def test_alarms_faults_and_the_end_are_told_and_a_repeated_alarm_once() -> None:
    r = rules()
    assert len(r.audit("alarm", 10.0, {"alarm": "flow_low", "measured": 12}, WALL)) == 1
    assert r.audit("alarm", 300.0, {"alarm": "flow_low"}, WALL) == []
    assert len(r.audit("alarm", 700.0, {"alarm": "flow_low"}, WALL)) == 1
    [fault] = r.audit("state_change", 800.0, {"new": "faulted", "reason": "sensor break"},
                      WALL)
    assert fault.kind == "fault"
    assert "sensor break" in fault.body
    [end] = r.audit("batch_ended", 900.0, {"outcome": "stopped", "end_reason": "r"}, WALL)
    assert end.subject.endswith("batch stopped")


def test_only_the_chosen_kinds_are_told() -> None:
    config = NotifyConfig.model_validate({"events": ["ended"],
                                          "webhook": {"url": "http://127.0.0.1:9/h"}})
    r = rules(config)
    assert r.audit("alarm", 1.0, {"alarm": "x"}, WALL) == []
    assert r.audit("state_change", 1.0, {"new": "held"}, WALL) == []
    assert len(r.audit("batch_ended", 1.0, {"outcome": "completed"}, WALL)) == 1


class Gate:
    """A receiver that hangs until released, then fails ``fail`` times."""

    name = "gate"

    def __init__(self, fail: int = 0) -> None:
        self.release = threading.Event()
        self.fail = fail
        self.got: list[Notice] = []

    def send(self, notice: Notice) -> None:
        self.release.wait(30)
        if self.fail:
            self.fail -= 1
            raise OSError("connection refused")
        self.got.append(notice)


def test_a_hanging_receiver_never_holds_up_the_caller() -> None:
    gate = Gate()
    notifier = Notifier(rules(), [gate], wait=no_wait)
    for t in range(50):  # would block at the first if delivery were inline
        notifier.audit("alarm", t * 700.0, {"alarm": "a"}, WALL)
        notifier.observe(float(t), 0.0, WALL)
    assert not notifier.idle.is_set()
    gate.release.set()
    assert notifier.idle.wait(30)
    notifier.close()
    assert len(gate.got) == 50


def test_failures_are_retried_then_logged_never_raised(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    flaky, dead = Gate(fail=2), Gate(fail=99)
    flaky.release.set()
    dead.release.set()
    notifier = Notifier(rules(), [flaky, dead], wait=no_wait)
    notifier.audit("batch_ended", 1.0, {"outcome": "completed"}, WALL)
    notifier.close()
    assert [n.kind for n in flaky.got] == ["ended"]  # the third try went
    assert [(c, n.kind) for c, n, _ in notifier.failed] == [("gate", "ended")]
    assert "try 4 of 4" in caplog.text


def test_rules_that_raise_cost_a_notice_not_the_batch() -> None:
    r = rules()
    notifier = Notifier(r, [], wait=no_wait)
    notifier.audit("step_started", 0.0, {"index": "not an int"}, WALL)
    notifier.observe(0.0, 0.0, None)  # type: ignore[arg-type]  # a broken wall time
    notifier.close()


def test_the_config_needs_a_channel_and_keeps_passwords_out(tmp_path: object,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    with pytest.raises(ValueError, match="needs a channel"):
        NotifyConfig.model_validate({})
    with pytest.raises(ValueError, match="password_env"):
        NotifyConfig.model_validate({"smtp": {"host": "h", "sender": "a@b", "to": ["c@d"],
                                              "username": "u"}})
    with pytest.raises(ValueError, match="http"):
        NotifyConfig.model_validate({"webhook": {"url": "ftp://x"}})


def test_the_user_notify_file_is_used_without_a_station_section(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "notify.toml"
    monkeypatch.setenv("FURNACE_NOTIFY_FILE", str(path))
    assert resolve_notify(None) is None  # no file: no notifications
    path.write_text('[webhook]\nurl = "http://127.0.0.1:9/h"\n', encoding="utf-8")
    config = resolve_notify(None)
    assert config is not None
    assert config.webhook is not None
    assert resolve_notify(CONFIG) is CONFIG  # the station's section wins
    path.write_text('[webhook]\nurl = "gopher://x"\n', encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        resolve_notify(None)
    assert str(path) in str(caught.value)
    assert "webhook.url" in str(caught.value)
